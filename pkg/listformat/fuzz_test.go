package listformat

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/problems"
)

// maxFuzzInput is the longest input the fuzz targets read (longer ones are
// cut): size costs time, not coverage, and the unit tests read full-size
// hostile values.
const maxFuzzInput = 4 << 10

// FuzzParseImageList checks ParseImageList against any value: it never
// panics; one call takes at most a second and allocates at most a bound
// linear in the value's length; it returns at most problems.Max+1 problems,
// each of bounded length, and at most one image per entry, each image
// already normalised and the list sorted and distinct; and an error comes
// without images or problems.
func FuzzParseImageList(f *testing.F) {
	for _, s := range []string{
		`["alpine", "nginx:1.27"]`, "- alpine\n- nginx:1.27\n", "[]", "", "null", "alpine",
		"- [::1]:5000/app:v1\n", `- "[::1]:5000/app:v1"` + "\n", "- &a alpine\n- *a\n", "- *a\n",
		"[alpine, 1, 1.10, true, yes, null, [x], {a: b}, 2024-01-02, !!binary YQ==]",
		"- alpine\n---\n- debian\n", "- |\n  alpine\n", "{a: [b]}",
		// Hostile shapes, small: the unit tests take them at full size. A
		// fuzzer that mutates 20 KB inputs, and minimises each new one for
		// seconds, makes a few hundred calls a minute and finds little.
		"- &a " + strings.Repeat("x", 64) + "\n" + strings.Repeat("- *a\n", 64), ones(256), strings.Repeat("- A\n", 128),
		"- " + strings.Repeat("a", 1<<10), "- *" + strings.Repeat("a", 1<<10),
		strings.Repeat("[", 1000), strings.Repeat("- ", 1000) + "x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		value = value[:min(len(value), maxFuzzInput)]
		var images []string
		var found []error
		var err error
		var took time.Duration
		// ReadMemStats stops the world, and counts exactly: the runtime's
		// cheaper counters count whole spans, and other goroutines' (the
		// fuzzer's own), and once read 1.1 MB for a call that allocates
		// 172 KB.
		alloc := bytesAllocatedBy(func() {
			start := time.Now()
			images, found, err = ParseImageList(value)
			took = time.Since(start)
		})
		if took > time.Second {
			t.Fatalf("ParseImageList of %d bytes took %v", len(value), took)
		}
		// A bound well above what any shape of value costs (about 300
		// bytes a byte at worst), well below what expanding aliases costs.
		if limit := uint64(1<<20+512*len(value)) * allocSlack; alloc > limit {
			t.Fatalf("ParseImageList of %d bytes allocated %d bytes, more than %d", len(value), alloc, limit)
		}
		if err != nil {
			if images != nil || found != nil {
				t.Fatalf("err %v came with images %q and problems %q", err, images, found)
			}
			if len(err.Error()) > maxProblemMessage {
				t.Fatalf("error of %d bytes: %.300q", len(err.Error()), err)
			}
			return
		}
		if len(found) > problems.Max+1 {
			t.Fatalf("%d problems, more than problems.Max+1", len(found))
		}
		for _, p := range found {
			if len(p.Error()) > maxProblemMessage {
				t.Fatalf("problem of %d bytes: %.300q", len(p.Error()), p)
			}
		}
		// An entry takes at least one byte and a separator.
		if len(images) > len(value)/2+1 {
			t.Fatalf("%d images from %d bytes", len(images), len(value))
		}
		if !slices.IsSorted(images) || len(slices.Compact(slices.Clone(images))) != len(images) {
			t.Fatalf("images %q are not sorted and distinct", images)
		}
		for _, img := range images {
			if n, err := imageref.Normalize(img); err != nil || n != img {
				t.Fatalf("image %q is not normalised: %q, %v", img, n, err)
			}
		}
	})
}

// maxProblemMessage bounds one problem's message: fixed text and a few values,
// each quoted at most imageref.MaxQuoted bytes long (at most 10 bytes of %q
// escape for each).
const maxProblemMessage = 4*10*imageref.MaxQuoted + 1024
