package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
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
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/daemon"
	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/metrics"
	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/warm"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
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
	sources   Wants
	cfg       ControllerConfig
	queue     workqueue.TypedRateLimitingInterface[string]
	metrics   *metrics.Metrics
	now       func() time.Time
	started   time.Time // the controller's start: warm-up began, when the node cannot be read
	ready     atomic.Bool
	observed  map[types.UID]map[string]bool // cached containers already counted in PullDuration
	observeMu sync.Mutex

	// Used by the single worker only.
	owed []string     // images owed a fresh pull: prefetch.Decision.Owed
	node nodeCapacity // the node's allocatable pods, as last read

	overMu sync.Mutex
	over   overLimit

	warmProgress warm.Progress
	warmMu       sync.Mutex
	warmth       *wire.Warmth
}

// ControllerConfig is what a Controller works with, besides its clients.
type ControllerConfig struct {
	// Prefetch describes this node's prefetch pods; the controller sets its
	// MaxPods from MaxPods and the node's capacity.
	Prefetch prefetch.Config
	// Resync is how often finished pods are pulled again (0: never).
	Resync time.Duration
	// MaxImages is the most images cached on this node (--max-images).
	MaxImages int
	// MaxPods is the most prefetch pods on this node (--max-prefetch-pods);
	// never more than a quarter of the node's allocatable pods either.
	MaxPods int
	// Self is the daemon's own pod: Events about the node's cache as a
	// whole are reported on it.
	Self *corev1.Pod
	// Recorder records those Events; nil records none.
	Recorder record.EventRecorder
	Metrics  *metrics.Metrics
	// Warm writes the node's warm condition and removes its startup taint;
	// nil writes nothing. WarmTimeout bounds how long the taint is kept
	// after the node's creation (0: no bound).
	Warm        *warm.Node
	WarmTimeout time.Duration
	// Pacer keeps the pulls the prefetch pods cause within the kubelet's
	// pull budget; nil paces nothing.
	Pacer *prefetch.Pacer
	// Report, if set, is given what each sync saw: the node's image
	// statuses, its warm state and what the limits left out, together.
	Report func(Snapshot)
}

// nodeRefresh is how often the node's allocatable pods are read again.
const nodeRefresh = 5 * time.Minute

// nodeCapacity is the node's allocatable pods, as last read.
type nodeCapacity struct {
	pods    int64 // 0: unknown
	created time.Time
	checked time.Time
	failing bool // the last read failed (and was logged)
}

// overSample is how many of the images left out are named in messages.
const overSample = 3

// overLimit is what the last sync left out.
type overLimit struct {
	n       int
	sample  []wire.Image // values cut short
	summary string
	key     [sha256.Size]byte // identifies the set, to report changes only
}

// newPodInformer watches this node's prefetch pods only (the cache grows
// with images, not with the cluster), indexed by namespace as the
// controller's namespace lister expects.
func newPodInformer(client kubernetes.Interface, namespace, node string) cache.SharedIndexInformer {
	selector := labels.SelectorFromSet(wire.NodeLabels(node)).String()
	return coreinformers.NewFilteredPodInformer(client, namespace, 0,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
		func(lo *metav1.ListOptions) { lo.LabelSelector = selector })
}

// Wants is where the controller reads the wanted images: a *source.Set,
// which the daemon starts and stops.
type Wants interface {
	HasSynced() bool
	Wants() []source.Want
	Health() []wire.Health
}

// currentDigests is a Wants read from the planner's set: it gives the
// digest each checked tag points to, and which tags wait for their check.
type currentDigests interface {
	Current(img string) (string, time.Time)
	Pending(img string) bool
}

// plannedOver is a Wants read from the planner's set: the planner names
// the first few images it left out.
type plannedOver interface {
	PlannedOver() []wire.Image
}

// NewController wires a controller. podInformer must list only this node's
// prefetch pods in the daemon's namespace (newPodInformer); sources are
// started by the caller, with Enqueue as their change handler.
func NewController(client kubernetes.Interface, podInformer cache.SharedIndexInformer, sources Wants,
	cfg ControllerConfig) (*Controller, error) {
	c := &Controller{
		client:   client,
		pods:     corelisters.NewPodLister(podInformer.GetIndexer()).Pods(cfg.Prefetch.Namespace),
		podsSync: podInformer.HasSynced,
		sources:  sources,
		cfg:      cfg,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "prefetch"}),
		metrics:  cfg.Metrics,
		now:      time.Now,
		started:  time.Now(),
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

// Enqueue asks for a sync: the sources call it when what they want changes.
func (c *Controller) Enqueue() { c.enqueue() }

// Ready reports whether every source and the pod cache have synced.
func (c *Controller) Ready() bool { return c.ready.Load() }

// Run processes the queue until ctx ends, once the prefetch pods and the
// sources have synced.
func (c *Controller) Run(ctx context.Context) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	logger := klog.FromContext(ctx)

	logger.Info("Waiting for caches to sync")
	if !cache.WaitForNamedCacheSync("prefetch pods", ctx.Done(), c.podsSync) {
		return fmt.Errorf("prefetch pod cache never synced: %w", ctx.Err())
	}
	// Wait a while for every source, so that the first sync sees the whole
	// picture; a source that cannot sync (a forbidden namespace) must not
	// stop caching for the others, so after daemon.SourceGrace the daemon
	// works on with what it has, deleting nothing (see sync).
	graceCtx, cancel := context.WithTimeout(ctx, daemon.SourceGrace)
	err := wait.PollUntilContextCancel(graceCtx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		return c.sources.HasSynced(), nil
	})
	cancel()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("sources never synced: %w", ctx.Err())
	case err != nil:
		logger.Info("Not every source has synced; caching what the others want, deleting no prefetch pod until they have (kubectl imagecache status says why)",
			"waited", daemon.SourceGrace)
	default:
		logger.Info("Caches synced, reconciling")
	}
	c.ready.Store(true)

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
func (c *Controller) Wanted() []wire.Image {
	return source.Images(c.sources.Wants())
}

// sync plans this node's prefetch pods and makes the API calls the plan
// asks for. It returns when to look again for a resync or a retry.
func (c *Controller) sync(ctx context.Context) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	listed, err := c.pods.List(labels.SelectorFromSet(wire.PrefetchLabels()))
	if err != nil {
		return 0, fmt.Errorf("listing prefetch pods: %w", err)
	}
	var pods []*corev1.Pod
	for _, p := range listed {
		if c.cfg.Prefetch.Owns(p) {
			pods = append(pods, p)
		}
	}
	wanted, resync := c.sources.Wants(), c.cfg.Resync
	if !c.sources.HasSynced() {
		// A partial view: what the pods hold may be wanted by a source
		// not read yet, so it is all kept, and nothing is refreshed.
		wanted, resync = withHeld(wanted, pods, c.cfg.Prefetch), 0
	}
	podCap := c.podCap(ctx)
	limit := min(c.cfg.MaxImages, podCap*max(c.cfg.Prefetch.BatchSize, 1))
	images, over := source.Select(wanted, limit)
	c.reportOverLimit(ctx, over, limit, podCap)
	pcfg := c.cfg.Prefetch
	pcfg.MaxPods = podCap
	now, pacer := c.now(), c.cfg.Pacer
	if refused := pacer.Observe(pods, now); refused > 0 {
		c.metrics.PullsRefused.Add(float64(refused))
		logger.Info("The kubelet refused prefetch pulls under its pull limit (registryPullQPS); replacing their pods, paced. Do the workloads pull a lot, or is --registry-pull-qps above the kubelet's?",
			"refused", refused, "registryPullQPS", pacer.QPS())
	}
	var budget *prefetch.Budget
	if pacer != nil {
		budget = &prefetch.Budget{Pulls: pacer.Available(now), MinPulls: pacer.MinPulls()}
	}
	current := c.current(images)
	plan := prefetch.Plan(prefetch.Input{Now: now, Wanted: images, Pods: pods, Resync: resync, Current: current, Owed: c.owed, Budget: budget}, pcfg)
	c.owed = plan.Owed
	c.metrics.PullsPaced.Set(float64(plan.Paced))

	var errs []error
	for _, p := range plan.Create {
		pacer.Released(p, plan.Pulls[p.Name], now)
		_, err := c.client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{FieldManager: FieldManager})
		switch {
		case apierrors.IsAlreadyExists(err):
			// Another daemon (or our previous life) made the same plan.
		case err != nil:
			pacer.Forget(p.Name)
			errs = append(errs, fmt.Errorf("creating prefetch pod %s for %v: %w", p.Name, prefetch.Images(p), err))
			// The retry must still pull afresh what this pod would have.
			for _, ctr := range p.Spec.Containers {
				if ctr.ImagePullPolicy == corev1.PullAlways {
					c.owed = append(c.owed, ctr.Image)
				}
			}
		default:
			c.metrics.PodsCreated.Inc()
			logger.Info("Created prefetch pod", "pod", klog.KObj(p), "images", prefetch.Images(p))
		}
	}
	rejected := make(map[types.UID]bool, len(plan.Rejected))
	for _, p := range plan.Rejected {
		rejected[p.UID] = true
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
		case rejected[p.UID]:
			c.metrics.PodsDeleted.Inc()
			c.metrics.PodsRejected.Inc()
			logger.Info("Replacing a prefetch pod that ended in phase Failed", "pod", klog.KObj(p),
				"reason", p.Status.Reason, "message", p.Status.Message, "generation", prefetch.Generation(p))
		default:
			c.metrics.PodsDeleted.Inc()
			logger.Info("Deleted prefetch pod", "pod", klog.KObj(p), "images", prefetch.Images(p))
		}
	}
	if plan.Waiting > 0 {
		logger.V(2).Info("Images wait for room under the prefetch pod limit", "images", plan.Waiting, "maxPrefetchPods", podCap)
	}
	c.record(len(wanted), images, pods, plan.States)
	c.metrics.StaleImages.Set(float64(staleCount(plan.States, current)))
	requeue := plan.RequeueAfter
	if plan.Paced > 0 {
		// The pods' updates call for a plan when their pulls are seen;
		// the bucket's refill comes with no event.
		wait := pacer.Wait(min(pacer.MinPulls(), plan.Paced), now)
		if wait <= 0 {
			wait = time.Second
		}
		requeue = sooner(requeue, wait)
	}
	if c.cfg.Warm != nil {
		recheck, err := c.syncWarm(ctx, images, plan.States)
		if err != nil {
			errs = append(errs, err)
		}
		requeue = sooner(requeue, recheck) // the warm-up timeout comes with no pod event
	}
	if c.cfg.Report != nil {
		n, sample := c.OverLimit()
		c.cfg.Report(Snapshot{States: plan.States, Warm: c.Warmth(), OverLimit: n, OverLimitSample: sample})
	}
	return requeue, errors.Join(errs...)
}

// sooner is the earlier of two requeue delays, 0 meaning none.
func sooner(a, b time.Duration) time.Duration {
	if a == 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

// syncWarm writes whether the node is warm (every image within its limits
// cached) onto the Node and removes the startup taint when it is time. It
// returns when to look again for the warm-up timeout.
func (c *Controller) syncWarm(ctx context.Context, images []string, states []wire.ImageStatus) (time.Duration, error) {
	started := c.node.created
	if started.IsZero() {
		started = c.started
	}
	st := warm.Evaluate(warm.Input{Now: c.now(), Started: started, Timeout: c.cfg.WarmTimeout,
		Wanted: images, Partial: !c.sources.HasSynced(), States: states})
	_, err := c.cfg.Warm.Apply(ctx, st)
	warming := 1.0
	if st.Warm {
		warming = 0
	}
	c.metrics.NodeWarming.Set(warming)
	w := &wire.Warmth{Warm: st.Warm, Reason: st.Reason, Message: st.Message}
	if took, ok := c.warmProgress.Observe(st); ok {
		c.metrics.WarmUpDuration.Observe(took.Seconds())
		w.Took = took.Round(time.Second).String()
	}
	c.warmMu.Lock()
	if w.Took == "" && c.warmth != nil && w.Warm {
		w.Took = c.warmth.Took
	}
	c.warmth = w
	c.warmMu.Unlock()
	return st.RecheckAfter(), err
}

// Warmth returns the node's warm state as the last sync wrote it, nil
// before the first or when the daemon writes none.
func (c *Controller) Warmth() *wire.Warmth {
	c.warmMu.Lock()
	defer c.warmMu.Unlock()
	return c.warmth
}

// heldOrigin is the origin of images kept only because a prefetch pod holds
// them while a source has not synced.
const heldOrigin = "held while a source is not synced"

// withHeld adds to wanted every image the pods hold, so that a sync on a
// partial view deletes nothing. They come first, as the --image images do:
// they were cached within this node's limits.
func withHeld(wanted []source.Want, pods []*corev1.Pod, cfg prefetch.Config) []source.Want {
	var held []source.Want
	for _, p := range pods {
		if cfg.Trusts(p) != nil {
			continue
		}
		for _, img := range prefetch.Images(p) {
			held = append(held, source.Want{Image: img, Origin: heldOrigin, Static: true})
		}
	}
	return append(held, wanted...)
}

// podCap is the most prefetch pods this node may hold: --max-prefetch-pods,
// and never more than a quarter of the node's allocatable pods (at least
// one), so that pods bound with nodeName, past the scheduler, leave the
// kubelet's max-pods to the workloads. The node is read at the first sync
// and again every nodeRefresh; if it cannot be, the flag alone counts.
func (c *Controller) podCap(ctx context.Context) int {
	now := c.now()
	if c.node.checked.IsZero() || now.Sub(c.node.checked) >= nodeRefresh {
		c.node.checked = now
		pods, err := c.allocatablePods(ctx)
		switch {
		case err != nil && !c.node.failing:
			c.node.failing = true
			klog.FromContext(ctx).Error(err, "Cannot read this node's allocatable pods; --max-prefetch-pods alone bounds the prefetch pods (the daemon needs get on nodes)",
				"node", c.cfg.Prefetch.NodeName, "maxPrefetchPods", c.cfg.MaxPods)
		case err == nil:
			c.node.failing = false
			c.node.pods = pods
		}
	}
	if c.node.pods > 0 {
		return int(min(int64(c.cfg.MaxPods), max(c.node.pods/4, 1)))
	}
	return c.cfg.MaxPods
}

func (c *Controller) allocatablePods(ctx context.Context) (int64, error) {
	node, err := c.client.CoreV1().Nodes().Get(ctx, c.cfg.Prefetch.NodeName, metav1.GetOptions{ResourceVersion: "0"})
	if err != nil {
		return 0, fmt.Errorf("reading node %s: %w", c.cfg.Prefetch.NodeName, err)
	}
	c.node.created = node.CreationTimestamp.Time // when warm-up began
	q, ok := node.Status.Allocatable[corev1.ResourcePods]
	if !ok {
		return 0, nil
	}
	return q.Value(), nil
}

// reportOverLimit sets the gauge and, when the set of images left out
// changes, logs it and records a Warning Event on the daemon's pod.
func (c *Controller) reportOverLimit(ctx context.Context, over []wire.Image, limit, podCap int) {
	// What the planner left out, it names (a few) and counts (Health).
	if p, ok := c.sources.(plannedOver); ok {
		over = append(slices.Clone(over), p.PlannedOver()...)
	}
	// Entries past --max-images in one object were counted, not read:
	// they are over the limit too, though not named.
	unread := 0
	for _, h := range c.sources.Health() {
		unread += h.Unread
	}
	c.metrics.ImagesOverLimit.Set(float64(len(over) + unread))
	h := sha256.New()
	for _, o := range over {
		h.Write([]byte(o.Image))
		h.Write([]byte{0})
	}
	// The unread count is not part of the key: it changes with every edit
	// of a list past the limit, which must not be an Event on every node.
	var key [sha256.Size]byte
	h.Sum(key[:0])

	c.overMu.Lock()
	changed := key != c.over.key || (c.over.n == 0) != (len(over)+unread == 0)
	was := c.over.n
	c.over.n = len(over) + unread
	if changed {
		c.over = overLimit{n: len(over) + unread, key: key}
		for _, o := range over[:min(len(over), overSample)] {
			origins := make([]string, len(o.Origins))
			for i, origin := range o.Origins {
				origins[i] = imageref.Shorten(origin)
			}
			c.over.sample = append(c.over.sample, wire.Image{Image: imageref.Shorten(o.Image), Origins: origins})
		}
		if c.over.n > 0 {
			c.over.summary = c.overSummary(limit, podCap)
		}
	}
	summary := c.over.summary
	c.overMu.Unlock()

	logger := klog.FromContext(ctx)
	switch {
	case !changed:
	case len(over)+unread > 0:
		logger.Info("Wanted images left out by this node's limits", "summary", summary)
		if c.cfg.Recorder != nil && c.cfg.Self != nil {
			c.cfg.Recorder.Event(c.cfg.Self, corev1.EventTypeWarning, ReasonImageLimitExceeded, summary)
		}
	case was > 0:
		logger.Info("Every wanted image fits within this node's limits again")
	}
}

// overSummary is the one-line account of c.over (under overMu). It names
// two images, their values cut short, so it stays under the 1 KiB an Event
// message may hold.
func (c *Controller) overSummary(limit, podCap int) string {
	var sample []string
	for _, s := range c.over.sample[:min(len(c.over.sample), 2)] {
		sample = append(sample, fmt.Sprintf("%s (wanted by %s)", s.Image, imageref.Shorten(strings.Join(s.Origins, ", "))))
	}
	more := ""
	if c.over.n > len(sample) {
		more = ", ..."
	}
	return fmt.Sprintf("%d wanted images are not cached on node %s: it caches at most %d (--max-images=%d; %d prefetch pods (--max-prefetch-pods=%d, at most a quarter of the node's allocatable pods) of --batch-size=%d); left out: %s%s",
		c.over.n, imageref.Shorten(c.cfg.Prefetch.NodeName), limit, c.cfg.MaxImages, podCap, c.cfg.MaxPods, c.cfg.Prefetch.BatchSize,
		strings.Join(sample, "; "), more)
}

// OverLimit returns how many wanted images the last sync left out because of
// this node's limits, and the first few of them (by image) with the objects
// that want them, values cut to 128 bytes.
func (c *Controller) OverLimit() (n int, sample []wire.Image) {
	c.overMu.Lock()
	defer c.overMu.Unlock()
	return c.over.n, append([]wire.Image(nil), c.over.sample...)
}

// OverLimitSummary is OverLimit as one line for people: how many images are
// left out, the limits that apply and the first few images ("" when every
// wanted image is cached).
func (c *Controller) OverLimitSummary() string {
	c.overMu.Lock()
	defer c.overMu.Unlock()
	return c.over.summary
}

// current is, for images, the digests the planner's set gives (nil when the
// sources are not the planner's).
func (c *Controller) current(images []string) map[string]prefetch.Current {
	cd, ok := c.sources.(currentDigests)
	if !ok {
		return nil
	}
	out := make(map[string]prefetch.Current)
	for _, img := range images {
		if d, since := cd.Current(img); d != "" {
			out[img] = prefetch.Current{Digest: d, Since: since}
		} else if cd.Pending(img) {
			out[img] = prefetch.Current{} // its check is to come: nothing by age meanwhile
		}
	}
	return out
}

// staleCount counts the images whose status (cachestate.Summarize's: one
// per image) shows them on the node under another digest than current's.
func staleCount(states []wire.ImageStatus, current map[string]prefetch.Current) int {
	n := 0
	for _, st := range states {
		if cachestate.Stale(st, current[st.Image].Digest) {
			n++
		}
	}
	return n
}

// record updates the metrics from the pods as listed: wanted is the number
// of images the sources want, images those within this node's limits,
// states the per-image states of pods (cachestate.Summarize, made once a sync).
func (c *Controller) record(wanted int, images []string, pods []*corev1.Pod, states []wire.ImageStatus) {
	c.metrics.WantedImages.Set(float64(wanted))
	c.metrics.PrefetchPods.Set(float64(len(pods)))
	isWanted := make(map[string]bool, len(images))
	for _, w := range images {
		isWanted[w] = true
	}
	counts := map[wire.State]int{}
	held := 0
	for _, st := range states {
		if isWanted[st.Image] {
			counts[st.State]++
			held++
		}
	}
	// Wanted images that no pod holds yet are pending too.
	counts[wire.Pending] += len(images) - held
	for _, s := range []wire.State{wire.Cached, wire.Pulling, wire.Failed, wire.Pending} {
		c.metrics.Images.WithLabelValues(string(s)).Set(float64(counts[s]))
	}

	c.observeMu.Lock()
	defer c.observeMu.Unlock()
	live := make(map[types.UID]bool, len(pods))
	for _, p := range pods {
		live[p.UID] = true
		for _, st := range cachestate.FromPod(p) {
			if st.State != wire.Cached || st.Since.IsZero() || c.observed[p.UID][st.Image] {
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
