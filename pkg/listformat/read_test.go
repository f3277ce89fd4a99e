package listformat

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// simpleForms are lists as people write them; the scanner must read every
// one of them itself, and read it as the YAML parser does.
var simpleForms = []string{
	"- alpine\n- nginx:1.27\n",
	"# images for team a\n\n  - alpine   # the base\n  - \"nginx:1.27\"\n  - 'ghcr.io/org/app@sha256:" + strings.Repeat("a", 64) + "'\n",
	"- 127.0.0.1:5000/app:v1\r\n- registry.example/team/app:v2\r\n",
	`["alpine", "nginx:1.27"]`,
	"[\n  \"alpine\",\n  \"nginx:1.27\"\n]\n",
	"[alpine, nginx, ghcr.io/org/app]",
	"[]",
	"- yes\n- 1.10\n- true\n- null\n- 1password/cli\n- -\n- [a, b]\n- {a: b}\n- A\n- \"\\u0061lpine\"\n- 'it''s'\n- a: b\n-\n- ~\n- !!str tagged\n",
	`["alpine", 1, 1.10, true, "a\"b", 'it''s', 127.0.0.1:5000/app, "é"]`,
	"- alpine\n- alpine\n- docker.io/library/alpine:latest\n",
}

// The scanner takes the usual forms itself, whatever their size.
func TestSimpleFormsAreScanned(t *testing.T) {
	for _, v := range simpleForms {
		if _, ok := readSimple(v, Limits{}); !ok {
			t.Errorf("readSimple did not take %q", v)
		}
		checkSimpleMatchesYAML(t, v)
	}
}

// checkSimpleMatchesYAML fails when readSimple takes value and reads it
// otherwise than the YAML parser.
func checkSimpleMatchesYAML(t *testing.T, value string) {
	t.Helper()
	if len(value) > MaxYAMLBytes {
		return
	}
	simple, ok := readSimple(value, Limits{})
	if !ok {
		return
	}
	whole, err := readYAML(value, Limits{})
	if err != nil {
		t.Fatalf("readSimple took %q, which the YAML parser refuses: %v", value, err)
	}
	if !reflect.DeepEqual(simple.Images, whole.Images) || simple.Unread != whole.Unread {
		t.Fatalf("%q: readSimple read %q (%d unread), the YAML parser %q (%d unread)", value, simple.Images, simple.Unread, whole.Images, whole.Unread)
	}
	if a, b := fmt.Sprint(simple.Problems.Errors()), fmt.Sprint(whole.Problems.Errors()); a != b {
		t.Fatalf("%q: readSimple found %s, the YAML parser %s", value, a, b)
	}
}

// FuzzSimpleMatchesYAML checks that the scanner, wherever it takes a value,
// reads it exactly as the YAML parser does.
func FuzzSimpleMatchesYAML(f *testing.F) {
	for _, v := range simpleForms {
		f.Add(v)
	}
	f.Add("- a\n  - b\n")
	f.Add("[a,]")
	f.Add("- \"a\n- b\"\n")
	f.Add("- [a,\n- b]\n")
	f.Add("---\n- a\n")
	// Line breaks the parser knows and a scanner might not: a lone carriage
	// return, NEL, LINE SEPARATOR, each ending a comment.
	f.Add("- good/a\n# c\r- evil/b\n")
	f.Add("- good/a # c\u0085- evil/b\n")
	f.Add("- good/a\n# c\u2028- evil/b\n")
	f.Fuzz(func(t *testing.T, value string) {
		checkSimpleMatchesYAML(t, value[:min(len(value), maxFuzzInput)])
	})
}

// A list's cost is charged before it is paid: past its limits, entries are
// counted, not read, however many there are.
func TestReadImageListLimits(t *testing.T) {
	var b strings.Builder
	for i := range 40_000 {
		fmt.Fprintf(&b, "- registry.example/team/app%05d:v1\n", i)
	}
	big := b.String() // 1.3 MB
	invalid := strings.Repeat("- A\n", 200_000)
	dups := strings.Repeat("- alpine\n", 200_000)
	for _, tc := range []struct {
		name       string
		value      string
		lim        Limits
		images     int
		unread     int
		maxAlloc   uint64
		firstImage string
	}{
		{"keep 1000 of 40,000", big, Limits{Keep: 1000, Read: 2000}, 1000, 39_000, 2 << 20, "registry.example/team/app00000:v1"},
		{"read 2000 invalid", invalid, Limits{Keep: 1000, Read: 2000}, 0, 198_000, 4 << 20, ""},
		{"read 2000 duplicates", dups, Limits{Keep: 1000, Read: 2000}, 1, 198_000, 4 << 20, "docker.io/library/alpine:latest"},
		{"all of 40,000", big, Limits{}, 40_000, 0, 64 << 20, "registry.example/team/app00000:v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l *List
			var err error
			alloc := bytesAllocatedBy(func() { l, err = Read(tc.value, tc.lim) })
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Images) != tc.images || l.Unread != tc.unread {
				t.Errorf("%d images, %d unread; want %d, %d", len(l.Images), l.Unread, tc.images, tc.unread)
			}
			if tc.firstImage != "" && (len(l.Images) == 0 || l.Images[0] != tc.firstImage) {
				t.Errorf("images begin %.3q, want %q (list order)", l.Images, tc.firstImage)
			}
			if alloc > tc.maxAlloc*allocSlack {
				t.Errorf("reading %d bytes allocated %d bytes, want at most %d", len(tc.value), alloc, tc.maxAlloc*allocSlack)
			}
		})
	}
}

// The worst values at the limits: a megabyte of entries that are not plain
// references (each a YAML value of its own) costs the parser at most
// MaxYAMLBytes of them; a megabyte in no simple form is refused unread.
func TestReadImageListWorstCase(t *testing.T) {
	for _, tc := range []struct {
		name     string
		value    string
		maxAlloc uint64
		err      error
	}{
		{"numbers, flow", ones(512 << 10), 16 << 20, nil},
		{"numbers, block", strings.Repeat("- 1\n", 256<<10), 16 << 20, nil},
		{"nested lists, block", strings.Repeat("- [[[[1]]]]\n", 80<<10), 16 << 20, nil},
		{"maps, block", strings.Repeat("- a: b\n", 140<<10), 16 << 20, nil},
		{"no simple form", strings.Repeat("- a\n  - b\n", 100<<10), 1 << 20, errNotSimple},
		{"64 KiB in no simple form", strings.Repeat("- a\n  - b\n", (MaxYAMLBytes-1)/10), 32 << 20, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			alloc := bytesAllocatedBy(func() { _, err = Read(tc.value, Limits{Keep: 1000, Read: 2000}) })
			if (err != nil) != (tc.err != nil) || (err != nil && !strings.Contains(err.Error(), "not written one image a line")) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if alloc > tc.maxAlloc*allocSlack {
				t.Errorf("reading %d bytes allocated %d bytes, want at most %d", len(tc.value), alloc, tc.maxAlloc*allocSlack)
			}
		})
	}
}

var errNotSimple = errors.New("not in a simple form")

// BenchmarkReadImageList prints the cost of reading a megabyte list of
// valid references, as the daemon reads it (keep --max-images) and whole.
func BenchmarkReadImageList(b *testing.B) {
	var sb strings.Builder
	for i := 0; sb.Len() < 1<<20; i++ {
		fmt.Fprintf(&sb, "- registry.example/team/app%06d:v1\n", i)
	}
	value := sb.String()
	for _, bc := range []struct {
		name string
		lim  Limits
	}{{"keep1000", Limits{Keep: 1000, Read: 2000}}, {"all", Limits{}}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(value)))
			for b.Loop() {
				if _, err := Read(value, bc.lim); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The scanner leaves to the parser what the parser reads as a line break
// and a scanner might not (found in review: each hid an entry).
func TestHiddenLineBreaks(t *testing.T) {
	for _, v := range []string{"- good/a\n# c\r- evil/b\n", "- good/a # c\u0085- evil/b\n", "- good/a\n# c\u2028- evil/b\n"} {
		if _, ok := readSimple(v, Limits{}); ok {
			t.Errorf("readSimple took %q", v)
		}
	}
}

// Each entry the parser reads goes to its own place: once an entry does not
// fit within what the parser reads, neither does any after it (found in
// review: a later, smaller entry was read in the place of the one that did
// not fit).
func TestEntriesPastTheParsersShareStayInPlace(t *testing.T) {
	value := "- \"" + strings.Repeat("a", 600) + "\\n\"\n" + // parsed: an escape
		"- \"" + strings.Repeat("b", 500) + "\\n\"\n" + // does not fit
		"- \"registry.example/small:v1\\u0020\"\n" + // would fit
		"- registry.example/plain:v1\n"
	l, err := Read(value, Limits{yamlBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"registry.example/plain:v1"}; !reflect.DeepEqual(l.Images, want) || l.Unread != 2 {
		t.Fatalf("images %q, %d unread; want %q, 2 unread", l.Images, l.Unread, want)
	}
	problems := fmt.Sprint(l.Problems.Errors())
	if !strings.Contains(problems, "entry 1: invalid image reference") || !strings.Contains(problems, "entry 2 and the entries after it that are not plain image references are not read") {
		t.Fatalf("problems: %s", problems)
	}
}
