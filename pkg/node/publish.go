package node

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/dcherman/image-cache-daemon/pkg/metrics"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// The daemon publishes two annotations on its own pod, where the plugin's
// status reads them: its node's image report (wire.AnnotationReport), one
// small object per node instead of every prefetch pod, and its health
// (wire.AnnotationHealth): its sources, what its limits left out, and the
// node's warm state. Both are taken from one sync of the controller (a
// Snapshot) and written in one patch, from one loop, so that status never
// shows a node's images and its warm line as of two different moments.

// Pacing. A cache fill changes the statuses many times a second, and a
// report is a write to the API server: two patches are at least
// publishEvery apart, and after a patch of n bytes the next waits
// n/publishBytesPerSecond seconds if that is longer (a report of 1,000
// failing images, 177 KB, goes out at most every 11 s). The sources'
// health is looked at every healthInterval (every second while they sync,
// so that status does not show a start-up long gone).
const (
	publishEvery          = time.Second
	publishBytesPerSecond = 16 << 10
	healthInterval        = 10 * time.Second
)

// publishPause is the least time after a patch of n bytes before the next.
func publishPause(every time.Duration, n int) time.Duration {
	return max(every, time.Duration(n)*time.Second/publishBytesPerSecond)
}

// Snapshot is what one sync of the controller saw of its node.
type Snapshot struct {
	// States are the node's image statuses (never nil after a sync).
	States []wire.ImageStatus
	// Warm is the node's warm state as the sync wrote it (nil: none).
	Warm *wire.Warmth
	// OverLimit is how many wanted images the limits left out;
	// OverLimitSample names a few.
	OverLimit       int
	OverLimitSample []wire.Image
}

// publisher writes the daemon's annotations on its own pod. Its first
// write removes the image report a previous run of the daemon left, unless
// this run's first sync is already there to replace it: a restarted daemon
// never shows what it no longer knows. An annotation is written when its
// value changed since the daemon wrote it, or when the pod holds another
// (see ownPod), at the pace of reassertion.
type publisher struct {
	own     *ownPod
	sources Wants // for their health
	metrics *metrics.Metrics
	every   time.Duration
	now     func() time.Time

	mu sync.Mutex
	// snap is the last sync's (nil before the first). dropped: the API
	// server refused the report (too large with the pod's other
	// annotations); none is published until the next snapshot.
	snap    *Snapshot
	dropped bool
	kick    chan struct{}

	// written is what the daemon last wrote under each key (nil: it
	// removed it); a key not there was not written yet.
	written  map[string]*string
	reassert reassertion
}

func newPublisher(client kubernetes.Interface, namespace, pod string, sources Wants, m *metrics.Metrics) *publisher {
	return &publisher{own: newOwnPod(client, namespace, pod), sources: sources, metrics: m,
		every: publishEvery, now: time.Now, kick: make(chan struct{}, 1), written: map[string]*string{}}
}

// set takes the snapshot of the last sync.
func (p *publisher) set(s Snapshot) {
	if s.States == nil {
		s.States = []wire.ImageStatus{} // no image: a report all the same
	}
	p.mu.Lock()
	p.snap, p.dropped = &s, false
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// values are the annotations as the daemon would have them now (nil
// removes one: status then reads the node's prefetch pods).
func (p *publisher) values(ctx context.Context) (map[string]*string, error) {
	p.mu.Lock()
	snap, dropped := p.snap, p.dropped
	p.mu.Unlock()
	h := wire.HealthReport{Sources: p.sources.Health()}
	if p.metrics != nil {
		p.metrics.SetSourceHealth(h.Sources)
	}
	var report *string
	if snap != nil {
		h.OverLimit, h.OverLimitSample, h.Warm = snap.OverLimit, snap.OverLimitSample, snap.Warm
		if !dropped {
			if raw, ok := wire.EncodeReport(snap.States); ok {
				report = &raw
			} else if w, done := p.written[wire.AnnotationReport]; !done || w != nil {
				klog.FromContext(ctx).Info("The node's image statuses do not fit in an annotation; status reads this node's prefetch pods instead",
					"images", len(snap.States), "limitBytes", wire.MaxReportBytes)
			}
		}
	}
	raw, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	return map[string]*string{wire.AnnotationHealth: ptr.To(string(raw)), wire.AnnotationReport: report}, nil
}

// publish writes, in one patch, every annotation whose value changed since
// the daemon wrote it, and those the pod holds otherwise (at the pace of
// reassertion). It says how many bytes it sent; again > 0 asks to be called
// again then (a re-assertion waits).
func (p *publisher) publish(ctx context.Context) (again time.Duration, sent int, err error) {
	want, err := p.values(ctx)
	if err != nil {
		return 0, 0, err
	}
	patch := map[string]*string{}
	var forged []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		w, done := p.written[k]
		switch {
		case !done || !ptr.Equal(want[k], w):
			patch[k] = want[k]
		case p.own.differs(k, w):
			forged = append(forged, k)
		}
	}
	if len(forged) > 0 {
		if again = p.reassert.due(p.now()); again == 0 {
			klog.FromContext(ctx).Info("The daemon's pod holds annotations the daemon did not write; writing them again", "annotations", forged)
			for _, k := range forged {
				patch[k] = want[k]
			}
		}
	}
	if len(patch) == 0 {
		return again, 0, nil
	}
	for _, v := range patch {
		if v != nil {
			sent += len(*v)
		}
	}
	err = p.own.patch(ctx, patch)
	if report := patch[wire.AnnotationReport]; report != nil && (apierrors.IsInvalid(err) || apierrors.IsRequestEntityTooLargeError(err)) {
		// Too large with the pod's other annotations: the next patch
		// removes the old report rather than leave it standing.
		p.mu.Lock()
		p.dropped = true
		p.mu.Unlock()
		return again, sent, fmt.Errorf("the report of %d bytes was refused (status reads this node's prefetch pods instead): %w", len(*report), err)
	}
	if err != nil {
		return again, sent, err
	}
	maps.Copy(p.written, patch)
	return again, sent, nil
}

// run publishes until ctx ends, and watches the daemon's pod meanwhile: at
// once when a snapshot comes or the pod changed, every healthInterval for
// the sources' health, and never two patches closer than publishPause.
func (p *publisher) run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { p.own.run(ctx) })
	changed := p.own.changed()
	for {
		again, sent, err := p.publish(ctx)
		if err != nil {
			logger.Error(err, "Publishing the node's report and health on the daemon's pod")
			again = p.every
		}
		if sent > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(publishPause(p.every, sent)):
			}
		}
		next := healthInterval
		if !p.sources.HasSynced() {
			next = time.Second
		}
		if again > 0 {
			next = min(next, again)
		}
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-changed:
		case <-time.After(next):
		}
	}
}

// sourcesReady says whether the daemon does its job, and if not, why:
// readiness fails while a source cannot read (a forbidden LIST, a planner
// that is down), so a rollout that breaks RBAC stops instead of leaving
// every node without its images.
func sourcesReady(sources Wants) error {
	for _, s := range sources.Health() {
		if s.Problem != "" {
			return fmt.Errorf("source %s: %s", s.Source, s.Problem)
		}
		if !s.Synced {
			return fmt.Errorf("source %s has not synced yet", s.Source)
		}
	}
	return nil
}
