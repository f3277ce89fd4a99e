package problems

import (
	"errors"
	"fmt"
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
		{name: "exactly Max", add: Max, want: numbered(Max)},
		{name: "one dropped", add: Max + 1, want: append(numbered(Max), "... and 1 more problem")},
		{name: "many dropped", add: 1000, want: append(numbered(Max), "... and 980 more problems")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p List
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
	var p List
	p.Add(fmt.Errorf("entry 1: %w", sentinel))
	got := p.Errors()
	if !errors.Is(got[0], sentinel) {
		t.Fatalf("Errors()[0] = %v does not wrap the error added", got[0])
	}
	got[0] = nil
	if p.Errors()[0] == nil {
		t.Fatal("changing the slice Errors returned changed the List")
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
		{name: "into an empty List", before: 0, parsed: 1000, want: "... and 980 more problems"},
		{name: "into one that has some", before: 3, parsed: 25, want: "... and 8 more problems"},
		{name: "none dropped", before: 0, parsed: Max, want: "p20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var parser, caller List
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
			if len(errs) > Max+1 {
				t.Fatalf("%d errors", len(errs))
			}
			if last := errs[len(errs)-1].Error(); !strings.HasSuffix(last, tc.want) {
				t.Errorf("last error = %q, want it to end %q", last, tc.want)
			}
		})
	}
}

func numbered(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("p%d", i+1)
	}
	return out
}
