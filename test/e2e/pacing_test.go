//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/dcherman/image-cache-daemon/internal/ociimage"
	"github.com/dcherman/image-cache-daemon/internal/testcluster"
	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// smallImages pushes n fresh images of 64 KiB and returns them.
func smallImages(t *testing.T, repo string, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		img, err := ociimage.Random(64<<10, uint64(rand.Int()), 1)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, push(t, img, fmt.Sprintf("%s-%02d:%s", repo, i, rand.String(6))))
	}
	return out
}

// refusedPulls counts the kubelet's "pull QPS exceeded" failures in ns.
func refusedPulls(t *testing.T, ns string) int {
	t.Helper()
	byEvent, err := testcluster.RefusedPulls(context.Background(), env.client, ns)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range byEvent {
		n += c
	}
	return n
}

// waitAllCached waits until every image is cached on the node.
func waitAllCached(t *testing.T, ns string, images []string, timeout time.Duration) {
	t.Helper()
	if missing, err := testcluster.WaitCached(context.Background(), env.client, ns, images, timeout); err != nil {
		t.Fatalf("%d of %d images not cached within %s: %v\n%s", len(missing), len(images), timeout, missing, daemonLogs(t, ns))
	}
}

// TestPacedPulls: 50 fresh small images wanted at once are pulled within
// the kubelet's pull budget (registryPullQPS 5, burst 10 on this cluster):
// `kubectl imagecache add --wait` succeeds and the kubelet refuses no pull.
// Then a daemon told a budget ten times the kubelet's trips its limit, and
// recovers without the kubelet's image back-off: the refused pulls read
// pending, never failed, and every image is cached well before the back-off
// of the refused containers would let them try again.
func TestPacedPulls(t *testing.T) {
	bin := buildGo(t, "github.com/dcherman/image-cache-daemon/cmd/kubectl-imagecache")
	ns := "icd-pace-" + strings.ToLower(rand.String(4))
	t.Cleanup(func() {
		saveArtifacts(t, ns)
		plugin(t, bin, "uninstall", "--yes", "-n", ns)
	})
	mustPlugin(t, bin, "install", "-n", ns, "--image", daemonImage(t), "--resync-period", "0",
		"--source-namespace", ns, "--wait")

	images := smallImages(t, "e2e/paced", 50)
	start := time.Now()
	out, code := plugin(t, bin, append([]string{"add", "-n", ns, "--wait", "--timeout", "3m"}, images...)...)
	if code != 0 {
		t.Fatalf("add --wait of 50 images exited %d:\n%s\n%s", code, out, daemonLogs(t, ns))
	}
	took := time.Since(start)
	if n := refusedPulls(t, ns); n != 0 {
		t.Errorf("the kubelet refused %d prefetch pulls under its limit; the daemon's pacing must avoid that", n)
	}
	// Each node's daemon paces its own kubelet: every node pulled all 50
	// (on two nodes, 100 pulls at once under two limits of 5 a second).
	perNode := map[string]int{}
	for _, st := range cachestate.Summarize(prefetchPods(t, ns)) {
		if st.State == wire.Cached {
			perNode[st.Node]++
		}
	}
	for _, n := range nodeNames(t) {
		if perNode[n] != len(images) {
			t.Errorf("node %s has %d of the %d images cached", n, perNode[n], len(images))
		}
	}
	// (50 - burst) / QPS = 8 s is the kubelet's floor; the bench measures
	// how close the daemon comes. This only catches pacing gone wrong.
	t.Logf("50 images cached on %d nodes in %s, %d prefetch pods", len(perNode), took.Round(time.Millisecond), len(prefetchPods(t, ns)))

	t.Run("recovers when the kubelet refuses", func(t *testing.T) {
		o := install.DefaultOptions("e2e")
		o.Namespace, o.Image, o.ResyncPeriod = ns, daemonImage(t), 0
		o.SourceNamespaces = []string{ns}
		o.RegistryPullQPS, o.RegistryBurst = 50, 100
		// On node 1 alone: the kubelet pulls one image at a time, so its
		// limit trips only when pulls are quick, and pulls on a second node
		// of this machine would slow them down.
		o.NodeSelector = map[string]string{corev1.LabelHostname: "icd-node"}
		reconfigure(t, o)
		more := smallImages(t, "e2e/unpaced", 40)
		start := time.Now()
		quoted := make([]string, len(more))
		for i, img := range more {
			quoted[i] = `"` + img + `"`
		}
		imageList(t, ns, "unpaced", "["+strings.Join(quoted, ",")+"]")
		// Refused containers would wait 10 s, then 20 s, then 40 s in
		// the kubelet's back-off: recovered by replacement, 40 images
		// take a few seconds past the kubelet's floor of 6 s.
		waitAllCached(t, ns, more, 45*time.Second)
		refused := refusedPulls(t, ns)
		t.Logf("40 images cached in %s with %d pulls refused by the kubelet", time.Since(start).Round(time.Millisecond), refused)
		if refused == 0 {
			t.Error("the kubelet refused no pull: 40 pulls at 50 a second must trip a limit of 5 a second, or the recovery is not tested")
		}
		for _, st := range cachestate.Summarize(prefetchPods(t, ns)) {
			if st.State == wire.Failed {
				t.Errorf("%s reads failed: %s %s", st.Image, st.Reason, st.Message)
			}
		}
	})
}
