// Package problems holds one object's problems, capped: the first few as
// given, then only a count.
package problems

import (
	"errors"
	"fmt"
)

// Max is how many of one object's problems are reported one by one; the rest are counted.
const Max = 20

// List collects one object's problems: the first Max as given, then only a count,
// so a hostile object costs O(1) memory in problems however many it has.
//
// Every problem is logged and sent as an Event by the daemon of every node,
// so the cap bounds that traffic as well. The zero value is ready to use.
type List struct {
	kept    []error
	dropped int
}

// Add records err; a nil err is no problem and is ignored. The count that
// ends another List's Errors (wrapped or not) is added as that many
// dropped problems, so that problems collected twice, by a parser and then
// by its caller, keep their number.
func (p *List) Add(err error) {
	if err == nil {
		return
	}
	if more, ok := errors.AsType[moreProblems](err); ok {
		p.dropped += int(more)
		return
	}
	if len(p.kept) < Max {
		p.kept = append(p.kept, err)
		return
	}
	p.dropped++
}

// Len is the number of problems added, dropped ones included.
func (p *List) Len() int { return len(p.kept) + p.dropped }

// Errors returns the kept problems, plus one error "... and N more problems" when some were dropped (nil when none).
func (p *List) Errors() []error {
	if p.Len() == 0 {
		return nil
	}
	out := make([]error, len(p.kept), len(p.kept)+1)
	copy(out, p.kept)
	if p.dropped > 0 {
		out = append(out, moreProblems(p.dropped))
	}
	return out
}

// moreProblems stands for that many dropped problems.
type moreProblems int

func (n moreProblems) Error() string {
	if n == 1 {
		return "... and 1 more problem"
	}
	return fmt.Sprintf("... and %d more problems", int(n))
}
