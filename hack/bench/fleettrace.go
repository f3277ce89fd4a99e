package main

import (
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// trace follows one latency trial as the bench's watches see it, to say
// where the time until a new image is on every node goes: until the
// planner published it, until each node made its prefetch pod, until kwok
// ended each pod's containers (as a kubelet would after a pull).
type trace struct {
	mu    sync.Mutex
	image string
	start time.Time
	// set is when the published set first held the image (zero: not yet,
	// or no planner); created and cached are, per node, when its first pod
	// with the image was seen and when it was first seen cached.
	set             time.Time
	created, cached map[string]time.Time
}

// traceSteps are the medians of a trial's steps from its edit.
type traceSteps struct {
	set, firstPod, lastPod, lastCached time.Duration
}

// begin starts following image (none: stop).
func (t *trace) begin(image string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.image, t.start, t.set = image, time.Now(), time.Time{}
	t.created, t.cached = map[string]time.Time{}, map[string]time.Time{}
}

// seeSet notes a published set.
func (t *trace) seeSet(cm *corev1.ConfigMap) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.image == "" || !t.set.IsZero() {
		return
	}
	// The bench's sets are small: a head alone.
	s, err := wanted.Decode(cm.BinaryData[wanted.Key], nil)
	if err != nil {
		return
	}
	for _, im := range s.Images {
		if im.Image == t.image {
			t.set = now
			return
		}
	}
}

// seePod notes a prefetch pod, added or changed.
func (t *trace) seePod(pod *corev1.Pod) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.image == "" || pod.DeletionTimestamp != nil {
		return
	}
	for _, st := range cachestate.FromPod(pod) {
		if st.Image != t.image {
			continue
		}
		if _, ok := t.created[st.Node]; !ok {
			t.created[st.Node] = now
		}
		if _, ok := t.cached[st.Node]; !ok && st.State == wire.Cached {
			t.cached[st.Node] = now
		}
	}
}

// steps says how long after the edit each step came; a step not seen is 0.
func (t *trace) steps() traceSteps {
	t.mu.Lock()
	defer t.mu.Unlock()
	since := func(at time.Time) time.Duration {
		if at.IsZero() {
			return 0
		}
		return at.Sub(t.start)
	}
	var s traceSteps
	s.set = since(t.set)
	var first, last, cached time.Time
	for _, at := range t.created {
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	for _, at := range t.cached {
		if at.After(cached) {
			cached = at
		}
	}
	s.firstPod, s.lastPod, s.lastCached = since(first), since(last), since(cached)
	return s
}

// stepsLine prints the medians of the trials' steps.
func stepsLine(trials []traceSteps) string {
	pick := func(f func(traceSteps) time.Duration) string {
		var v []time.Duration
		for _, s := range trials {
			v = append(v, f(s))
		}
		med, lo, hi := spreadD(v)
		if hi == 0 {
			return "not seen"
		}
		return fmt.Sprintf("%s (%s-%s)", med.Round(10*time.Millisecond), lo.Round(10*time.Millisecond), hi.Round(10*time.Millisecond))
	}
	return fmt.Sprintf("in the published set %s; first node's pod %s; last node's pod %s; cached on the last node %s",
		pick(func(s traceSteps) time.Duration { return s.set }),
		pick(func(s traceSteps) time.Duration { return s.firstPod }),
		pick(func(s traceSteps) time.Duration { return s.lastPod }),
		pick(func(s traceSteps) time.Duration { return s.lastCached }))
}
