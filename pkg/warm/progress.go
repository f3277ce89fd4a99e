package warm

import "time"

// Progress follows the states of successive syncs to tell, once per daemon
// life, how long the node's warm-up took: the figure of the warm-up duration
// histogram. It counts only a warm-up this daemon saw under way: the first
// state it is given is not warm and within the warm-up timeout. So a
// restarted daemon on a warm node, or one installed on nodes created long
// ago (timed out at once), observes nothing, where it would otherwise
// observe the node's age. Not safe for concurrent use: the daemon's single
// worker owns it.
type Progress struct {
	seen     bool // a state was given
	counting bool // the warm-up is under way and not observed yet
}

// Observe takes the state of one sync and returns the warm-up's duration
// (State.Elapsed) with ok true at the first warm state of a warm-up this
// daemon saw under way; ok is false otherwise.
func (p *Progress) Observe(st State) (took time.Duration, ok bool) {
	if !p.seen {
		p.seen = true
		p.counting = !st.Warm && !st.TimedOut
	}
	if !p.counting || !st.Warm {
		return 0, false
	}
	p.counting = false
	return st.Elapsed, true
}
