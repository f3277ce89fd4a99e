package listformat

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/dcherman/image-cache-daemon/pkg/problems"
)

// aliasBomb is the platform team's finding: one anchored 20 KB scalar
// aliased 2,000 times, a 30 KB value that a parser expanding aliases makes
// 40 MB of strings (and ~260 MiB at peak).
func aliasBomb() string {
	return "- &a " + strings.Repeat("x", 20<<10) + "\n" + strings.Repeat("- *a\n", 2000)
}

// ones is the other finding: a 1 MiB value of [1,1,1,...], half a million
// entries that are not strings.
func ones(n int) string { return "[" + strings.Repeat("1,", n-1) + "1]" }

// Hostile values cost little: aliases are refused without being expanded,
// problems are capped at problems.Max and a count, and every quoted value is
// cut short.
func TestParseImageListHostile(t *testing.T) {
	huge := strings.Repeat("a", 1<<20)
	for _, tc := range []struct {
		name  string
		value string
		// maxAlloc bounds the bytes one call allocates.
		maxAlloc uint64
		want     []string
		// problems: the first problems must contain these, in order;
		// more: the count in the last problem, if any were dropped.
		problems []string
		more     int
		err      string
	}{
		{name: "alias bomb", value: aliasBomb(), maxAlloc: 4 << 20,
			problems: []string{`entry 1: invalid image reference "` + strings.Repeat("x", 128) + `…" (+20352 bytes): it is 20480 bytes long`,
				"entry 2: YAML aliases (*a) are not allowed in an image list; write each image out"},
			more: 2001 - problems.Max},
		{name: "alias bomb in flow style", value: `[&a "` + strings.Repeat("x", 20<<10) + `"` + strings.Repeat(", *a", 2000) + "]", maxAlloc: 4 << 20,
			problems: []string{"entry 1: invalid image reference", "entry 2: YAML aliases (*a)"}, more: 2001 - problems.Max},
		{name: "billion laughs", maxAlloc: 1 << 20,
			value: func() string {
				var b strings.Builder
				b.WriteString("- &l0 [" + strings.Repeat(`"lol",`, 9) + `"lol"]` + "\n")
				for i := 1; i < 10; i++ {
					fmt.Fprintf(&b, "- &l%d [%s*l%d]\n", i, strings.Repeat(fmt.Sprintf("*l%d,", i-1), 9), i-1)
				}
				return b.String()
			}(),
			problems: func() (p []string) {
				for i := 1; i <= 10; i++ {
					p = append(p, fmt.Sprintf("entry %d is a list, not a string", i))
				}
				return p
			}()},
		// The parser reads the first 64 KiB of entries that are not plain
		// references (8,192 here), and the rest are counted, not read.
		{name: "a megabyte of numbers", value: ones(512 << 10), maxAlloc: 16 << 20,
			problems: []string{"entry 1 is a number (1), not a string"}, more: 8192 + 1 - problems.Max},
		{name: "many invalid references", value: strings.Repeat("- A\n", 64<<10), maxAlloc: 128 << 20,
			problems: []string{`entry 1: invalid image reference "A"`}, more: 64<<10 - problems.Max},
		{name: "a megabyte reference", value: `["alpine", "` + huge + `"]`, maxAlloc: 16 << 20,
			want:     []string{"docker.io/library/alpine:latest"},
			problems: []string{`entry 2: invalid image reference "` + strings.Repeat("a", 128) + `…" (+1048448 bytes): it is 1048576 bytes long; an image reference is at most 1024 bytes`}},
		{name: "a megabyte number", value: "- 1." + huge[:0] + strings.Repeat("0", 1<<20) + "\n", maxAlloc: 16 << 20,
			problems: []string{"entry 1 and the entries after it that are not plain image references are not read: the list holds more than 64 KiB of such entries"}},
		{name: "a number of 64 KiB", value: "- 1." + strings.Repeat("0", 60<<10) + "\n", maxAlloc: 16 << 20,
			problems: []string{"entry 1 is a number (1." + strings.Repeat("0", 126) + "… (+61314 bytes)), not a string"}},
		{name: "a megabyte string", value: huge, maxAlloc: 16 << 20,
			err: `the value is 1048576 bytes long and not written one image a line ("- image") or as a JSON list of strings`},
		{name: "a short string", value: "alpine", maxAlloc: 1 << 20,
			err: `the value is a single string ("alpine"), not a list`},
		{name: "a megabyte anchor name", value: "- *" + huge + "\n", maxAlloc: 16 << 20,
			problems: []string{"entry 1 and the entries after it that are not plain image references are not read"}},
		{name: "an unknown anchor", value: "- *" + strings.Repeat("a", 200) + "\n", maxAlloc: 1 << 20,
			err: "yaml: unknown anchor '" + strings.Repeat("a", 128-len("yaml: unknown anchor '")) + "… (+"},
		{name: "deep nesting", value: strings.Repeat("[", 9000) + strings.Repeat("]", 9000), maxAlloc: 16 << 20,
			problems: []string{"entry 1 is a list"}},
		{name: "too deep", value: strings.Repeat("[", 1<<20), maxAlloc: 1 << 20,
			err: "not written one image a line"},
		{name: "too deep for the parser", value: strings.Repeat("[", 60<<10), maxAlloc: 64 << 20,
			err: "exceeded max depth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var images []string
			var found []error
			var err error
			alloc := bytesAllocatedBy(func() { images, found, err = ParseImageList(tc.value) })
			if alloc > tc.maxAlloc*allocSlack {
				t.Errorf("ParseImageList of %d bytes allocated %d bytes, want at most %d", len(tc.value), alloc, tc.maxAlloc*allocSlack)
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %.500v, want one that says %q", err, tc.err)
				}
				if len(err.Error()) > maxProblemMessage {
					t.Errorf("err is %d bytes long", len(err.Error()))
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %.500v", err)
			}
			if !reflect.DeepEqual(images, tc.want) {
				t.Errorf("images = %q, want %q", images, tc.want)
			}
			wantLen := len(tc.problems)
			if tc.more > 0 {
				wantLen = problems.Max + 1
			}
			if len(found) != wantLen {
				t.Fatalf("%d problems, want %d", len(found), wantLen)
			}
			for i, want := range tc.problems {
				if !strings.HasPrefix(found[i].Error(), want) {
					t.Errorf("problem %d = %.300q, want it to begin %.300q", i+1, found[i], want)
				}
			}
			if tc.more > 0 {
				if got, want := found[problems.Max].Error(), fmt.Sprintf("... and %d more problems", tc.more); got != want {
					t.Errorf("last problem = %q, want %q", got, want)
				}
			}
			for _, p := range found {
				if len(p.Error()) > maxProblemMessage {
					t.Errorf("a problem of %d bytes: %.300q", len(p.Error()), p)
				}
			}
		})
	}
}

// Time and memory grow linearly with the value: twice the entries cost at
// most about twice as much, whatever their shape. (A parser that expands
// aliases costs aliases x anchor size: four times as much here.)
func TestParseImageListIsLinear(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value func(n int) string
	}{
		{"numbers", ones},
		{"invalid references", func(n int) string { return strings.Repeat("- A\n", n) }},
		{"valid references", func(n int) string {
			var b strings.Builder
			for i := range n {
				fmt.Fprintf(&b, "- registry.example/app%d:v1\n", i)
			}
			return b.String()
		}},
		{"aliases of a long anchor", func(n int) string {
			return "- &a " + strings.Repeat("x", n) + "\n" + strings.Repeat("- *a\n", n/10)
		}},
		{"nested lists", func(n int) string { return strings.Repeat("- [[[[1]]]]\n", n) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 5000
			small, large := tc.value(n), tc.value(2*n)
			a1 := bytesAllocatedBy(func() { _, _, _ = ParseImageList(small) })
			a2 := bytesAllocatedBy(func() { _, _, _ = ParseImageList(large) })
			if float64(a2) > 2.5*float64(a1) {
				t.Errorf("%d bytes allocated %d; %d bytes allocated %d (x%.1f), want about twice as much", len(small), a1, len(large), a2, float64(a2)/float64(a1))
			}
		})
	}
}

// A million problems cost what twenty do. (Checked here, where the other
// allocation bounds are, so that one package holds bytesAllocatedBy.)
func TestProblemsMemoryIsBounded(t *testing.T) {
	err := errors.New("bad")
	var p problems.List
	grown := bytesAllocatedBy(func() {
		for range 1_000_000 {
			p.Add(err)
		}
	})
	if grown > 1<<20 { // keeping them all would take 16 MiB of slice alone
		t.Errorf("adding a million problems allocated %d bytes, want a bound independent of the count", grown)
	}
	if p.Len() != 1_000_000 || len(p.Errors()) != problems.Max+1 {
		t.Errorf("Len = %d, Errors has %d; want 1000000 and %d", p.Len(), len(p.Errors()), problems.Max+1)
	}
}

// bytesAllocatedBy returns how many bytes of heap f allocates, garbage
// included: a bound on it is a bound on the memory a call can take.
// ReadMemStats flushes every P's cached spans, so the count is exact (which
// runtime/metrics, cheaper, is not); no GC is needed, as TotalAlloc only
// grows.
func bytesAllocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// allocSlack is how much looser allocation bounds are in this test binary:
// 16 under the race detector, which makes sync.Pool drop items on purpose so
// that fmt and regexp allocate afresh on every call (up to ~15x more for
// invalid references); 1 otherwise. Even 16x the bound for the alias bomb is
// far below what expanding its aliases costs.
var allocSlack = func() uint64 {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				return 16
			}
		}
	}
	return 1
}()
