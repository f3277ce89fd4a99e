// Package sweep removes the prefetch pods of nodes that the node daemons'
// DaemonSet has left: a node daemon cleans up its own node as it exits
// (Collector.AtExit), and the planner's leader (or, without a planner, the
// node daemon holding the reporter Lease) sweeps the namespace (Collector.Run).
package sweep

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/pager"
	"k8s.io/client-go/tools/record"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// ReasonPrefetchPodsRemoved is the reason of the Event, on the DaemonSet,
// that says a sweep deleted the prefetch pods of a node it left.
const ReasonPrefetchPodsRemoved = "PrefetchPodsRemoved"

// exitMargin is the part of the daemon's termination grace period left
// for everything else when it cleans up on exit.
const exitMargin = 2 * time.Second

var podsResource = corev1.SchemeGroupVersion.WithResource("pods")

// Collector removes the prefetch pods of nodes the DaemonSet has left.
//
// Prefetch pods are bound to their node and owned by the DaemonSet, so a
// deleted node takes its pods along (the pod garbage collector) and so does
// an uninstall (the garbage collector, by owner). A node that stays but that
// the DaemonSet no longer targets (its nodeSelector or affinity changed, the
// node's labels changed, the node got a taint the DaemonSet does not
// tolerate) loses its daemon, and its prefetch pods would stay for ever,
// counted against the kubelet's max-pods and keeping images from its image
// garbage collection. Two ways remove them:
//   - a daemon whose pod is deleted while the DaemonSet no longer targets
//     its node deletes its node's prefetch pods before it exits (AtExit);
//   - the planner that leads (or, without a planner, the daemon that holds
//     the reporter Lease) sweeps the namespace every interval
//     (--node-sweep-interval) for prefetch pods of nodes that the DaemonSet
//     does not target and where no daemon runs, left by daemons that were
//     killed before they could clean up (sweep).
//
// A daemon that restarts, is evicted or is replaced by a rolling update
// keeps its node's pods: they are the node's cache, and the next daemon
// adopts them. Whenever a read fails, the pods are kept too.
type Collector struct {
	client kubernetes.Interface
	// meta lists and deletes prefetch pods: a sweep reads every prefetch
	// pod of the cluster, and their metadata (owners, node annotation,
	// creation) is all it needs, a fraction of the pods' size.
	meta     metadata.Interface
	prefetch prefetch.Config // Namespace, NodeName, Owner (the DaemonSet), Owns
	recorder record.EventRecorder
	now      func() time.Time
	// interval is both how often the leader sweeps and how old a prefetch
	// pod of a node the DaemonSet has left must be before a sweep deletes
	// it; the node must also have been found left on the sweep before.
	// Together they keep a sweep from racing a daemon that is being
	// replaced, or a node whose labels are being changed in several steps.
	interval time.Duration
	// left are the nodes the last sweep found with prefetch pods, no daemon
	// and no longer targeted; only the sweeping goroutine uses it.
	left map[string]bool
	// follow: the owner is the live DaemonSet of that name, whatever its
	// UID (the planner's sweeps); else it must be the one the daemon runs
	// under (a node daemon's).
	follow bool
}

// NewForNode returns the collector of the prefetch pods that cfg's
// DaemonSet leaves behind, or nil when the daemon does not run under a
// DaemonSet (then no node is ever left).
func NewForNode(client kubernetes.Interface, meta metadata.Interface, cfg prefetch.Config, recorder record.EventRecorder, interval time.Duration) *Collector {
	if cfg.Owner == nil || cfg.Owner.Kind != "DaemonSet" {
		return nil
	}
	return &Collector{client: client, meta: meta, prefetch: cfg, recorder: recorder, now: time.Now, left: map[string]bool{}, interval: interval}
}

// NewForPlanner returns the planner's sweeper of the prefetch pods that the
// DaemonSet of the installation in namespace leaves behind.
func NewForPlanner(client kubernetes.Interface, meta metadata.Interface, namespace string, recorder record.EventRecorder, interval time.Duration) *Collector {
	cfg := prefetch.Config{Namespace: namespace,
		Owner: &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: wire.DaemonSet}}
	g := NewForNode(client, meta, cfg, recorder, interval)
	g.follow = true
	return g
}

// daemonTolerations are the tolerations the DaemonSet controller adds to
// every daemon pod (AddOrUpdateDaemonPodTolerations in k8s.io/kubernetes,
// pkg/controller/daemon/util): a cordoned node, or one under pressure, is
// still a target.
func daemonTolerations(hostNetwork bool) []corev1.Toleration {
	exists := func(key string, effect corev1.TaintEffect) corev1.Toleration {
		return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: effect}
	}
	t := []corev1.Toleration{
		exists(corev1.TaintNodeNotReady, corev1.TaintEffectNoExecute),
		exists(corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute),
		exists(corev1.TaintNodeDiskPressure, corev1.TaintEffectNoSchedule),
		exists(corev1.TaintNodeMemoryPressure, corev1.TaintEffectNoSchedule),
		exists(corev1.TaintNodePIDPressure, corev1.TaintEffectNoSchedule),
		exists(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule),
	}
	if hostNetwork {
		t = append(t, exists(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule))
	}
	return t
}

// targets reports whether ds would create a daemon pod on node if none ran
// there: the shouldRun of the DaemonSet controller's NodeShouldRunDaemonPod
// (k8s.io/kubernetes, pkg/controller/daemon), with the same helpers. The
// template's nodeName, its nodeSelector and required node affinity must
// match, and no NoSchedule or NoExecute taint may be left untolerated by
// its tolerations and those the controller adds. (A running daemon pod
// that tolerates the node's NoExecute taints but not a new NoSchedule one
// keeps running, the controller's shouldContinueRunning; but once it is
// gone no new one comes, and that is what matters for its prefetch pods.)
func targets(logger klog.Logger, ds *appsv1.DaemonSet, node *corev1.Node) bool {
	spec := ds.Spec.Template.Spec
	if spec.NodeName != "" && spec.NodeName != node.Name {
		return false
	}
	// Like the controller, ignore terms that do not parse: they match nothing.
	if fits, _ := nodeaffinity.GetRequiredNodeAffinity(&corev1.Pod{Spec: spec}).Match(node); !fits {
		return false
	}
	tolerations := append(slices.Clone(spec.Tolerations), daemonTolerations(spec.HostNetwork)...)
	// Comparison operators (Gt, Lt) are honoured: the API server admits a
	// toleration that uses them only where its feature gate is on, and
	// refusing them here would delete a cache the controller keeps.
	_, untolerated := corev1helpers.FindMatchingUntoleratedTaint(logger, node.Spec.Taints, tolerations, func(t *corev1.Taint) bool {
		return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
	}, true)
	return !untolerated
}

// daemonSet reads the DaemonSet that owns the daemon and its prefetch pods.
// It returns nil, with the reason logged, when that DaemonSet is gone,
// being deleted or replaced by another of the same name: then the garbage
// collector removes the prefetch pods with it, and nothing here may.
func (g *Collector) daemonSet(ctx context.Context) (*appsv1.DaemonSet, error) {
	owner := g.prefetch.Owner
	ds, err := g.client.AppsV1().DaemonSets(g.prefetch.Namespace).Get(ctx, owner.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		klog.FromContext(ctx).V(2).Info("The DaemonSet is gone; the garbage collector removes its prefetch pods", "daemonSet", klog.KRef(g.prefetch.Namespace, owner.Name))
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading DaemonSet %s/%s (the daemon needs get on daemonsets): %w", g.prefetch.Namespace, owner.Name, err)
	case g.follow && ds.DeletionTimestamp == nil:
		followed := *owner
		followed.UID = ds.UID
		g.prefetch.Owner = &followed
	case ds.UID != owner.UID || ds.DeletionTimestamp != nil:
		klog.FromContext(ctx).V(2).Info("The DaemonSet is being deleted or was replaced; the garbage collector removes its prefetch pods", "daemonSet", klog.KObj(ds))
		return nil, nil
	}
	return ds, nil
}

// nodeLeft reads node and reports whether ds has left it: it does not
// target it, or the node is gone.
func (g *Collector) nodeLeft(ctx context.Context, ds *appsv1.DaemonSet, node string, opts metav1.GetOptions) (bool, error) {
	n, err := g.client.CoreV1().Nodes().Get(ctx, node, opts)
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading node %s: %w", node, err)
	}
	return !targets(klog.FromContext(ctx), ds, n), nil
}

// podRef is what deleting a prefetch pod takes.
type podRef struct {
	name    string
	uid     types.UID
	created time.Time
}

// eachPrefetchPod calls fn with the node and reference of every prefetch
// pod matching selector that the DaemonSet owns and that is not being
// deleted, listed page by page as metadata only.
func (g *Collector) eachPrefetchPod(ctx context.Context, selector map[string]string, fn func(node string, p podRef)) error {
	pods := g.meta.Resource(podsResource).Namespace(g.prefetch.Namespace)
	list := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return pods.List(ctx, opts)
	})
	err := list.EachListItem(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(selector).String()}, func(obj runtime.Object) error {
		m, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			return fmt.Errorf("listing prefetch pods: got %T, want metadata", obj)
		}
		p := &corev1.Pod{ObjectMeta: m.ObjectMeta}
		if m.DeletionTimestamp != nil || !g.prefetch.Owns(p) {
			return nil
		}
		fn(cachestate.Node(p), podRef{name: m.Name, uid: m.UID, created: m.CreationTimestamp.Time})
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing prefetch pods in %s: %w", g.prefetch.Namespace, err)
	}
	return nil
}

// deletePods deletes pods (each only if it is still the pod listed) and
// returns how many it deleted.
func (g *Collector) deletePods(ctx context.Context, pods []podRef) (int, error) {
	client := g.meta.Resource(podsResource).Namespace(g.prefetch.Namespace)
	var errs []error
	deleted := 0
	for _, p := range pods {
		err := client.Delete(ctx, p.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.uid}})
		switch {
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			// Gone already, or replaced by a pod of the same name.
		case err != nil:
			errs = append(errs, fmt.Errorf("deleting prefetch pod %s/%s: %w", g.prefetch.Namespace, p.name, err))
		default:
			deleted++
		}
	}
	return deleted, errors.Join(errs...)
}

// AtExit runs leaveNode as the daemon exits (ctx has ended), within the
// termination grace period of its pod self, and logs the outcome.
func (g *Collector) AtExit(ctx context.Context, self *corev1.Pod) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), exitBudget(self))
	defer cancel()
	logger := klog.FromContext(ctx)
	n, err := g.leaveNode(ctx, self.Name)
	if err != nil {
		logger.Error(err, "Cleaning up after a node the DaemonSet left; the reporter daemon's sweep retries", "node", g.prefetch.NodeName, "deleted", n)
		return
	}
	if n > 0 {
		logger.Info("Deleted this node's prefetch pods: the DaemonSet no longer targets it", "node", g.prefetch.NodeName, "deleted", n)
	}
}

// exitBudget is how long the daemon may spend cleaning up on exit: its
// pod's termination grace period (the kubelet kills it then), less a margin.
func exitBudget(self *corev1.Pod) time.Duration {
	grace := time.Duration(corev1.DefaultTerminationGracePeriodSeconds) * time.Second
	if s := self.Spec.TerminationGracePeriodSeconds; s != nil {
		grace = time.Duration(*s) * time.Second
	}
	return max(grace-exitMargin, time.Second)
}

// leaveNode deletes this node's prefetch pods when the daemon's pod
// (podName) is being deleted, or is gone, and its DaemonSet no longer
// targets the node: no daemon will come back to own them. It returns how
// many it deleted. A container restart (the pod stays), a rolling update or
// an eviction (the node is still a target) keeps them.
func (g *Collector) leaveNode(ctx context.Context, podName string) (int, error) {
	logger := klog.FromContext(ctx)
	ns, node := g.prefetch.Namespace, g.prefetch.NodeName
	self, err := g.client.CoreV1().Pods(ns).Get(ctx, podName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return 0, fmt.Errorf("reading this daemon's pod %s/%s: %w", ns, podName, err)
	case self.DeletionTimestamp == nil:
		logger.V(2).Info("Keeping this node's prefetch pods: the daemon's pod stays", "pod", klog.KObj(self))
		return 0, nil
	}
	ds, err := g.daemonSet(ctx)
	if ds == nil || err != nil {
		return 0, err
	}
	left, err := g.nodeLeft(ctx, ds, node, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	if !left {
		logger.V(2).Info("Keeping this node's prefetch pods: the DaemonSet still targets the node, and its next daemon adopts them", "node", node)
		return 0, nil
	}
	var pods []podRef
	err = g.eachPrefetchPod(ctx, wire.NodeLabels(node), func(_ string, p podRef) { pods = append(pods, p) })
	if err != nil {
		return 0, err
	}
	return g.deletePods(ctx, pods)
}

// Run sweeps every interval while this daemon holds the reporter Lease or
// leads the planners (leading), until ctx ends.
func (g *Collector) Run(ctx context.Context, leading func() bool) {
	t := time.NewTicker(g.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.tick(ctx, leading())
	}
}

// tick sweeps if this daemon leads; one that does not forgets what it saw,
// so that it waits two sweeps again once it leads.
func (g *Collector) tick(ctx context.Context, leading bool) {
	if !leading {
		clear(g.left)
		return
	}
	if err := g.sweep(ctx); err != nil {
		klog.FromContext(ctx).Error(err, "Sweeping the prefetch pods of nodes the DaemonSet left; retrying at the next sweep", "interval", g.interval)
	}
}

// sweep deletes the prefetch pods, older than the interval, of every node
// that runs no daemon of the DaemonSet and that the DaemonSet did not
// target on this sweep nor on the one before. It makes two LISTs (the
// daemon pods, and the prefetch pods' metadata) and reads only the nodes
// that have prefetch pods but no daemon.
func (g *Collector) sweep(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	ds, err := g.daemonSet(ctx)
	if ds == nil || err != nil {
		clear(g.left)
		return err
	}
	daemons, err := g.daemonNodes(ctx, ds)
	if err != nil {
		return err
	}
	orphans := map[string][]podRef{}
	err = g.eachPrefetchPod(ctx, wire.PrefetchLabels(), func(node string, p podRef) {
		// A pod whose node is unknown is never deleted.
		if node != "" && !daemons[node] {
			orphans[node] = append(orphans[node], p)
		}
	})
	if err != nil {
		return err
	}
	nodes := make([]string, 0, len(orphans))
	for node := range orphans {
		nodes = append(nodes, node)
	}
	sort.Strings(nodes)
	now := g.now()
	left := map[string]bool{}
	var errs []error
	for _, node := range nodes {
		// The node as the API server's cache has it: the second sweep
		// that must agree absorbs a stale read.
		isLeft, err := g.nodeLeft(ctx, ds, node, metav1.GetOptions{ResourceVersion: "0"})
		if err != nil {
			errs = append(errs, err)
			left[node] = g.left[node] // no news: keep what the last sweep saw
			continue
		}
		if !isLeft {
			continue
		}
		left[node] = true
		if !g.left[node] {
			logger.V(2).Info("Node has prefetch pods, no daemon and is no longer a target; deleting them at the next sweep", "node", node, "pods", len(orphans[node]))
			continue
		}
		var due []podRef
		for _, p := range orphans[node] {
			if now.Sub(p.created) >= g.interval {
				due = append(due, p)
			}
		}
		n, err := g.deletePods(ctx, due)
		if err != nil {
			errs = append(errs, err)
		}
		if n > 0 {
			logger.Info("Deleted the prefetch pods of a node the DaemonSet no longer targets", "node", node, "deleted", n)
			if g.recorder != nil {
				g.recorder.Eventf(ds, corev1.EventTypeNormal, ReasonPrefetchPodsRemoved,
					"Deleted %d prefetch pods of node %s, which this DaemonSet no longer targets and where no daemon runs", n, node)
			}
		}
	}
	g.left = left
	return errors.Join(errs...)
}

// daemonNodes returns the nodes where a daemon pod of ds runs or is about to
// run (bound, not being deleted, not finished).
func (g *Collector) daemonNodes(ctx context.Context, ds *appsv1.DaemonSet) (map[string]bool, error) {
	selector, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("DaemonSet %s/%s: selector: %w", ds.Namespace, ds.Name, err)
	}
	pods := g.client.CoreV1().Pods(ds.Namespace)
	list := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return pods.List(ctx, opts)
	})
	nodes := map[string]bool{}
	err = list.EachListItem(ctx, metav1.ListOptions{LabelSelector: selector.String()}, func(obj runtime.Object) error {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return fmt.Errorf("listing daemon pods: got %T", obj)
		}
		ref := metav1.GetControllerOf(p)
		live := p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
		if ref != nil && ref.UID == ds.UID && live && p.Spec.NodeName != "" {
			nodes[p.Spec.NodeName] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the daemon pods of DaemonSet %s/%s: %w", ds.Namespace, ds.Name, err)
	}
	return nodes, nil
}
