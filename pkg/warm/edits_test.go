package warm

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// tenantEdits follows one node while a tenant edits its image list: what is
// wanted, how each pull ended, and the writer that puts the warm state on
// the node. Each edit adds an image; once the list holds window images, it
// also drops the oldest, so that a benchmark's edits cost the same however
// many it makes.
type tenantEdits struct {
	f      *fixture
	now    time.Time
	window int
	wanted []string
	states map[string]wire.State
	added  int
}

const warmUpTimeout = 10 * time.Minute

// newTenantEdits starts at now (the node was created at t0, the warm-up
// timeout is warmUpTimeout) with one image, base:1, whose pull ended in
// base (Pulling: it never ends), and syncs once: the node's first
// condition.
func newTenantEdits(tb testing.TB, now time.Time, base wire.State, window int) *tenantEdits {
	tb.Helper()
	te := &tenantEdits{f: newFixture(tb, node(nil), ""), now: now, window: window,
		wanted: []string{"base:1"}, states: map[string]wire.State{"base:1": base}}
	checkActions(tb, te.sync(tb), get, patchStatus)
	return te
}

// sync evaluates the node as the daemon does and applies the state; it
// returns the Node API actions made.
func (te *tenantEdits) sync(tb testing.TB) []k8stesting.Action {
	tb.Helper()
	states := make([]wire.ImageStatus, 0, len(te.states))
	for image, s := range te.states {
		states = append(states, img(image, s, ""))
	}
	st := Evaluate(Input{Now: te.now, Started: t0, Timeout: warmUpTimeout, Wanted: te.wanted, States: states})
	_, actions := te.f.apply(tb, st)
	return actions
}

// edit adds an image to the list (and drops the oldest but base:1 past the
// window). The daemon syncs when it sees the edit, the new image not
// cached yet, and again when its pull ends in end. It returns the Node API
// actions of both syncs.
func (te *tenantEdits) edit(tb testing.TB, end wire.State) []k8stesting.Action {
	tb.Helper()
	te.added++
	image := fmt.Sprintf("tenant/app-%d:1", te.added)
	te.wanted = append(te.wanted, image)
	if te.window > 0 && len(te.wanted) > te.window {
		delete(te.states, te.wanted[1])
		te.wanted = append(te.wanted[:1], te.wanted[2:]...)
	}
	actions := te.sync(tb)
	te.states[image] = end
	return append(actions, te.sync(tb)...)
}

// patches counts the writes among actions.
func patches(actions []k8stesting.Action) int {
	n := 0
	for _, a := range actions {
		if a.GetVerb() == "patch" {
			n++
		}
	}
	return n
}

// A tenant's edits change the counts, never the node's warm state: they make
// no Node request at all, whether the node is warm (each new image is
// Warming, or past the timeout on an old node, until it is cached) or not
// (one image still pulls, or the warm-up timed out).
func TestTenantEditsAreNoNodeWrites(t *testing.T) {
	const edits = 10
	within, late := t0.Add(time.Minute), t0.Add(time.Hour)
	for _, tc := range []struct {
		name string
		now  time.Time
		base wire.State // how base:1 ended: Pulling keeps the node warming
		end  wire.State // how each added image's pull ends
		want corev1.ConditionStatus
	}{
		{"warm: each added image is cached", within, wire.Cached, wire.Cached, corev1.ConditionTrue},
		{"warm on an old node: each added image is past the timeout until cached", late, wire.Cached, wire.Cached, corev1.ConditionTrue},
		{"warm: each added image fails", within, wire.Cached, wire.Failed, corev1.ConditionTrue},
		{"warming: each added image is cached while one still pulls", within, wire.Pulling, wire.Cached, corev1.ConditionFalse},
		{"warming: each added image still pulls", within, wire.Pulling, wire.Pulling, corev1.ConditionFalse},
		{"timed out: each added image is cached while one still pulls", late, wire.Pulling, wire.Cached, corev1.ConditionFalse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTenantEdits(t, tc.now, tc.base, 0)
			before := ourCondition(te.f.node(t))
			for i := range edits {
				if actions := te.edit(t, tc.end); len(actions) > 0 {
					t.Errorf("edit %d (%d images wanted): %d Node requests, %d of them writes, want none", i+1, len(te.wanted), len(actions), patches(actions))
					checkActions(t, actions)
				}
			}
			after := ourCondition(te.f.node(t))
			if after.Status != tc.want || *after != *before {
				t.Errorf("condition after %d edits: %+v, want %s as before the edits", edits, after, tc.want)
			}
		})
	}
}

// The condition changes, one write, when the node's warm state does: from
// warming to warm, from warming to failed; once warm, it stays True.
func TestWarmStateChangesWriteOnce(t *testing.T) {
	te := newTenantEdits(t, t0.Add(time.Minute), wire.Pulling, 0)
	steps := []struct {
		name  string
		base  wire.State
		write bool
		want  string // the reason on the node after
	}{
		{"still warming", wire.Pulling, false, ReasonWarming},
		{"base:1 fails", wire.Failed, true, ReasonImagesFailed},
		{"base:1 is pulled again", wire.Pulling, true, ReasonWarming},
		{"base:1 is cached: warm", wire.Cached, true, ReasonWarm},
		{"base:1 fails once warm", wire.Failed, false, ReasonWarm},
		{"base:1 is cached again", wire.Cached, false, ReasonWarm},
	}
	for _, s := range steps {
		te.states["base:1"] = s.base
		actions := te.sync(t)
		want := []action(nil)
		if s.write {
			want = []action{get, patchStatus}
		}
		checkActions(t, actions, want...)
		if got := ourCondition(te.f.node(t)); got.Reason != s.want {
			t.Errorf("%s: the node says %s, want %s", s.name, got.Reason, s.want)
		}
	}
}

// A restarted daemon reads the node once: a warm node stays True while the
// sources sync (a partial view is never warm), unless the startup taint is
// back on it, which starts a new warm-up.
func TestRestartOnAWarmNode(t *testing.T) {
	warmCond := cond(State{Status: corev1.ConditionTrue, Reason: ReasonWarm}, earlier, earlier)
	partial := Evaluate(Input{Now: t0, Started: t0, Timeout: warmUpTimeout, Wanted: []string{"a:1"}, Partial: true})
	for _, tc := range []struct {
		name    string
		taints  []corev1.Taint
		actions []action
		want    corev1.ConditionStatus
	}{
		{"untainted: kept True", nil, []action{get}, corev1.ConditionTrue},
		{"tainted again: warming", []corev1.Taint{startup}, []action{get, patchStatus}, corev1.ConditionFalse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, node(warmCond, tc.taints...), key)
			_, actions := f.apply(t, partial)
			checkActions(t, actions, tc.actions...)
			if got := ourCondition(f.node(t)); got.Status != tc.want {
				t.Errorf("condition %+v, want %s", got, tc.want)
			}
			_, again := f.apply(t, partial)
			checkActions(t, again)
		})
	}
}

// BenchmarkTenantEdit prints the Node writes (and requests) that one
// tenant's edit of an image list costs a node: an edit adds an image (and
// drops the oldest of 100), the daemon syncs when it sees it and again when
// the pull is done. "warm": every image gets cached; "warming": base:1
// never does. Goal: 0 once warm.
func BenchmarkTenantEdit(b *testing.B) {
	for _, bc := range []struct {
		name string
		base wire.State
	}{
		{"warm", wire.Cached},
		{"warming", wire.Pulling},
	} {
		b.Run(bc.name, func(b *testing.B) {
			te := newTenantEdits(b, t0.Add(time.Minute), bc.base, 100)
			writes, requests, edits := 0, 0, 0
			for b.Loop() {
				actions := te.edit(b, wire.Cached)
				writes += patches(actions)
				requests += len(actions)
				edits++
			}
			b.ReportMetric(float64(writes)/float64(edits), "node-writes/edit")
			b.ReportMetric(float64(requests)/float64(edits), "node-requests/edit")
		})
	}
}
