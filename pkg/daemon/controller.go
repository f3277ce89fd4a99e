package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/metrics"
	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
	"github.com/dcherman/image-cache-daemon/pkg/source"
)

// FieldManager names this daemon's writes.
const FieldManager = "image-cache-daemon"

// syncKey is the only key of the queue: a node has one set of prefetch pods,
// and any change is handled by planning that whole set again.
const syncKey = "node"

// Controller keeps this node's prefetch pods in line with the wanted images.
type Controller struct {
	client    kubernetes.Interface
	pods      corelisters.PodNamespaceLister
	podsSync  cache.InformerSynced
	sources   []source.Source
	prefetch  prefetch.Config
	resync    time.Duration
	queue     workqueue.TypedRateLimitingInterface[string]
	metrics   *metrics.Metrics
	now       func() time.Time
	ready     atomic.Bool
	observed  map[types.UID]map[string]bool // cached containers already counted in PullDuration
	observeMu sync.Mutex
}

// NewController wires a controller. podInformer must list only this node's
// prefetch pods in the daemon's namespace.
func NewController(client kubernetes.Interface, podInformer cache.SharedIndexInformer, sources []source.Source,
	cfg prefetch.Config, resync time.Duration, m *metrics.Metrics) (*Controller, error) {
	c := &Controller{
		client:   client,
		pods:     corelisters.NewPodLister(podInformer.GetIndexer()).Pods(cfg.Namespace),
		podsSync: podInformer.HasSynced,
		sources:  sources,
		prefetch: cfg,
		resync:   resync,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "prefetch"}),
		metrics:  m,
		now:      time.Now,
		observed: map[types.UID]map[string]bool{},
	}
	_, err := podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.enqueue() },
		UpdateFunc: func(any, any) { c.enqueue() },
		DeleteFunc: func(any) { c.enqueue() },
	})
	if err != nil {
		return nil, fmt.Errorf("watching prefetch pods: %w", err)
	}
	return c, nil
}

func (c *Controller) enqueue() { c.queue.Add(syncKey) }

// Ready reports whether every source and the pod cache have synced.
func (c *Controller) Ready() bool { return c.ready.Load() }

// Run starts the sources and processes the queue until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	logger := klog.FromContext(ctx)

	for _, s := range c.sources {
		s.Start(ctx, c.enqueue)
	}
	logger.Info("Waiting for caches to sync")
	if !cache.WaitForNamedCacheSync("prefetch pods", ctx.Done(), c.podsSync) {
		return fmt.Errorf("prefetch pod cache never synced: %w", ctx.Err())
	}
	// Never act on a partial view: a source that has not synced would make
	// its images look unwanted and their pods deleted.
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		for _, s := range c.sources {
			if !s.HasSynced() {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("sources never synced: %w", err)
	}
	c.ready.Store(true)
	logger.Info("Caches synced, reconciling", "sources", len(c.sources))

	c.enqueue()
	var wg sync.WaitGroup
	wg.Go(func() {
		for c.processNext(ctx) {
		}
	})
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	return nil
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	requeue, err := c.sync(ctx)
	if err != nil {
		c.metrics.ReconcileErrors.Inc()
		klog.FromContext(ctx).Error(err, "Sync failed; retrying")
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	if requeue > 0 {
		c.queue.AddAfter(key, requeue)
	}
	return true
}

// Wanted returns every wanted image with what wants it, from all sources.
func (c *Controller) Wanted() []source.Image {
	var wants []source.Want
	for _, s := range c.sources {
		wants = append(wants, s.Wanted()...)
	}
	return source.Images(wants)
}

// sync plans this node's prefetch pods and makes the API calls the plan
// asks for. It returns when to look again for a resync.
func (c *Controller) sync(ctx context.Context) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	wanted := c.Wanted()
	images := make([]string, len(wanted))
	for i, w := range wanted {
		images[i] = w.Image
	}
	pods, err := c.pods.List(labels.SelectorFromSet(cachestate.PrefetchLabels()))
	if err != nil {
		return 0, fmt.Errorf("listing prefetch pods: %w", err)
	}
	plan := prefetch.Plan(c.now(), images, pods, c.resync, c.prefetch)

	var errs []error
	for _, p := range plan.Create {
		_, err := c.client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{FieldManager: FieldManager})
		switch {
		case apierrors.IsAlreadyExists(err):
			// Another daemon (or our previous life) made the same plan.
		case err != nil:
			errs = append(errs, fmt.Errorf("creating prefetch pod %s for %v: %w", p.Name, prefetch.Images(p), err))
		default:
			c.metrics.PodsCreated.Inc()
			logger.Info("Created prefetch pod", "pod", klog.KObj(p), "images", prefetch.Images(p))
		}
	}
	for _, p := range plan.Delete {
		uid := p.UID
		err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &uid},
		})
		switch {
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			// Gone already, or replaced by a pod of the same name.
		case err != nil:
			errs = append(errs, fmt.Errorf("deleting prefetch pod %s: %w", p.Name, err))
		default:
			c.metrics.PodsDeleted.Inc()
			logger.Info("Deleted prefetch pod", "pod", klog.KObj(p), "images", prefetch.Images(p))
		}
	}
	c.record(images, pods)
	return plan.RequeueAfter, errors.Join(errs...)
}

// record updates the metrics from the pods as listed.
func (c *Controller) record(wanted []string, pods []*corev1.Pod) {
	c.metrics.WantedImages.Set(float64(len(wanted)))
	c.metrics.PrefetchPods.Set(float64(len(pods)))
	isWanted := make(map[string]bool, len(wanted))
	for _, w := range wanted {
		isWanted[w] = true
	}
	counts := map[cachestate.State]int{}
	held := 0
	for _, st := range cachestate.Summarize(pods) {
		if isWanted[st.Image] {
			counts[st.State]++
			held++
		}
	}
	// Wanted images that no pod holds yet are pending too.
	counts[cachestate.Pending] += len(wanted) - held
	for _, s := range []cachestate.State{cachestate.Cached, cachestate.Pulling, cachestate.Failed, cachestate.Pending} {
		c.metrics.Images.WithLabelValues(string(s)).Set(float64(counts[s]))
	}

	c.observeMu.Lock()
	defer c.observeMu.Unlock()
	live := make(map[types.UID]bool, len(pods))
	for _, p := range pods {
		live[p.UID] = true
		for _, st := range cachestate.FromPod(p) {
			if st.State != cachestate.Cached || st.Since.IsZero() || c.observed[p.UID][st.Image] {
				continue
			}
			if c.observed[p.UID] == nil {
				c.observed[p.UID] = map[string]bool{}
			}
			c.observed[p.UID][st.Image] = true
			c.metrics.PullDuration.Observe(st.Since.Sub(p.CreationTimestamp.Time).Seconds())
		}
	}
	for uid := range c.observed {
		if !live[uid] {
			delete(c.observed, uid)
		}
	}
}
