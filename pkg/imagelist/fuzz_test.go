package imagelist

import (
	"slices"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/source"
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
		images, problems, err := source.ParseImageList(rendered)
		if err != nil || len(problems) > 0 {
			t.Fatalf("Render(%q) = %q, which ParseImageList refuses: %v %q", valid, rendered, err, problems)
		}
		if want = sortedUnique(want); !slices.Equal(images, want) && len(images)+len(want) > 0 {
			t.Fatalf("Render(%q) = %q, which ParseImageList reads as %q, want %q", valid, rendered, images, want)
		}
	})
}
