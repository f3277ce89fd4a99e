//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/dcherman/image-cache-daemon/internal/ociimage"
	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// TestTagDigests: the planner, in its pod, checks each tag at the registry
// once per resync and the nodes pull a tag again only when it moved. Images
// are pushed through the registry's host address and named by the address
// pods and kubelets share (clusterRegistry), so the planner checks them
// under the name the kubelet pulls by; an image named 127.0.0.1:5000/...
// is out of the planner's reach and falls back to a periodic pull.
func TestTagDigests(t *testing.T) {
	ctx := context.Background()
	const resync = 20 * time.Second
	bin := buildGo(t, "github.com/dcherman/image-cache-daemon/cmd/kubectl-imagecache")
	suffix := strings.ToLower(rand.String(5))
	ns := "icd-digest-" + suffix
	users := newNamespace(t)

	still := inCluster(t, pushRandom(t, "e2e/still:"+suffix, 11))
	movingTag := "e2e/moving:" + suffix
	first := pushRandom(t, movingTag, 12)
	moving := inCluster(t, first)
	unreachable := pushRandom(t, "e2e/unreachable:"+suffix, 13) // 127.0.0.1:5000/...

	o := install.DefaultOptions("e2e")
	o.Namespace, o.Image, o.ResyncPeriod = ns, daemonImage(t), resync
	o.ExtraArgs = []string{"--image=" + still, "--v=2"}
	installDaemon(t, o)
	imageList(t, users, "images", `["`+moving+`", "`+unreachable+`"]`)
	stillSt, movingSt := waitCached(t, ns, still), waitCached(t, ns, moving)
	waitCached(t, ns, unreachable)

	// The published set: digests of the tags the planner reaches, the one it
	// does not said so.
	set := waitSet(t, ns, "every tag checked", func(s *wanted.Set) bool {
		d1, _ := s.Current(mustNormalize(t, still))
		d2, _ := s.Current(mustNormalize(t, moving))
		why := unchecked(s, mustNormalize(t, unreachable))
		return d1 == stillSt.Digest && d2 == movingSt.Digest && why != "" && why != wanted.NotChecked
	})
	if why := unchecked(set, mustNormalize(t, unreachable)); !strings.Contains(why, "cannot reach the registry") {
		t.Errorf("the 127.0.0.1 image is unchecked because %q; want the planner to say it cannot reach the registry", why)
	}

	t.Run("an unchanged tag costs the registry one check per resync and the node nothing", func(t *testing.T) {
		pod := holder(t, ns, still)
		nodeBefore := registryManifestRequests(t, "e2e/still", "containerd")
		plannerBefore := registryManifestRequests(t, "e2e/still", "image-cache-daemon-planner")
		fallback := holder(t, ns, unreachable)
		time.Sleep(3 * resync)
		if n := registryManifestRequests(t, "e2e/still", "containerd") - nodeBefore; n != 0 {
			t.Errorf("the node asked the registry for the unchanged tag's manifest %d times in %s", n, 3*resync)
		}
		checks := registryManifestRequests(t, "e2e/still", "image-cache-daemon-planner") - plannerBefore
		if checks < 2 || checks > 4 {
			t.Errorf("the planner checked the unchanged tag %d times in %s (resync %s); want about one per resync", checks, 3*resync, resync)
		}
		// Its pod may have been replaced meanwhile (merged, or moved beside
		// the unchecked image's refresh), but without a pull: the count
		// above.
		t.Logf("the unchanged tag's pod: %s, then %s", pod, holder(t, ns, still))
		// The unchecked image is pulled again by age, as without a planner.
		if now := holder(t, ns, unreachable); now == fallback {
			t.Errorf("the unchecked image's pod %s was not refreshed in %s (resync %s)", fallback, 3*resync, resync)
		}
	})

	t.Run("a moved tag shows STALE while the node cannot pull it, then current", func(t *testing.T) {
		img, err := ociimage.Random(1<<20, 14, 1)
		if err != nil {
			t.Fatal(err)
		}
		// The new image's layer is hidden from the registry right after the
		// push, so the node's pull of the new digest fails until it is back:
		// the window in which status must show the node stale.
		restore := hideLayer(t, img, push(t, img, movingTag))
		newDigest := digestOf(t, img)
		waitSet(t, ns, "the planner sees the moved tag", func(s *wanted.Set) bool {
			d, _ := s.Current(mustNormalize(t, moving))
			return d == newDigest
		})
		waitStatus(t, bin, ns, moving, "every node stale", func(row statusImage) bool { return row.Stale >= 1 && row.Stale == row.Cached })
		restore()
		st := imageStatus(t, ns, moving, 4*time.Minute, "pulled at the new digest", func(s wire.ImageStatus) bool {
			return s.State == wire.Cached && s.Digest == newDigest
		})
		nodeHasImage(t, st.Node, moving, newDigest)
		waitStatus(t, bin, ns, moving, "current everywhere", func(row statusImage) bool { return row.Stale == 0 && row.Cached >= 1 })
	})

	t.Run("the planner's leader frozen: status names the gap, the standby takes over and nothing is pulled again", func(t *testing.T) {
		before := waitSet(t, ns, "the set", func(*wanted.Set) bool { return true })
		nodeBefore := registryManifestRequests(t, "e2e/still", "containerd") + registryManifestRequests(t, "e2e/moving", "containerd")
		lease, err := env.client.CoordinationV1().Leases(ns).Get(ctx, wanted.Planner, metav1.GetOptions{})
		if err != nil || lease.Spec.HolderIdentity == nil {
			t.Fatalf("the planner's Lease: %v", err)
		}
		leader := *lease.Spec.HolderIdentity
		// Frozen, it renews nothing and releases nothing: the gap a leader
		// that died hard (or lost its node) leaves, until its Lease expires.
		pid := processOf(t, "--pod-name="+leader)
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
		killed := time.Now()
		out := waitPlugin(t, bin, 30*time.Second, "status names the gap", func(out string) bool {
			return strings.Contains(out, "the planner's leader "+leader+" has not renewed its Lease")
		}, "status", "-n", ns)
		t.Logf("status during the gap:\n%s", out)
		var next string
		err = wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
			l, err := env.client.CoordinationV1().Leases(ns).Get(ctx, wanted.Planner, metav1.GetOptions{})
			if err != nil || l.Spec.HolderIdentity == nil {
				return false, nil
			}
			next = *l.Spec.HolderIdentity
			return next != leader && next != "", nil
		})
		if err != nil {
			t.Fatalf("no standby took the planner's Lease from %s within a minute", leader)
		}
		t.Logf("%s took over from %s after %s", next, leader, time.Since(killed).Round(time.Second))
		time.Sleep(2 * resync) // the new leader's first checks, and a resync
		// The new leader kept the digests and their times: nodes had no
		// reason to pull.
		after := waitSet(t, ns, "the set", func(*wanted.Set) bool { return true })
		for _, img := range []string{still, moving} {
			img = mustNormalize(t, img)
			d1, s1 := before.Current(img)
			d2, s2 := after.Current(img)
			if d1 != d2 || !s1.Equal(s2) {
				t.Errorf("%s: digest %s since %s before the takeover, %s since %s after", img, d1, s1, d2, s2)
			}
		}
		if n := registryManifestRequests(t, "e2e/still", "containerd") + registryManifestRequests(t, "e2e/moving", "containerd") - nodeBefore; n != 0 {
			t.Errorf("the node asked the registry for manifests %d times after the takeover", n)
		}
	})

	t.Run("with no planner the nodes say so and are not ready; an upgrade from a planner that published no digests pulls nothing again", func(t *testing.T) {
		// The previous version's set: the same images, no digests. Its
		// planner is gone (scaled to 0) so that it stays as it is.
		if _, err := env.client.AppsV1().Deployments(ns).Patch(ctx, wanted.Planner, types.MergePatchType,
			[]byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
			pods, err := env.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: wire.LabelComponent + "=" + wire.ComponentPlanner})
			return err == nil && len(pods.Items) == 0, nil
		})
		if err != nil {
			t.Fatal("the planner's pods did not go")
		}
		// Meanwhile every node says the planner is down and is not ready;
		// it keeps caching the last set.
		var last string
		err = wait.PollUntilContextTimeout(ctx, 2*time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			pods, err := env.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: wire.LabelComponent + "=" + wire.ComponentDaemon})
			if err != nil || len(pods.Items) == 0 {
				return false, nil
			}
			for _, p := range pods.Items {
				last = p.Name + ": " + p.Annotations[wire.AnnotationHealth]
				if podReady(p.Status.Conditions) || !strings.Contains(p.Annotations[wire.AnnotationHealth], "the planner is down") {
					return false, nil
				}
			}
			return true, nil
		})
		if err != nil {
			t.Fatalf("the node daemons never said the planner is down and became not ready; last: %s", last)
		}
		t.Logf("with no planner: %s", last)
		old := waitSet(t, ns, "the set", func(*wanted.Set) bool { return true })
		for i := range old.Images {
			old.Images[i].Digest, old.Images[i].Since, old.Images[i].Unchecked = "", 0, ""
		}
		enc, err := wanted.Encode(old)
		if err != nil {
			t.Fatal(err)
		}
		cm, err := env.client.CoreV1().ConfigMaps(ns).Get(ctx, wanted.ConfigMap, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.BinaryData[wanted.Key] = enc.Head
		if _, err := env.client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		nodeBefore := registryManifestRequests(t, "e2e/still", "containerd") + registryManifestRequests(t, "e2e/moving", "containerd")
		// The upgrade: new node daemons and a new planner (the flags
		// differ, so every pod is replaced), which checks every tag first.
		up := o
		up.ExtraArgs = append(slices.Clone(o.ExtraArgs), "--v=3")
		reconfigure(t, up)
		waitSet(t, ns, "the new planner's digests", func(s *wanted.Set) bool {
			d1, _ := s.Current(mustNormalize(t, still))
			d2, _ := s.Current(mustNormalize(t, moving))
			return d1 == stillSt.Digest && d2 != ""
		})
		time.Sleep(2 * resync)
		if n := registryManifestRequests(t, "e2e/still", "containerd") + registryManifestRequests(t, "e2e/moving", "containerd") - nodeBefore; n != 0 {
			t.Errorf("the nodes asked the registry for manifests %d times across the upgrade", n)
		}
	})
}

// processOf is the PID of the one process on this machine (any node: they
// share it) whose command line holds arg.
func processOf(t *testing.T, arg string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && slices.Contains(strings.Split(string(cmdline), "\x00"), arg) {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d processes have %q on their command line, want 1: %v", len(found), arg, found)
	}
	return found[0]
}

// pushRandom pushes a fresh 1 MiB image as REGISTRY/repoTag.
func pushRandom(t *testing.T, repoTag string, seed uint64) string {
	t.Helper()
	img, err := ociimage.Random(1<<20, seed^uint64(rand.Int()), 1)
	if err != nil {
		t.Fatal(err)
	}
	return push(t, img, repoTag)
}

// inCluster is ref (REGISTRY/...) named by the registry's address that
// pods and every node's kubelet reach.
func inCluster(t *testing.T, ref string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(ref, env.registry+"/")
	if !ok {
		t.Fatalf("%s is not in %s", ref, env.registry)
	}
	return clusterRegistry + "/" + rest
}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// hideLayer moves img's first layer out of the registry's storage, so that
// pulls of img fail, and returns what puts it back.
func hideLayer(t *testing.T, img v1.Image, ref string) (restore func()) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) == 0 {
		t.Fatalf("%s has no layer: %v", ref, err)
	}
	d, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(registryStorage(), "docker/registry/v2/blobs", d.Algorithm, d.Hex[:2], d.Hex)
	if err := os.Rename(dir, dir+".hidden"); err != nil {
		t.Fatalf("hiding layer %s of %s: %v", d, ref, err)
	}
	done := false
	restore = func() {
		if !done {
			done = true
			if err := os.Rename(dir+".hidden", dir); err != nil {
				t.Errorf("restoring layer %s: %v", d, err)
			}
		}
	}
	t.Cleanup(restore)
	return restore
}

// waitSet waits until the published wanted set satisfies cond.
func waitSet(t *testing.T, ns, what string, cond func(*wanted.Set) bool) *wanted.Set {
	t.Helper()
	var last *wanted.Set
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		s, _, err := wanted.Get(ctx, env.client, ns)
		if err != nil {
			return false, nil
		}
		last = s
		return cond(s), nil
	})
	if err != nil {
		b, _ := json.MarshalIndent(last, "", "  ")
		t.Fatalf("the wanted set never showed %s; last:\n%s\n%s", what, b, daemonLogs(t, ns))
	}
	return last
}

// unchecked is why the set gives img (normalised) no digest.
func unchecked(s *wanted.Set, img string) string {
	for _, im := range s.Images {
		if im.Image == img {
			return im.Unchecked
		}
	}
	return ""
}

// holder is the prefetch pod that holds img cached.
func holder(t *testing.T, ns, img string) string {
	t.Helper()
	img = mustNormalize(t, img)
	for _, st := range cachestate.Summarize(prefetchPods(t, ns)) {
		if st.Image == img {
			return st.Pod
		}
	}
	t.Fatalf("no prefetch pod holds %s", img)
	return ""
}

// statusImage is a row of `status -o json`.
type statusImage struct {
	Image  string `json:"image"`
	Cached int    `json:"cached"`
	Stale  int    `json:"stale"`
	Digest string `json:"digest"`
}

// waitStatus waits until img's row of `status -o json` satisfies cond.
func waitStatus(t *testing.T, bin, ns, img, what string, cond func(statusImage) bool) {
	t.Helper()
	img = mustNormalize(t, img)
	waitPlugin(t, bin, 3*time.Minute, what, func(out string) bool {
		var doc struct {
			Images []statusImage `json:"images"`
		}
		if json.Unmarshal([]byte(out), &doc) != nil {
			return false
		}
		for _, row := range doc.Images {
			if row.Image == img {
				return cond(row)
			}
		}
		return false
	}, "status", "-n", ns, "-o", "json")
}

// waitPlugin runs the plugin with args until cond holds for its output.
func waitPlugin(t *testing.T, bin string, timeout time.Duration, what string, cond func(string) bool, args ...string) string {
	t.Helper()
	var out string
	deadline := time.Now().Add(timeout)
	for {
		out, _ = plugin(t, bin, args...)
		if cond(out) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubectl imagecache %s never showed %s within %s; last output:\n%s", strings.Join(args, " "), what, timeout, out)
		}
		time.Sleep(time.Second)
	}
}
