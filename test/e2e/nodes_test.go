//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/dcherman/image-cache-daemon/internal/testcluster"
	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/warm"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// The tests of this file run on more than one real node: node 1 (icd-node),
// which holds the control plane, and nodes that hack/cluster/node.sh brings
// up beside it, each a kubelet with its own containerd in its own network
// namespace. make test-e2e starts the cluster with NODES=2; against a
// cluster of one node, secondNode adds node 2 itself.

// nodeScript runs hack/cluster/node.sh with args and returns its output.
func nodeScript(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join("..", "..", "hack", "cluster", "node.sh"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("hack/cluster/node.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// secondNode makes sure node 2 is up and returns its name. It stays up for
// the tests after this one.
func secondNode(t *testing.T) string {
	t.Helper()
	nodeScript(t, "add", "2")
	return "icd-node2"
}

// joinNode brings up node k for this test alone, its kubelet started with
// kubeletFlags; at the end of the test the node goes, its Node object too.
func joinNode(t *testing.T, k int, kubeletFlags ...string) string {
	t.Helper()
	t.Cleanup(func() { nodeScript(t, "remove", fmt.Sprint(k), "--delete") })
	nodeScript(t, append([]string{"add", fmt.Sprint(k)}, kubeletFlags...)...)
	return fmt.Sprintf("icd-node%d", k)
}

// nodeNames lists the cluster's nodes by name.
func nodeNames(t *testing.T) []string {
	t.Helper()
	nodes, err := env.client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes.Items {
		names = append(names, n.Name)
	}
	return names
}

// waitCachedOn waits until image is cached on node.
func waitCachedOn(t *testing.T, ns, image, node string) wire.ImageStatus {
	t.Helper()
	image = mustNormalize(t, image)
	var found wire.ImageStatus
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, 3*time.Minute, true, func(context.Context) (bool, error) {
		for _, st := range cachestate.Summarize(prefetchPods(t, ns)) {
			if st.Node == node && st.Image == image && st.State == wire.Cached {
				found = st
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("%s never cached on %s:\n%s", image, node, daemonLogs(t, ns))
	}
	return found
}

// statusRows returns, from `status -o wide`, the rows of image: node name
// to the row's fields.
func statusRows(out, image string) map[string][]string {
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == image {
			rows[f[0]] = f
		}
	}
	return rows
}

// On two nodes, as a user sees it: add --wait returns once both nodes have
// the image, status counts 2/2, -o wide has a row per node, --node filters,
// and each kubelet lists the image among its own.
func TestTwoNodes(t *testing.T) {
	node2 := secondNode(t)
	nodes := nodeNames(t)
	if !slices.Contains(nodes, node2) || len(nodes) < 2 {
		t.Fatalf("nodes %v, want icd-node and %s", nodes, node2)
	}
	bin := buildGo(t, "github.com/dcherman/image-cache-daemon/cmd/kubectl-imagecache")
	ns := "icd-nodes-" + strings.ToLower(rand.String(4))
	t.Cleanup(func() {
		saveArtifacts(t, ns)
		plugin(t, bin, "uninstall", "--yes", "-n", ns)
	})
	mustPlugin(t, bin, "install", "-n", ns, "--image", daemonImage(t), "--wait", "--resync-period", "0")

	img := randomImage(t, "e2e/nodes:"+rand.String(6), uint64(rand.Int()))
	out := mustPlugin(t, bin, "add", img, "--wait", "--timeout", "3m", "-n", ns)
	if want := fmt.Sprintf("every node (%d) has", len(nodes)); !strings.Contains(out, want) {
		t.Fatalf("add --wait does not say %q:\n%s", want, out)
	}
	// add --wait returned: every node has it now, not later.
	wide := mustPlugin(t, bin, "status", "-o", "wide", "-n", ns)
	rows := statusRows(wide, img)
	for _, n := range nodes {
		r, ok := rows[n]
		if !ok || r[2] != "cached" || !strings.HasPrefix(r[3], "sha256:") {
			t.Fatalf("status -o wide has no cached row for %s on %s:\n%s", img, n, wide)
		}
	}
	var doc struct {
		Status []struct{ Node, Image, State, Digest string }
	}
	js := mustPlugin(t, bin, "status", "-o", "json", "-n", ns)
	if err := json.Unmarshal([]byte(js), &doc); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, js)
	}
	for _, s := range doc.Status {
		if s.Image == img && s.State == "cached" {
			nodeHasImage(t, s.Node, img, s.Digest)
		}
	}
	table := mustPlugin(t, bin, "status", "-n", ns)
	if want := fmt.Sprintf("%d/%d", len(nodes), len(nodes)); !strings.Contains(table, want) {
		t.Errorf("status does not count %s:\n%s", want, table)
	}
	one := mustPlugin(t, bin, "status", "-o", "wide", "--node", node2, "-n", ns)
	if rows := statusRows(one, img); len(rows) != 1 || rows[node2] == nil {
		t.Errorf("status --node %s shows rows of %v:\n%s", node2, slices.Collect(maps.Keys(rows)), one)
	}
}

// A node that joins the cluster registered with the startup taint takes no
// workload while its images pull; its own daemon then removes the taint,
// with an Event, and status shows when it was warm. A node that joins while
// a wanted image cannot be pulled is released once the pull has failed (at
// --warm-timeout at the latest), with a Warning Event that names the image.
func TestNodeJoinsWithStartupTaint(t *testing.T) {
	ctx := context.Background()
	secondNode(t)
	key := "e2e.imagecache.dcherman.github.io/warming-" + strings.ToLower(rand.String(4))
	users := newNamespace(t)
	var images []string
	for i := range 3 {
		images = append(images, randomImage(t, fmt.Sprintf("e2e/join-%d:%s", i, rand.String(5)), uint64(rand.Int())))
	}
	quoted, _ := json.Marshal(images)
	imageList(t, users, "join", string(quoted))

	ns := "icd-join-" + strings.ToLower(rand.String(4))
	o := install.DefaultOptions("e2e")
	o.Namespace, o.Image, o.ResyncPeriod = ns, daemonImage(t), 0
	o.StartupTaint, o.WarmTimeout = key, time.Minute
	installDaemon(t, o)
	bin := buildGo(t, "github.com/dcherman/image-cache-daemon/cmd/kubectl-imagecache")

	node := joinNode(t, 3, "--register-with-taints="+key+"=true:NoSchedule")
	// The workload can only go to the new node; it waits there until warm.
	workload := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "workload", Namespace: users},
		Spec: corev1.PodSpec{
			NodeSelector:  map[string]string{corev1.LabelHostname: node},
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "w", Image: images[0], ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"/x"}}},
		},
	}
	if _, err := env.client.CoreV1().Pods(users).Create(ctx, workload, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n := waitNode(t, node, "warm and untainted", 3*time.Minute, func(n *corev1.Node) bool {
		c := warmCondition(n)
		return c != nil && c.Status == corev1.ConditionTrue && !testcluster.HasTaint(n, key)
	})
	if c := warmCondition(n); c.Reason != warm.ReasonWarm {
		t.Errorf("condition %+v, want reason %s", c, warm.ReasonWarm)
	}
	// Until then the workload was not scheduled: it pulls nothing itself.
	p := waitForPod(t, users, "workload", time.Minute, "scheduled", func(p *corev1.Pod) bool { return p.Spec.NodeName != "" })
	if p.Spec.NodeName != node {
		t.Fatalf("the workload went to %s", p.Spec.NodeName)
	}
	waitEventWith(t, metav1.NamespaceDefault, node, warm.ReasonTaintRemoved, "")
	evs, err := env.client.CoreV1().Events(users).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=workload"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Items {
		if e.Reason == "Pulling" {
			t.Errorf("the workload pulled its image on a warm node: %s", e.Message)
		}
	}
	// status reads the warm line the daemon publishes on its pod, at most
	// every second (longer after a large report): it follows the Node's
	// condition within a few seconds.
	var out string
	err = wait.PollUntilContextTimeout(ctx, time.Second, 30*time.Second, true, func(context.Context) (bool, error) {
		out = mustPlugin(t, bin, "status", "-n", ns)
		return strings.Contains(out, "warm:") && !strings.Contains(out, "not warm: "+node), nil
	})
	if err != nil {
		t.Errorf("status does not show %s warm within 30 s of its condition:\n%s", node, out)
	}

	t.Run("an image that cannot be pulled does not keep a joining node out", func(t *testing.T) {
		missing := env.registry + "/e2e/join-missing:" + rand.String(6)
		quoted, _ := json.Marshal(append(slices.Clone(images), missing))
		imageList(t, users, "join", string(quoted))
		start := time.Now()
		node := joinNode(t, 4, "--register-with-taints="+key+"=true:NoSchedule")
		n := waitNode(t, node, "untainted with the reason", 3*time.Minute, func(n *corev1.Node) bool {
			c := warmCondition(n)
			return c != nil && c.Status == corev1.ConditionFalse && !testcluster.HasTaint(n, key)
		})
		if c := warmCondition(n); c.Reason != warm.ReasonImagesFailed && c.Reason != warm.ReasonTimedOut {
			t.Errorf("condition %+v, want reason %s or %s", c, warm.ReasonImagesFailed, warm.ReasonTimedOut)
		}
		// A pull the registry refuses settles the image (failed): the node
		// is released then, or at the warm timeout if the pull hangs.
		if d := time.Since(start); d > o.WarmTimeout+time.Minute {
			t.Errorf("the taint went after %s, long past the warm timeout of %s", d, o.WarmTimeout)
		}
		if e := waitEventWith(t, metav1.NamespaceDefault, node, warm.ReasonTaintRemoved, "join-missing"); e.Type != corev1.EventTypeWarning {
			t.Errorf("the %s Event naming the image is of type %s, want %s", e.Reason, e.Type, corev1.EventTypeWarning)
		}
		err := wait.PollUntilContextTimeout(ctx, 2*time.Second, time.Minute, true, func(context.Context) (bool, error) {
			out, _ := plugin(t, bin, "status", "-n", ns, "--node", node)
			return strings.Contains(out, "not warm: "+node), nil
		})
		if err != nil {
			out, _ := plugin(t, bin, "status", "-n", ns, "--node", node)
			t.Errorf("status does not show %s not warm:\n%s", node, out)
		}
	})
}

// A real `kubectl drain --ignore-daemonsets` of node 2 completes while a
// prefetch pod there waits on an image the registry refuses; node 1 keeps
// its prefetch pods.
func TestDrainSecondNode(t *testing.T) {
	ctx := context.Background()
	kubectl := os.Getenv("KUBECTL")
	if kubectl == "" {
		t.Fatal("KUBECTL is not set: run the e2e suite through make e2e, which passes the kubectl built with the cluster")
	}
	node2 := secondNode(t)
	ns, users := installWithUsers(t, "icd-drain2-")
	missing := env.registry + "/e2e/drain2-missing:" + rand.String(6)
	imageList(t, users, "drain", `["`+missing+`"]`)
	var stuck *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(context.Context) (bool, error) {
		for _, st := range cachestate.Summarize(prefetchPods(t, ns)) {
			if st.Node == node2 && st.State == wire.Failed {
				p, err := env.client.CoreV1().Pods(ns).Get(ctx, st.Pod, metav1.GetOptions{})
				if err == nil && p.Status.Phase == corev1.PodPending {
					stuck = p
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no prefetch pod on %s pending on %s:\n%s", node2, missing, daemonLogs(t, ns))
	}
	others := func() []string {
		var names []string
		for _, p := range prefetchPods(t, ns) {
			if p.Spec.NodeName != node2 {
				names = append(names, p.Name)
			}
		}
		slices.Sort(names)
		return names
	}
	before := others()

	t.Cleanup(func() {
		if out, err := exec.Command(kubectl, "--kubeconfig", os.Getenv("KUBECONFIG"), "uncordon", node2).CombinedOutput(); err != nil {
			t.Errorf("kubectl uncordon %s: %v\n%s", node2, err, out)
		}
	})
	out, err := exec.Command(kubectl, "--kubeconfig", os.Getenv("KUBECONFIG"), "drain", node2, "--ignore-daemonsets", "--timeout=90s").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl drain %s: %v\n%s", node2, err, out)
	}
	if !strings.Contains(string(out), "evicting pod "+ns+"/"+stuck.Name) {
		t.Errorf("kubectl drain did not evict %s:\n%s", stuck.Name, out)
	}
	if _, err := env.client.CoreV1().Pods(ns).Get(ctx, stuck.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("prefetch pod %s is still there after the drain: %v", stuck.Name, err)
	}
	// The daemon on the cordoned node does not put a prefetch pod back
	// there at once, and node 1's are those it had.
	if after := others(); !slices.Equal(before, after) {
		t.Errorf("node 1's prefetch pods were %v before the drain, %v after", before, after)
	}
}

// `kubectl delete node` of a real node (its kubelet then stopped, as when a
// machine is retired) leaves none of its prefetch pods behind.
func TestDeleteRealNode(t *testing.T) {
	ctx := context.Background()
	ns, users := installWithUsers(t, "icd-delnode-")
	node := joinNode(t, 5)
	img := randomImage(t, "e2e/delnode:"+rand.String(6), uint64(rand.Int()))
	imageList(t, users, "delnode", `["`+img+`"]`)
	waitCachedOn(t, ns, img, node)
	nodeScript(t, "remove", "5")
	if err := env.client.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(context.Context) (bool, error) {
		for _, p := range prefetchPods(t, ns) {
			if p.Spec.NodeName == node {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("prefetch pods of deleted node %s are still there after 3 minutes", node)
	}
}
