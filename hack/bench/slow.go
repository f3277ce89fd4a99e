package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/imagelist"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// The slow registry that hack/cluster/up.sh starts (lib.sh: SLOW_REGISTRY*):
// REGISTRY's storage served from its own network namespace across a veth
// pair shaped to slowRegistryMbit. containerd pulls slowRegistryHost/REPO:TAG
// through it; the bench pushes to the fast registry and names the same
// repository under slowRegistryHost.
const (
	slowRegistryHost = "slow.icd.test"
	// slowRegistryIPEnv overrides defaultSlowRegistryIP here as it does in
	// lib.sh.
	slowRegistryIPEnv     = "ICD_SLOW_REGISTRY_IP"
	defaultSlowRegistryIP = "198.18.0.2"
	slowRegistryMbit      = 100
)

// slowRegistry measures the value a user buys: the time from creating a
// plain pod to its container having started, for an image of sizeMiB that
// the daemon has cached against one it has not, both pulled from the slow
// registry. Each trial pushes two fresh images (no layer of them can be on
// the node already) and lets the daemon cache only the first.
func (b *bench) slowRegistry(ctx context.Context, sizeMiB int64, trials int) error {
	if sizeMiB < 1 || trials < 1 {
		return fmt.Errorf("slow registry: size %d MiB and %d trials must be at least 1", sizeMiB, trials)
	}
	addr := os.Getenv(slowRegistryIPEnv)
	if addr == "" {
		addr = defaultSlowRegistryIP
	}
	addr += ":5000"
	var cachedAll, uncachedAll, ratios []float64
	for t := 1; t <= trials; t++ {
		var refs [2]string
		for i, repo := range []string{"bench/slow-cached", "bench/slow-uncached"} {
			fast, err := b.push(ctx, repo, sizeMiB<<20)
			if err != nil {
				return err
			}
			if refs[i], err = b.viaSlowRegistry(ctx, addr, fast); err != nil {
				return err
			}
		}
		cachedImg, uncachedImg := refs[0], refs[1]
		if _, err := imagelist.Edit(ctx, b.kube, b.ns, install.DefaultConfigMap, func(cur []string) []string { return append(cur, cachedImg) }); err != nil {
			return fmt.Errorf("wanting %s: %w", cachedImg, err)
		}
		if err := b.waitCached(ctx, b.ns, []string{cachedImg}); err != nil {
			return fmt.Errorf("waiting for the daemon to cache %s: %w", cachedImg, err)
		}
		cached, err := b.podStart(ctx, cachedImg)
		if err != nil {
			return err
		}
		uncached, err := b.podStart(ctx, uncachedImg)
		if err != nil {
			return err
		}
		// Leave the image list as it was; the content stays on the node
		// either way, which is why every trial pushes new images.
		if _, err := imagelist.Edit(ctx, b.kube, b.ns, install.DefaultConfigMap, func(cur []string) []string {
			return slices.DeleteFunc(cur, func(s string) bool { return s == cachedImg })
		}); err != nil {
			return fmt.Errorf("unwanting %s: %w", cachedImg, err)
		}
		ratio := cached.Seconds() / uncached.Seconds()
		cachedAll, uncachedAll, ratios = append(cachedAll, cached.Seconds()), append(uncachedAll, uncached.Seconds()), append(ratios, ratio)
		// The image's rate through the link shows that the shaping is in
		// place: without it the not-cached pull is many times faster.
		fmt.Printf("  trial %d: pod to Running: cached %s, not cached %s (%.0f Mbit/s of image), ratio %.3f\n", t,
			cached.Round(time.Millisecond), uncached.Round(time.Millisecond), float64(sizeMiB<<20)*8/1e6/uncached.Seconds(), ratio)
	}
	fmt.Printf("pod to Running, image of %d MiB behind a %d Mbit/s link: cached %s s, not cached %s s: ratio %s (median and range of %d trials; goal <= 0.1)\n",
		sizeMiB, slowRegistryMbit, spread(cachedAll, 2), spread(uncachedAll, 2), spread(ratios, 3), trials)
	return nil
}

// viaSlowRegistry returns the name under slowRegistryHost of ref (pushed to
// b.registry), once the slow registry at addr serves its manifest: a
// cluster without the slow registry fails here, in seconds, and not after
// the kubelet's pull back-off.
func (b *bench) viaSlowRegistry(ctx context.Context, addr, ref string) (string, error) {
	repoTag, ok := strings.CutPrefix(ref, b.registry+"/")
	repo, tag, found := strings.Cut(repoTag, ":")
	if !ok || !found {
		return "", fmt.Errorf("image %s: want %s/REPO:TAG", ref, b.registry)
	}
	url := "http://" + addr + "/v2/" + repo + "/manifests/" + tag
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("HTTP %s", resp.Status)
		}
	}
	if err != nil {
		return "", fmt.Errorf("the slow registry does not serve %s (HEAD %s: %w): bring the cluster up with hack/cluster/up.sh, which starts it, or set %s to its address",
			ref, url, err, slowRegistryIPEnv)
	}
	return slowRegistryHost + "/" + repoTag, nil
}

// podStart creates a plain pod of image and returns the time until its
// container has started. The warden exits at once, so the kubelet may
// report the pod Succeeded without a Running phase in between: either
// counts. It watches the pod rather than polling, so the figure does not
// carry a poll interval.
func (b *bench) podStart(ctx context.Context, image string) (time.Duration, error) {
	pods := b.kube.CoreV1().Pods(b.ns)
	start := time.Now()
	created, err := pods.Create(ctx, b.plainPod("slow", image), metav1.CreateOptions{})
	if err != nil {
		return 0, fmt.Errorf("creating a pod of %s: %w", image, err)
	}
	defer func() { _ = pods.Delete(context.Background(), created.Name, metav1.DeleteOptions{}) }()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	lw := cache.NewListWatchFromClient(b.kube.CoreV1().RESTClient(), "pods", b.ns, fields.OneTermEqualSelector("metadata.name", created.Name))
	_, err = watchtools.Until(ctx, created.ResourceVersion, lw, func(ev watch.Event) (bool, error) {
		switch ev.Type {
		case watch.Error:
			return false, apierrors.FromObject(ev.Object)
		case watch.Deleted:
			return false, fmt.Errorf("pod %s/%s was deleted", b.ns, created.Name)
		}
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		if p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodSucceeded {
			return true, nil
		}
		// A failed pull would only be found at the timeout; a pull the
		// kubelet postponed under its own pull budget is pending, not
		// failed, and its wait belongs in the figure.
		for _, st := range cachestate.FromPod(p) {
			if st.State == wire.Failed {
				return false, fmt.Errorf("pod %s/%s of %s: %s: %s", b.ns, created.Name, image, st.Reason, st.Message)
			}
		}
		return false, nil
	})
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("waiting for pod %s/%s of %s to start: %w", b.ns, created.Name, image, err)
	}
	return took, nil
}

// plainPod is a pod of image as a workload would run it without the cache,
// its container running the warden that b.push adds to every image. The
// pull policy is the default, IfNotPresent for the random tags the bench
// pushes, so a cached image is not pulled again.
func (b *bench) plainPod(name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-", Namespace: b.ns},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: ptr(false),
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr(true), RunAsUser: ptr[int64](65532),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{Name: name, Image: image, Command: []string{"/warden"},
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}},
		},
	}
}
