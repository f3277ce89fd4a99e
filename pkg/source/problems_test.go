package source

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		add  int
		// want is the messages Errors returns.
		want []string
	}{
		{name: "none", add: 0, want: nil},
		{name: "one", add: 1, want: []string{"p1"}},
		{name: "exactly MaxProblems", add: MaxProblems, want: numbered(MaxProblems)},
		{name: "one dropped", add: MaxProblems + 1, want: append(numbered(MaxProblems), "... and 1 more problem")},
		{name: "many dropped", add: 1000, want: append(numbered(MaxProblems), "... and 980 more problems")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Problems
			for i := 1; i <= tc.add; i++ {
				p.Add(fmt.Errorf("p%d", i))
				p.Add(nil)
			}
			if p.Len() != tc.add {
				t.Errorf("Len = %d, want %d (nil is no problem)", p.Len(), tc.add)
			}
			got := p.Errors()
			if tc.want == nil && got != nil {
				t.Fatalf("Errors = %q, want nil", got)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("Errors = %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i].Error() != tc.want[i] {
					t.Errorf("Errors[%d] = %q, want %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// The kept problems are the ones added, so errors.Is and errors.As still
// find what a caller wrapped; Errors hands out a copy the caller may change.
func TestProblemsKeepsErrorsAsGiven(t *testing.T) {
	sentinel := errors.New("sentinel")
	var p Problems
	p.Add(fmt.Errorf("entry 1: %w", sentinel))
	got := p.Errors()
	if !errors.Is(got[0], sentinel) {
		t.Fatalf("Errors()[0] = %v does not wrap the error added", got[0])
	}
	got[0] = nil
	if p.Errors()[0] == nil {
		t.Fatal("changing the slice Errors returned changed the Problems")
	}
}

// Problems collected twice, by a parser and again by its caller (the
// informer re-adds ImagesFromConfigMap's problems, which it wrapped), keep
// their count rather than becoming "... and 1 more problem".
func TestProblemsAddedTwiceKeepTheirCount(t *testing.T) {
	for _, tc := range []struct {
		name           string
		before, parsed int
		want           string
	}{
		{name: "into an empty Problems", before: 0, parsed: 1000, want: "... and 980 more problems"},
		{name: "into one that has some", before: 3, parsed: 25, want: "... and 8 more problems"},
		{name: "none dropped", before: 0, parsed: MaxProblems, want: "p20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var parser, caller Problems
			for i := 1; i <= tc.parsed; i++ {
				parser.Add(fmt.Errorf("p%d", i))
			}
			for i := 1; i <= tc.before; i++ {
				caller.Add(fmt.Errorf("earlier %d", i))
			}
			for _, err := range parser.Errors() {
				caller.Add(fmt.Errorf("ConfigMap ns/list key %q: %w", "images", err))
			}
			if caller.Len() != tc.before+tc.parsed {
				t.Errorf("Len = %d, want %d", caller.Len(), tc.before+tc.parsed)
			}
			errs := caller.Errors()
			if len(errs) > MaxProblems+1 {
				t.Fatalf("%d errors", len(errs))
			}
			if last := errs[len(errs)-1].Error(); !strings.HasSuffix(last, tc.want) {
				t.Errorf("last error = %q, want it to end %q", last, tc.want)
			}
		})
	}
}

// A million problems cost what twenty do.
func TestProblemsMemoryIsBounded(t *testing.T) {
	err := errors.New("bad")
	var p Problems
	grown := bytesAllocatedBy(func() {
		for range 1_000_000 {
			p.Add(err)
		}
	})
	if grown > 1<<20 { // keeping them all would take 16 MiB of slice alone
		t.Errorf("adding a million problems allocated %d bytes, want a bound independent of the count", grown)
	}
	if p.Len() != 1_000_000 || len(p.Errors()) != MaxProblems+1 {
		t.Errorf("Len = %d, Errors has %d; want 1000000 and %d", p.Len(), len(p.Errors()), MaxProblems+1)
	}
}

func numbered(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("p%d", i+1)
	}
	return out
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
