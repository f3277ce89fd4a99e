package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// reportEvery is the least time between two reports on the daemon's pod: a
// cache fill changes the statuses many times a second, and a node's report
// is one write to the API server. reportBytesPerSecond bounds what a node
// sends: after a report of n bytes the next waits n/reportBytesPerSecond
// seconds if that is longer (a report of 1,000 failing images, 177 KB,
// then goes out at most every 11 s, not every second).
const (
	reportEvery          = time.Second
	reportBytesPerSecond = 16 << 10
)

// reportPause is the least time after a report of n bytes before the next.
func reportPause(every time.Duration, n int) time.Duration {
	return max(every, time.Duration(n)*time.Second/reportBytesPerSecond)
}

// imageReport publishes the node's image statuses on the daemon's own pod
// (wire.AnnotationReport), where the plugin's status reads them: one
// small object per node instead of every prefetch pod. The last statuses
// set are always published, at most once per every, encoded then; and
// written again when the pod holds another report than the one written
// (see ownPod), at the pace of reassertion.
//
// Its first write removes the report a previous run of the daemon left on
// the pod, unless the statuses of this run's first sync are already there
// to replace it: a restarted daemon never shows what it no longer knows.
type imageReport struct {
	own      *ownPod
	every    time.Duration
	now      func() time.Time
	reassert reassertion

	mu sync.Mutex
	// states are the last set; nil until the first sync.
	states []wire.ImageStatus
	// dropped: the API server refused the report (too large with the
	// pod's other annotations); none is published until the next set.
	dropped bool
	// published is what is on the pod (nil: no report), once done.
	published *string
	done      bool
	kick      chan struct{}
}

func newImageReport(client kubernetes.Interface, namespace, pod string) *imageReport {
	r := &imageReport{own: newOwnPod(client, namespace, pod), every: reportEvery, now: time.Now, kick: make(chan struct{}, 1)}
	r.kick <- struct{}{} // the first write, whatever comes
	return r
}

// set takes the node's statuses, as of the last sync.
func (r *imageReport) set(states []wire.ImageStatus) {
	if states == nil {
		states = []wire.ImageStatus{} // no image: a report all the same
	}
	r.mu.Lock()
	r.states, r.dropped = states, false
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// run publishes until ctx ends, and watches the daemon's pod meanwhile
// (for the health report too).
func (r *imageReport) run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { r.own.run(ctx) })
	changed := r.own.changed()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-changed:
		}
		again, sent, err := r.publish(ctx)
		if err != nil {
			logger.Error(err, "Publishing the node's image statuses on the daemon's pod")
			again = r.every // try again after the pause
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(reportPause(r.every, sent), again)):
		}
		if again > 0 {
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
	}
}

// publish writes the report of the latest statuses onto the pod, unless it
// is there, and says how many bytes of report it sent; again > 0 asks to be
// called again then (a re-assertion waits).
func (r *imageReport) publish(ctx context.Context) (again time.Duration, sent int, err error) {
	r.mu.Lock()
	states, dropped, published, done := r.states, r.dropped, r.published, r.done
	r.mu.Unlock()
	var report *string // nil removes the annotation: status then reads the node's pods
	if states != nil && !dropped {
		if raw, ok := wire.EncodeReport(states); ok {
			report = &raw
		} else if !done || published != nil {
			klog.FromContext(ctx).Info("The node's image statuses do not fit in an annotation; status reads this node's prefetch pods instead",
				"images", len(states), "limitBytes", wire.MaxReportBytes)
		}
	}
	if done && ptr.Equal(report, published) {
		write, wait := r.own.unchangedWrite(ctx, wire.AnnotationReport, published, &r.reassert, r.now())
		if !write {
			return wait, 0, nil
		}
	}
	if report != nil {
		sent = len(*report)
	}
	err = r.own.patch(ctx, wire.AnnotationReport, report)
	if report != nil && (apierrors.IsInvalid(err) || apierrors.IsRequestEntityTooLargeError(err)) {
		// Too large with the pod's other annotations: remove the old
		// report rather than leave it standing.
		r.mu.Lock()
		r.dropped = true
		r.mu.Unlock()
		return 0, sent, fmt.Errorf("the report of %d images was refused (status reads this node's prefetch pods instead): %w", len(states), err)
	}
	if err != nil {
		return 0, sent, err
	}
	r.mu.Lock()
	r.published, r.done = report, true
	r.mu.Unlock()
	return 0, sent, nil
}
