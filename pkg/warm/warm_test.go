package warm

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// img returns a status of image on node-1.
func img(image string, s wire.State, reason string) wire.ImageStatus {
	return wire.ImageStatus{Node: "node-1", Image: image, State: s, Reason: reason}
}

func TestEvaluate(t *testing.T) {
	const timeout = 10 * time.Minute
	abc := []string{"a:1", "b:1", "c:1"}
	for _, tc := range []struct {
		name    string
		now     time.Time // t0 + 1m when zero
		started time.Time // t0 when zero
		timeout time.Duration
		wanted  []string
		partial bool
		states  []wire.ImageStatus
		want    State
	}{
		{
			name: "nothing wanted is warm", timeout: timeout,
			states: []wire.ImageStatus{img("a:1", wire.Pulling, "")},
			want: State{Warm: true, Status: corev1.ConditionTrue, Reason: ReasonNothingWanted,
				Message: "no image is wanted on this node", ReleaseTaint: true},
		},
		{
			name: "every wanted image cached is warm", timeout: timeout, wanted: abc,
			states: []wire.ImageStatus{img("a:1", wire.Cached, ""), img("b:1", wire.Cached, ""), img("c:1", wire.Cached, "")},
			want: State{Warm: true, Status: corev1.ConditionTrue, Reason: ReasonWarm,
				Message: "all 3 wanted images are cached", Cached: 3, Total: 3, ReleaseTaint: true},
		},
		{
			name: "pulling, pending and unknown images are waited for", timeout: timeout, wanted: abc,
			states: []wire.ImageStatus{img("a:1", wire.Cached, ""), img("b:1", wire.Pulling, "")},
			want: State{Status: corev1.ConditionFalse, Reason: ReasonWarming,
				Message: "warming: 1/3 wanted images cached; waiting for b:1, c:1", Cached: 1, Total: 3},
		},
		{
			name: "a duplicate wanted image counts once", timeout: timeout, wanted: []string{"b:1", "a:1", "b:1"},
			states: []wire.ImageStatus{img("a:1", wire.Cached, "")},
			want: State{Status: corev1.ConditionFalse, Reason: ReasonWarming,
				Message: "warming: 1/2 wanted images cached; waiting for b:1", Cached: 1, Total: 2},
		},
		{
			name: "cached images nobody wants do not count", timeout: timeout, wanted: []string{"a:1"},
			states: []wire.ImageStatus{img("z:1", wire.Cached, ""), img("a:1", wire.Pending, "")},
			want: State{Status: corev1.ConditionFalse, Reason: ReasonWarming,
				Message: "warming: 0/1 wanted images cached; waiting for a:1", Total: 1},
		},
		{
			name: "the first status of an image speaks for it", timeout: timeout, wanted: []string{"a:1"},
			states: []wire.ImageStatus{img("a:1", wire.Cached, ""), img("a:1", wire.Failed, "ErrImagePull")},
			want: State{Warm: true, Status: corev1.ConditionTrue, Reason: ReasonWarm,
				Message: "all 1 wanted images are cached", Cached: 1, Total: 1, ReleaseTaint: true},
		},
		{
			name: "many missing images are named by the first three", timeout: timeout,
			wanted: []string{"e:1", "d:1", "c:1", "b:1", "a:1"},
			want: State{Status: corev1.ConditionFalse, Reason: ReasonWarming,
				Message: "warming: 0/5 wanted images cached; waiting for a:1, b:1, c:1 and 2 more", Total: 5},
		},
		{
			name: "failed images release the taint", timeout: timeout, wanted: abc,
			states: []wire.ImageStatus{img("a:1", wire.Cached, ""), img("b:1", wire.Failed, "ErrImagePull"), img("c:1", wire.Pulling, "")},
			want: State{Status: corev1.ConditionFalse, Reason: ReasonImagesFailed,
				Message: "1/3 wanted images cached; 1 failed: b:1 (ErrImagePull); 1 more not cached yet",
				Cached:  1, Total: 3, Failed: []string{"b:1"}, ReleaseTaint: true},
		},
		{
			name: "many failed images, without a reason", timeout: timeout, wanted: []string{"a:1", "b:1", "c:1", "d:1"},
			states: []wire.ImageStatus{img("a:1", wire.Failed, ""), img("b:1", wire.Failed, "InvalidImageName"),
				img("c:1", wire.Failed, "ImagePullBackOff"), img("d:1", wire.Failed, "ErrImagePull")},
			want: State{Status: corev1.ConditionFalse, Reason: ReasonImagesFailed,
				Message: "0/4 wanted images cached; 4 failed: a:1, b:1 (InvalidImageName), c:1 (ImagePullBackOff) and 1 more",
				Total:   4, Failed: []string{"a:1", "b:1", "c:1", "d:1"}, ReleaseTaint: true},
		},
		{
			name: "the timeout releases the taint and names what is missing", timeout: timeout, wanted: abc,
			now:    t0.Add(timeout),
			states: []wire.ImageStatus{img("a:1", wire.Cached, ""), img("b:1", wire.Pulling, "")},
			want: State{Status: corev1.ConditionFalse, Reason: ReasonTimedOut,
				Message: "1/3 wanted images cached when the 10m0s warm-up timeout passed; missing: b:1, c:1",
				Cached:  1, Total: 3, TimedOut: true, ReleaseTaint: true},
		},
		{
			name: "failed images take precedence over the timeout", timeout: timeout, wanted: abc,
			now:    t0.Add(time.Hour),
			states: []wire.ImageStatus{img("a:1", wire.Failed, "ErrImagePull")},
			want: State{Status: corev1.ConditionFalse, Reason: ReasonImagesFailed,
				Message: "0/3 wanted images cached; 1 failed: a:1 (ErrImagePull); 2 more not cached yet",
				Total:   3, Failed: []string{"a:1"}, TimedOut: true, ReleaseTaint: true},
		},
		{
			name: "warm after the timeout is warm", timeout: timeout, wanted: []string{"a:1"},
			now:    t0.Add(time.Hour),
			states: []wire.ImageStatus{img("a:1", wire.Cached, "")},
			want: State{Warm: true, Status: corev1.ConditionTrue, Reason: ReasonWarm,
				Message: "all 1 wanted images are cached", Cached: 1, Total: 1, ReleaseTaint: true},
		},
		{
			name: "no timeout never times out", wanted: []string{"a:1"}, now: t0.Add(1000 * time.Hour),
			want: State{Status: corev1.ConditionFalse, Reason: ReasonWarming,
				Message: "warming: 0/1 wanted images cached; waiting for a:1", Total: 1},
		},
		{
			name: "a partial view is never warm", timeout: timeout, wanted: []string{"a:1"}, partial: true,
			states: []wire.ImageStatus{img("a:1", wire.Cached, "")},
			want: State{Status: corev1.ConditionFalse, Reason: ReasonWarming,
				Message: "warming: 1/1 wanted images cached; waiting for every source of wanted images to sync", Cached: 1, Total: 1},
		},
		{
			name: "a partial view of nothing wanted is not warm either", timeout: timeout, partial: true,
			want: State{Status: corev1.ConditionFalse, Reason: ReasonWarming,
				Message: "warming: 0/0 wanted images cached; waiting for every source of wanted images to sync"},
		},
		{
			name: "a partial view waits for images and sources", timeout: timeout, wanted: []string{"a:1", "b:1"}, partial: true,
			states: []wire.ImageStatus{img("a:1", wire.Cached, "")},
			want: State{Status: corev1.ConditionFalse, Reason: ReasonWarming,
				Message: "warming: 1/2 wanted images cached; waiting for b:1, and every source of wanted images to sync", Cached: 1, Total: 2},
		},
		{
			name: "a partial view times out", timeout: timeout, wanted: []string{"a:1"}, partial: true, now: t0.Add(timeout),
			states: []wire.ImageStatus{img("a:1", wire.Cached, "")},
			want: State{Status: corev1.ConditionFalse, Reason: ReasonTimedOut,
				Message: "1/1 wanted images cached when the 10m0s warm-up timeout passed; " + unsynced,
				Cached:  1, Total: 1, TimedOut: true, ReleaseTaint: true},
		},
		{
			name: "a partial view sees failures", timeout: timeout, wanted: []string{"a:1"}, partial: true,
			states: []wire.ImageStatus{img("a:1", wire.Failed, "ErrImagePull")},
			want: State{Status: corev1.ConditionFalse, Reason: ReasonImagesFailed,
				Message: "0/1 wanted images cached; 1 failed: a:1 (ErrImagePull); " + unsynced,
				Total:   1, Failed: []string{"a:1"}, ReleaseTaint: true},
		},
		{
			name: "a start in the future (clock skew) is no time elapsed", timeout: timeout, wanted: []string{"a:1"},
			started: t0.Add(time.Hour), now: t0,
			want: State{Status: corev1.ConditionFalse, Reason: ReasonWarming,
				Message: "warming: 0/1 wanted images cached; waiting for a:1", Total: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now, started := tc.now, tc.started
			if now.IsZero() {
				now = t0.Add(time.Minute)
			}
			if started.IsZero() {
				started = t0
			}
			got := Evaluate(Input{Now: now, Started: started, Timeout: tc.timeout, Wanted: tc.wanted, Partial: tc.partial, States: tc.states})
			want := tc.want
			want.Timeout = tc.timeout
			want.Elapsed = max(now.Sub(started), 0)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Evaluate:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestEvaluateZeroStart(t *testing.T) {
	got := Evaluate(Input{Now: t0, Timeout: time.Minute, Wanted: []string{"a:1"}})
	if got.TimedOut || got.ReleaseTaint || got.Elapsed != 0 || got.Reason != ReasonWarming {
		t.Errorf("a zero start must never time out, got %+v", got)
	}
}

// TestEvaluateMessageStable: a sync that changes nothing must not change the
// message, or every sync would write the node.
func TestEvaluateMessageStable(t *testing.T) {
	wanted := []string{"c:1", "a:1", "b:1"}
	first := Evaluate(Input{Now: t0.Add(time.Second), Started: t0, Timeout: time.Hour, Wanted: wanted})
	later := Evaluate(Input{Now: t0.Add(30 * time.Minute), Started: t0, Timeout: time.Hour, Wanted: []string{"b:1", "c:1", "a:1"}})
	if first.Message != later.Message || first.Reason != later.Reason {
		t.Errorf("the message changed with time alone: %q, then %q", first.Message, later.Message)
	}
}

// TestEvaluateHostileSizes: images and reasons come from tenants' objects and
// from the kubelet; a message quotes them cut short, so it and the Event
// message stay under 1 KiB whatever their size.
func TestEvaluateHostileSizes(t *testing.T) {
	huge := func(c string) string { return strings.Repeat(c, 1<<20) }
	var wanted []string
	var states []wire.ImageStatus
	for i := range 50 {
		image := fmt.Sprintf("%s:%d", huge(string(rune('a'+i%26))), i)
		wanted = append(wanted, image)
		switch i % 3 {
		case 0: // the longest reason a message quotes: the worst case
			states = append(states, img(image, wire.Failed, strings.Repeat("R", maxReason)))
		case 1: // left out
			states = append(states, img(image, wire.Failed, huge("R")))
		}
	}
	for _, tc := range []struct {
		name   string
		states []wire.ImageStatus
		now    time.Time
		reason string
	}{
		{"warming", nil, t0, ReasonWarming},
		{"failed", states, t0, ReasonImagesFailed},
		{"timed out", nil, t0.Add(time.Hour), ReasonTimedOut},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := Evaluate(Input{Now: tc.now, Started: t0, Timeout: time.Minute, Wanted: wanted, Partial: true, States: tc.states})
			if st.Reason != tc.reason {
				t.Fatalf("reason %q, want %q", st.Reason, tc.reason)
			}
			if len(st.Message) > 768 {
				t.Errorf("message of %d bytes, want at most 768: %.200q", len(st.Message), st.Message)
			}
			event := fmt.Sprintf("Removed startup taint %s: %s", strings.Repeat("k", 128), st.TaintReleaseReason())
			t.Logf("message %d bytes, event %d bytes", len(st.Message), len(event))
			if len(event) >= 1024 {
				t.Errorf("event message of %d bytes, want under 1 KiB", len(event))
			}
		})
	}
}

func TestTaintReleaseReason(t *testing.T) {
	for _, tc := range []struct {
		st   State
		want string
	}{
		{State{Reason: ReasonWarm, Message: "all 2 wanted images are cached"}, "the node is warm: all 2 wanted images are cached"},
		{State{Reason: ReasonNothingWanted, Message: "no image is wanted on this node"}, "the node is warm: no image is wanted on this node"},
		{State{Reason: ReasonImagesFailed, Message: "0/1 wanted images cached; 1 failed: a:1"},
			"images failed to pull, which a retry may never fix: 0/1 wanted images cached; 1 failed: a:1"},
		{State{Reason: ReasonTimedOut, Timeout: 15 * time.Minute, Message: "0/1 ..."}, "timed out after 15m0s: 0/1 ..."},
	} {
		t.Run(tc.st.Reason, func(t *testing.T) {
			if got := tc.st.TaintReleaseReason(); got != tc.want {
				t.Errorf("TaintReleaseReason() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRecheckAfter(t *testing.T) {
	const timeout = 10 * time.Minute
	for _, tc := range []struct {
		name    string
		now     time.Time
		timeout time.Duration
		wanted  []string
		states  []wire.ImageStatus
		want    time.Duration
	}{
		{"warming: at the timeout", t0.Add(4 * time.Minute), timeout, []string{"a:1"}, nil, 6 * time.Minute},
		{"warming without a timeout: never", t0.Add(4 * time.Minute), 0, []string{"a:1"}, nil, 0},
		{"timed out: no more", t0.Add(timeout), timeout, []string{"a:1"}, nil, 0},
		{"warm: no more", t0, timeout, []string{"a:1"}, []wire.ImageStatus{img("a:1", wire.Cached, "")}, 0},
		{"failed: no more", t0, timeout, []string{"a:1"}, []wire.ImageStatus{img("a:1", wire.Failed, "")}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := Evaluate(Input{Now: tc.now, Started: t0, Timeout: tc.timeout, Wanted: tc.wanted, States: tc.states})
			if got := st.RecheckAfter(); got != tc.want {
				t.Errorf("RecheckAfter() = %v, want %v (state %s)", got, tc.want, st.Reason)
			}
		})
	}
}

func TestProgress(t *testing.T) {
	warming := State{Reason: ReasonWarming, Elapsed: time.Minute}
	failed := State{Reason: ReasonImagesFailed, ReleaseTaint: true, Elapsed: 2 * time.Minute}
	timedOut := State{Reason: ReasonTimedOut, TimedOut: true, ReleaseTaint: true, Elapsed: 20 * time.Minute}
	warmAt := func(d time.Duration) State {
		return State{Warm: true, Reason: ReasonWarm, ReleaseTaint: true, Elapsed: d}
	}
	for _, tc := range []struct {
		name   string
		states []State
		want   []time.Duration // one per state; -1: nothing observed
	}{
		{"a warm-up seen under way is observed once", []State{warming, warmAt(5 * time.Minute), warming, warmAt(time.Hour)},
			[]time.Duration{-1, 5 * time.Minute, -1, -1}},
		{"failures then success still count", []State{warming, failed, timedOut, warmAt(30 * time.Minute)},
			[]time.Duration{-1, -1, -1, 30 * time.Minute}},
		{"a node warm when first seen is not observed", []State{warmAt(48 * time.Hour), warming, warmAt(49 * time.Hour)},
			[]time.Duration{-1, -1, -1}},
		{"a node first seen timed out is not observed", []State{timedOut, warmAt(720 * time.Hour)},
			[]time.Duration{-1, -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Progress
			for i, st := range tc.states {
				took, ok := p.Observe(st)
				got := time.Duration(-1)
				if ok {
					got = took
				}
				if got != tc.want[i] {
					t.Errorf("state %d (%s): observed %v, want %v", i, st.Reason, got, tc.want[i])
				}
			}
		})
	}
}

// The condition says the state in words, the same for every count: no digit,
// and a message for every reason.
func TestConditionMessagesCarryNoCounts(t *testing.T) {
	for _, reason := range []string{ReasonWarm, ReasonNothingWanted, ReasonWarming, ReasonImagesFailed, ReasonTimedOut} {
		t.Run(reason, func(t *testing.T) {
			c := State{Reason: reason, Message: "3/4 wanted images cached"}.Condition()
			if c.Message == "" || strings.ContainsAny(c.Message, "0123456789") || c.Type != ConditionType || c.Reason != reason {
				t.Errorf("condition %+v: want a message in words, with no count", c)
			}
		})
	}
}
