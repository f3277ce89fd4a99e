package node

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// Whoever may write pods in the daemon's namespace may also write the
// annotations the daemon publishes on its own pod (its node's report, its
// health), and status reads them. The daemon cannot keep them out (see
// cachestate.Owners), but it does not let what they wrote stand: it
// watches its pod, and writes its own value again when the pod holds
// another, paced so that a fight over an annotation costs a write a minute
// at most, not a write storm.

// ownKeys are the annotations the daemon writes on its own pod.
var ownKeys = []string{wire.AnnotationReport, wire.AnnotationHealth}

// Re-asserting writes are paced: the first goes at once, each next one
// after twice the wait of the one before, from reassertMin up to
// reassertMax; a fight that stopped for reassertMax starts over.
const (
	reassertMin = time.Second
	reassertMax = time.Minute
)

// ownPod is the daemon's own pod as the daemon last saw it (through a watch
// and the responses to its patches), as far as its annotations go.
type ownPod struct {
	client          kubernetes.Interface
	namespace, name string

	mu sync.Mutex
	// seen are the values of ownKeys on the pod (nil: absent); known once
	// the pod was seen.
	seen  map[string]*string
	known bool
	// version is the resource version seen last, as a number (0: none).
	version uint64
	subs    []chan struct{}
}

func newOwnPod(client kubernetes.Interface, namespace, name string) *ownPod {
	return &ownPod{client: client, namespace: namespace, name: name, seen: map[string]*string{}}
}

// changed returns a channel that gets a token whenever the pod is seen
// anew.
func (o *ownPod) changed() <-chan struct{} {
	ch := make(chan struct{}, 1)
	o.mu.Lock()
	o.subs = append(o.subs, ch)
	o.mu.Unlock()
	return ch
}

// observe records what pod holds, if it is the daemon's own.
func (o *ownPod) observe(pod *corev1.Pod) {
	if pod == nil || pod.Name != o.name || pod.Namespace != o.namespace {
		return
	}
	o.mu.Lock()
	// A patch's answer may come before the watch tells of an older
	// version: that one must not undo it. Resource versions are opaque,
	// but the API server's are numbers that grow; others are taken as
	// they come.
	if v, err := strconv.ParseUint(pod.ResourceVersion, 10, 64); err == nil {
		if v < o.version {
			o.mu.Unlock()
			return
		}
		o.version = v
	}
	for _, k := range ownKeys {
		if v, ok := pod.Annotations[k]; ok {
			o.seen[k] = &v
		} else {
			o.seen[k] = nil
		}
	}
	o.known = true
	subs := o.subs
	o.mu.Unlock()
	for _, ch := range subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// differs reports whether the pod, as last seen, holds under key something
// other than written (nil: the annotation removed).
func (o *ownPod) differs(key string, written *string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	seen := o.seen[key]
	return o.known && (seen == nil) != (written == nil) || seen != nil && written != nil && *seen != *written
}

// run watches the pod until ctx ends: one watch of one object (a field
// selector on its name), with the namespace's list and watch rights the
// daemon has anyway.
func (o *ownPod) run(ctx context.Context) {
	inf := coreinformers.NewFilteredPodInformer(o.client, o.namespace, 0, cache.Indexers{}, func(lo *metav1.ListOptions) {
		lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", o.name).String()
	})
	see := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok {
			o.observe(p)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    see,
		UpdateFunc: func(_, obj any) { see(obj) },
	}); err != nil {
		klog.FromContext(ctx).Error(err, "Watching the daemon's own pod")
		return
	}
	inf.RunWithContext(ctx)
}

// patch sets the pod's annotations in values, removing those whose value
// is nil, in one request, and records what the API server answered.
func (o *ownPod) patch(ctx context.Context, values map[string]*string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": values}})
	if err != nil {
		return err
	}
	p, err := o.client.CoreV1().Pods(o.namespace).Patch(ctx, o.name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	if err != nil {
		return fmt.Errorf("patching pod %s/%s: %w", o.namespace, o.name, err)
	}
	o.observe(p)
	return nil
}

// reassertion paces the writes that put back an annotation someone else
// changed (see reassertMin).
type reassertion struct {
	next time.Time
	wait time.Duration
}

// due says how long to wait before the next such write, 0 for now; a
// write it allows is counted.
func (b *reassertion) due(now time.Time) time.Duration {
	if now.Before(b.next) {
		return b.next.Sub(now)
	}
	if b.wait == 0 || now.Sub(b.next) > reassertMax {
		b.wait = reassertMin
	}
	b.next = now.Add(b.wait)
	b.wait = min(2*b.wait, reassertMax)
	return 0
}
