//go:build e2e

package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/install/installtest"
	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
	nodesweep "github.com/dcherman/image-cache-daemon/pkg/sweep"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// daemonPodCount counts the daemon pods in ns, those being deleted included.
func daemonPodCount(ctx context.Context, ns string) (int, error) {
	pods, err := env.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: wire.LabelComponent + "=" + wire.ComponentDaemon})
	if err != nil {
		return 0, err
	}
	return len(pods.Items), nil
}

// TestNodeLeftByDaemonSet: when the DaemonSet's nodeSelector stops matching
// node 2, the DaemonSet controller deletes the daemon pod there, and that
// daemon deletes its node's prefetch pods on its way out (nobody else would
// own them); node 1's prefetch pods are untouched. Once node 2 is a target
// again, the image is cached there again.
func TestNodeLeftByDaemonSet(t *testing.T) {
	ctx := context.Background()
	node2 := secondNode(t)
	ns := "icd-left-" + strings.ToLower(rand.String(4))
	o := install.DefaultOptions("e2e")
	o.Namespace = ns
	o.Image = daemonImage(t)
	o.ResyncPeriod = 0
	installDaemon(t, o)
	users := newNamespace(t)
	img := randomImage(t, "e2e/left:"+rand.String(6), uint64(rand.Int()))
	imageList(t, users, "left", `["`+img+`"]`)
	for _, n := range nodeNames(t) {
		waitCachedOn(t, ns, img, n)
	}
	podsOf := func(onNode2 bool) []string {
		var uids []string
		for _, p := range prefetchPods(t, ns) {
			if (p.Spec.NodeName == node2) == onNode2 {
				uids = append(uids, string(p.UID))
			}
		}
		slices.Sort(uids)
		return uids
	}
	elsewhere := podsOf(false)

	o.NodeSelector = map[string]string{corev1.LabelHostname: "icd-node"}
	if _, err := applier(t).Apply(ctx, installtest.Objects(t, o)); err != nil {
		t.Fatalf("moving the DaemonSet off node 2: %v", err)
	}
	// The daemon pod's termination grace period (10s) bounds its cleanup;
	// the rest is the DaemonSet controller's and the kubelet's.
	err := wait.PollUntilContextTimeout(ctx, time.Second, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := env.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: wire.LabelComponent + "=" + wire.ComponentDaemon})
		return err == nil && !slices.ContainsFunc(pods.Items, func(p corev1.Pod) bool { return p.Spec.NodeName == node2 }), nil
	})
	if err != nil {
		t.Fatalf("the daemon pod on %s is still there 90s after the DaemonSet left the node\n%s", node2, daemonLogs(t, ns))
	}
	err = wait.PollUntilContextTimeout(ctx, time.Second, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return len(podsOf(true)) == 0, nil
	})
	if err != nil {
		for _, p := range prefetchPods(t, ns) {
			t.Logf("left behind: %s on %s\n%s", p.Name, p.Spec.NodeName, describe(p))
		}
		t.Fatalf("prefetch pods of node %s are still there after its daemon exited", node2)
	}
	if kept := podsOf(false); !slices.Equal(kept, elsewhere) {
		t.Errorf("the other nodes' prefetch pods were %v, now %v", elsewhere, kept)
	}

	o.NodeSelector = nil
	reconfigure(t, o)
	waitCachedOn(t, ns, img, node2)
}

// TestSweepRemovesPodsOfNodesLeft: prefetch pods of a node the DaemonSet does
// not target and where no daemon runs (its daemon was killed before it could
// clean up) are deleted by the planner that leads, within
// two sweeps; pods of nodes with a daemon, and pods the DaemonSet does not
// own, are kept. The node is a Node object without a kubelet, left out by
// the DaemonSet's nodeSelector, which the real node matches.
func TestSweepRemovesPodsOfNodesLeft(t *testing.T) {
	ctx := context.Background()
	ns := "icd-sweep-" + strings.ToLower(rand.String(4))
	o := install.DefaultOptions("e2e")
	o.Namespace = ns
	o.Image = daemonImage(t)
	o.ResyncPeriod = 0
	o.NodeSelector = map[string]string{corev1.LabelOSStable: "linux"}
	// Sweeps every 10s (2 minutes by default), so that the test takes
	// seconds: a pod goes at the second sweep that finds its node left.
	const sweep = 10 * time.Second
	o.ExtraArgs = []string{"--node-sweep-interval=" + sweep.String()}
	installDaemon(t, o)
	users := newNamespace(t)
	img := randomImage(t, "e2e/sweep:"+rand.String(6), uint64(rand.Int()))
	imageList(t, users, "sweep", `["`+img+`"]`)
	nodes := nodeNames(t)
	for _, n := range nodes {
		waitCachedOn(t, ns, img, n)
	}

	ds, err := env.client.AppsV1().DaemonSets(ns).Get(ctx, install.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node := "icd-left-" + strings.ToLower(rand.String(5))
	if _, err := env.client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No kubelet finishes the deletion of pods bound to this node: remove
	// them at once, then the node, before the uninstall waits for the
	// namespace.
	t.Cleanup(func() {
		ctx := context.Background()
		for _, p := range prefetchPods(t, ns) {
			if p.Spec.NodeName == node {
				_ = env.client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
			}
		}
		_ = env.client.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{})
	})
	owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID}
	// Pods as a daemon on that node would have made them; no container
	// ever runs, so the images need not exist. Like the daemon's, they
	// tolerate every taint: the node lifecycle controller soon taints a
	// node without a kubelet unreachable, and the taint manager must not
	// be the one that deletes them.
	create := func(owner *metav1.OwnerReference, image string) *corev1.Pod {
		t.Helper()
		cfg := prefetch.Config{Namespace: ns, NodeName: node, WardenImage: o.Image, BatchSize: 20, Owner: owner,
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}}
		p, err := env.client.CoreV1().Pods(ns).Create(ctx, cfg.Pod([]string{env.registry + "/e2e/" + image + ":1"}, 0, corev1.PullIfNotPresent), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	foreign := create(nil, "sweep-foreign") // the prefetch labels, but no owner
	orphan := create(&owner, "sweep-orphan")
	sweeping := time.Now()

	bound := 3*sweep + time.Minute
	err = wait.PollUntilContextTimeout(ctx, 5*time.Second, bound, true, func(ctx context.Context) (bool, error) {
		p, err := env.client.CoreV1().Pods(ns).Get(ctx, orphan.Name, metav1.GetOptions{})
		// Without a kubelet, a deleted pod stays, being deleted.
		return apierrors.IsNotFound(err) || (err == nil && p.UID == orphan.UID && p.DeletionTimestamp != nil), nil
	})
	if err != nil {
		t.Fatalf("prefetch pod %s of node %s, which the DaemonSet does not target, was not deleted within %s\n%s", orphan.Name, node, bound, daemonLogs(t, ns))
	}
	waitEvent(t, ns, ds.Name, nodesweep.ReasonPrefetchPodsRemoved)
	if p, err := env.client.CoreV1().Pods(ns).Get(ctx, foreign.Name, metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Errorf("the prefetch pod %s that the DaemonSet does not own was deleted (err %v)", foreign.Name, err)
	}
	// The real nodes, where daemons run, still hold the image in the pods
	// they had before the sweeps.
	for _, n := range nodes {
		st := waitCachedOn(t, ns, img, n)
		p, err := env.client.CoreV1().Pods(ns).Get(ctx, st.Pod, metav1.GetOptions{})
		if err != nil || p.DeletionTimestamp != nil || !p.CreationTimestamp.Time.Before(sweeping) {
			t.Errorf("node %s, where a daemon runs, lost its prefetch pod for %s to the sweep (now %s, err %v)", n, img, st.Pod, err)
		}
	}
}
