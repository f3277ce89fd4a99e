package listformat

import (
	"slices"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
)

// FuzzRenderRoundTrip checks Render on any list (the input's lines): it
// stays fast and linear in size; YAML reads back every entry exactly as
// given (each byte of invalid UTF-8 as U+FFFD); and the entries Normalize accepts come
// back from ParseImageList as the same images, without a problem.
func FuzzRenderRoundTrip(f *testing.F) {
	f.Add(strings.Join(tricky, "\n"))
	for _, s := range []string{
		"", "alpine", "[::1]:5000/app:v1", "[fe80::1%eth0]:5000/app", "yes\nno\n1.10\nnull\n~",
		"a\"b\\c", "- x", "*a\n&a b", "#", "a: b", "\x00\x7f\u0085\u2028\ufeff", "😀", "\xff\xfe",
		strings.Repeat("a", 1<<10), strings.Repeat("[::1]:5000/a\n", 20),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Size costs time, not coverage: the unit tests render long lists.
		s = s[:min(len(s), 4<<10)]
		list := strings.Split(s, "\n")
		start := time.Now()
		rendered := Render(list)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Render of %d bytes took %v", len(s), d)
		}
		// Each byte becomes at most a 6-byte \u escape (a 4-byte rune a
		// 10-byte \U escape), each entry takes "- " and quotes and a newline.
		if limit := 6*len(s) + 5*len(list) + 3; len(rendered) > limit {
			t.Fatalf("Render of %d bytes in %d entries is %d bytes, more than %d", len(s), len(list), len(rendered), limit)
		}
		var raw []string
		if err := yaml.Unmarshal([]byte(rendered), &raw); err != nil {
			t.Fatalf("Render(%q) = %q, which is not YAML: %v", list, rendered, err)
		}
		if len(raw) != len(list) {
			t.Fatalf("Render(%q) = %q, which reads back as %d entries: %q", list, rendered, len(raw), raw)
		}
		for i := range list {
			if want := string([]rune(list[i])); raw[i] != want {
				t.Fatalf("Render(%q) = %q: entry %d reads back as %q, want %q", list, rendered, i+1, raw[i], want)
			}
		}

		var valid, want []string
		for _, ref := range list {
			if n, err := imageref.Normalize(ref); err == nil {
				valid, want = append(valid, ref), append(want, n)
			}
		}
		rendered = Render(valid)
		images, problems, err := ParseImageList(rendered)
		if err != nil || len(problems) > 0 {
			t.Fatalf("Render(%q) = %q, which ParseImageList refuses: %v %q", valid, rendered, err, problems)
		}
		if want = sortedDistinct(want); !slices.Equal(images, want) && len(images)+len(want) > 0 {
			t.Fatalf("Render(%q) = %q, which ParseImageList reads as %q, want %q", valid, rendered, images, want)
		}
	})
}

// tricky are references whose plain YAML would not read back as written,
// or that stress the grammar: IPv6 registries, digests, ports, localhost,
// "a:b" forms, separators.
var tricky = []string{
	"[::1]:5000/app:v1",
	"[::1]/app",
	"[2001:db8::1]:443/org/app@sha256:4c0b5c1c3c1ff5dc8d4a22d0e5a6f8b1f4b2c1b8e0f0a1d2c3b4a5968778695a",
	"[FE80::1]:5000/x",
	"alpine@sha256:4c0b5c1c3c1ff5dc8d4a22d0e5a6f8b1f4b2c1b8e0f0a1d2c3b4a5968778695a",
	"alpine:3.20@sha256:4c0b5c1c3c1ff5dc8d4a22d0e5a6f8b1f4b2c1b8e0f0a1d2c3b4a5968778695a",
	"ghcr.io/org/app@sha512:" + strings.Repeat("0123456789abcdef", 8),
	"ghcr.io/org/app@sha384:" + strings.Repeat("0123456789abcdef", 6),
	"localhost/app", "localhost:5000/app:v1", "registry:5000/a/b/c:tag",
	"127.0.0.1:5000/x:v1", "a:b", "a:1.10", "yes:no", "null:true", "on", "1.10", "08", "0x1f",
	"my__org/my.app-x---y:_T.1-x", "a--b/c__d", "docker.io/library/alpine:latest",
	"registry.example/app:" + strings.Repeat("t", 128),
}

// Render writes what ParseImageList reads back: every tricky reference, as
// written at the YAML level and as the same images after parsing.
func TestRenderRoundTrip(t *testing.T) {
	for _, ref := range tricky {
		t.Run(ref, func(t *testing.T) {
			n, err := imageref.Normalize(ref)
			if err != nil {
				t.Fatalf("the table holds an invalid reference: %v", err)
			}
			checkRoundTrip(t, []string{ref}, []string{n})
		})
	}
	t.Run("all at once", func(t *testing.T) {
		var want []string
		for _, ref := range tricky {
			n, _ := imageref.Normalize(ref)
			want = append(want, n)
		}
		checkRoundTrip(t, tricky, sortedDistinct(want))
	})
	t.Run("none", func(t *testing.T) { checkRoundTrip(t, nil, nil) })
}

// checkRoundTrip renders list and checks that YAML reads back exactly list
// and that ParseImageList reads the images want without a problem.
func checkRoundTrip(t *testing.T, list, want []string) {
	t.Helper()
	rendered := Render(list)
	var raw []string
	if err := yaml.Unmarshal([]byte(rendered), &raw); err != nil {
		t.Fatalf("Render(%q) = %q, which is not YAML: %v", list, rendered, err)
	}
	if len(raw) != len(list) || (len(list) > 0 && !slices.Equal(raw, list)) {
		t.Fatalf("Render(%q) = %q, which reads back as %q", list, rendered, raw)
	}
	images, problems, err := ParseImageList(rendered)
	if err != nil || len(problems) > 0 {
		t.Fatalf("Render(%q) = %q, which ParseImageList refuses: %v %q", list, rendered, err, problems)
	}
	if !slices.Equal(images, want) {
		t.Fatalf("Render(%q) = %q, which ParseImageList reads as %q, want %q", list, rendered, images, want)
	}
}

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want string
	}{
		{"empty", nil, "[]\n"},
		{"references are quoted as JSON quotes them", []string{"[::1]:5000/app:v1", "docker.io/library/alpine:latest"},
			"- \"[::1]:5000/app:v1\"\n- \"docker.io/library/alpine:latest\"\n"},
		{"quotes and backslashes", []string{`a"b\c`}, `- "a\"b\\c"` + "\n"},
		{"control characters and line breaks", []string{"a\x00b\tc\nd\x7fe\u0085f\u2028"}, `- "a\u0000b\u0009c\u000ad\u007fe\u0085f\u2028"` + "\n"},
		{"beyond the BMP", []string{"😀"}, `- "\U0001f600"` + "\n"},
		{"invalid UTF-8, a U+FFFD for each byte", []string{"a\xff\xfeb"}, `- "a\ufffd\ufffdb"` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Render(tc.in)
			if got != tc.want {
				t.Fatalf("Render(%q) = %q, want %q", tc.in, got, tc.want)
			}
			var raw []string
			if err := yaml.Unmarshal([]byte(got), &raw); err != nil {
				t.Fatalf("%q is not YAML: %v", got, err)
			}
			for i := range raw {
				if want := string([]rune(tc.in[i])); raw[i] != want {
					t.Errorf("entry %d reads back as %q, want %q", i+1, raw[i], want)
				}
			}
		})
	}
}

// sortedDistinct sorts list and drops repeats, as ParseImageList returns
// images.
func sortedDistinct(list []string) []string {
	list = slices.Clone(list)
	slices.Sort(list)
	return slices.Compact(list)
}
