package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
)

// reportEvery is the least time between two reports on the daemon's pod: a
// cache fill changes the statuses many times a second, and a node's report
// is one write to the API server.
const reportEvery = time.Second

// imageReport publishes the node's image statuses on the daemon's own pod
// (cachestate.AnnotationReport), where the plugin's status reads them: one
// small object per node instead of every prefetch pod. The last statuses
// set are always published, at most once per every.
type imageReport struct {
	client         kubernetes.Interface
	namespace, pod string
	every          time.Duration

	mu        sync.Mutex
	latest    *string // the report to publish; nil: none (too large)
	published *string // what is on the pod, once done
	done      bool
	kick      chan struct{}
}

func newImageReport(client kubernetes.Interface, namespace, pod string) *imageReport {
	return &imageReport{client: client, namespace: namespace, pod: pod, every: reportEvery, kick: make(chan struct{}, 1)}
}

// set takes the node's statuses, as of the last sync.
func (r *imageReport) set(states []cachestate.ImageStatus) {
	var latest *string
	if raw, ok := cachestate.EncodeReport(states); ok {
		latest = &raw
	}
	r.mu.Lock()
	changed := !r.done || !sameReport(latest, r.published)
	r.latest = latest
	r.mu.Unlock()
	if changed {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

func sameReport(a, b *string) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// run publishes until ctx ends.
func (r *imageReport) run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		}
		if err := r.publish(ctx); err != nil {
			logger.Error(err, "Publishing the node's image statuses on the daemon's pod")
			select {
			case r.kick <- struct{}{}: // try again after the pause
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.every):
		}
	}
}

// publish writes the latest report onto the pod, unless it is there.
func (r *imageReport) publish(ctx context.Context) error {
	r.mu.Lock()
	latest, published, done := r.latest, r.published, r.done
	r.mu.Unlock()
	if done && sameReport(latest, published) {
		return nil
	}
	var value any // null removes the annotation: status then reads the node's pods
	if latest != nil {
		value = *latest
	} else {
		klog.FromContext(ctx).Info("The node's image statuses do not fit in an annotation; status reads this node's prefetch pods instead",
			"limitBytes", cachestate.MaxReportBytes)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{cachestate.AnnotationReport: value}}})
	if err != nil {
		return err
	}
	if _, err := r.client.CoreV1().Pods(r.namespace).Patch(ctx, r.pod, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("patching pod %s/%s: %w", r.namespace, r.pod, err)
	}
	r.mu.Lock()
	r.published, r.done = latest, true
	r.mu.Unlock()
	return nil
}
