// Command bench measures image-cache-daemon on the local cluster (make
// bench) and prints the figures the project is judged by, each the median
// and the spread (min-max) of -trials trials on fresh images:
//
//   - fill: wanted -> cached for 20 x 4 MiB, 10 x 64 MiB and 100 x 64 KiB
//     images, against bare sequential `crictl pull` of other fresh images of
//     the same size and against the original's model (one pod per image, no
//     pacing), with the kubelet's "pull QPS exceeded" refusals counted;
//   - warm: a node's warm-up (startup taint on, daemon replaced) until the
//     Warm condition is True and the taint is gone, against bare pulls;
//   - slow: pod start of a 256 MiB image, cached vs not, pulled through the
//     local cluster's registry behind a 100 Mbit/s link;
//   - status: latency and API requests of `kubectl imagecache status` for
//     1,000 simulated nodes x 100 images;
//   - overhead, pods, memory: one image's wanted -> cached against a bare
//     pod, prefetch pods and sandboxes per node for 100 images and per
//     resync, the daemon's RSS at rest with 1,000 ConfigMaps and 500
//     WorkflowTemplates;
//   - fleet (opt-in: about 15 minutes): node daemons reading the sources
//     themselves against node daemons reading the planner's set, at 10, 50
//     and 100 kwok-simulated nodes with 2,000 WorkflowTemplates (see
//     fleet.go).
//
// -run picks some of them (fill,warm,slow,status,overhead,pods,memory,fleet).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dcherman/image-cache-daemon/internal/ociimage"
	"github.com/dcherman/image-cache-daemon/internal/testcluster"
	"github.com/dcherman/image-cache-daemon/pkg/imagelist"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/listformat"
	"github.com/dcherman/image-cache-daemon/pkg/options"
	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/version"
)

type bench struct {
	cfg      *rest.Config
	kube     kubernetes.Interface
	registry string
	ns       string
	image    string
	warden   string
	// crictlPath and containerd (its socket) pull images bare.
	crictlPath string
	containerd string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	size := flag.Int64("size", 64, "size in MiB of the images the overhead is measured with")
	rounds := flag.Int("rounds", 3, "overhead rounds (the median is reported)")
	configMaps := flag.Int("configmaps", 1000, "ConfigMaps for the memory figure")
	templates := flag.Int("templates", 500, "WorkflowTemplates for the memory figure")
	registry := flag.String("registry", "127.0.0.1:5000", "the local registry")
	statusNodes := flag.Int("status-nodes", 1000, "simulated nodes for the status figure")
	statusImages := flag.Int("status-images", 100, "images per node for the status figure")
	statusRuns := flag.Int("status-runs", 5, "status runs per figure (the median is reported)")
	fills := flag.String("fills", "20x4MiB,10x64MiB,100x64KiB", "the cache fills to measure: N x SIZE, SIZE in KiB or MiB")
	trials := flag.Int("trials", 3, "trials of each cache fill figure (median and spread are printed)")
	crictl := flag.String("crictl", os.Getenv("CRICTL"), "crictl, for the bare pulls (make bench sets it)")
	containerd := flag.String("containerd", "/run/icd-cluster/containerd/containerd.sock", "the local cluster's containerd socket")
	warmWork := flag.String("warm", "20x4MiB", "the images of the warm-up figure: N x SIZE")
	slowSize := flag.Int64("slow-size", 256, "size in MiB of the image pulled through the slow registry")
	only := flag.String("run", "fill,warm,slow,status,overhead,pods,memory", "which figures to measure, comma-separated (fleet too: it is not in the default list)")
	fleetNodes := flag.String("fleet-nodes", "10,50,100", "simulated nodes of the fleet figure, one run each")
	fleetTemplates := flag.Int("fleet-templates", 2000, "WorkflowTemplates of the fleet figure")
	fleetTemplateKB := flag.Int("fleet-template-kb", 12, "size of each WorkflowTemplate in KiB (JSON)")
	fleetImages := flag.Int("fleet-images", 100, "wanted images of the fleet figure")
	fleetResync := flag.Duration("fleet-resync", time.Minute, "the resync period of the fleet figure's resync run (and of the planner's tag checks)")
	fleetTrials := flag.Int("fleet-trials", 3, "new-image trials per fleet run (median and spread are printed)")
	kwok := flag.String("kwok", os.Getenv("KWOK"), "kwok's controller binary, for the fleet figure (hack/kwok/build.sh prints its directory; make bench sets it)")
	daemonBin := flag.String("daemon", "bin/image-cache-daemon", "the daemon binary the fleet figure runs (make build)")
	registryLog := flag.String("registry-log", "/var/lib/icd-cluster/logs/registry.log", "the local registry's log, where the fleet figure counts the planner's manifest checks")
	flag.Parse()
	want := map[string]bool{}
	for _, f := range strings.Split(*only, ",") {
		switch f = strings.TrimSpace(f); f {
		case "fill", "warm", "slow", "status", "overhead", "pods", "memory", "fleet":
			want[f] = true
		default:
			return fmt.Errorf("-run %q: want some of fill,warm,slow,status,overhead,pods,memory,fleet", f)
		}
	}
	if *rounds < 1 || *statusRuns < 1 || *trials < 1 {
		return errors.New("-rounds, -status-runs and -trials must be at least 1")
	}
	if (want["fill"] || want["warm"]) && *crictl == "" {
		return errors.New("-crictl (or CRICTL) is needed for the bare pulls: make bench sets it")
	}

	imageRef, err := os.ReadFile("bin/image-ref")
	if err != nil && len(want) == 1 && want["fleet"] {
		// The fleet's nodes are simulated: they pull nothing, the daemon
		// image included, so its name is all the figure needs.
		imageRef, err = []byte(version.Image(version.String())), nil
	}
	if err != nil {
		return fmt.Errorf("reading bin/image-ref (make image writes it): %w", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		return fmt.Errorf("KUBECONFIG: %w", err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	b := &bench{cfg: cfg, kube: kube, registry: *registry, ns: "icd-bench", image: strings.TrimSpace(string(imageRef)),
		warden: "bin/warden", crictlPath: *crictl, containerd: *containerd}
	ctx := context.Background()

	// Before the daemon is installed: its DaemonSet would put pods on the
	// simulated nodes.
	if want["status"] {
		if err := b.statusBench(ctx, *statusNodes, *statusImages, *statusRuns); err != nil {
			return fmt.Errorf("status: %w", err)
		}
	}
	if want["fleet"] {
		var nodes []int
		for _, n := range strings.Split(*fleetNodes, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(n))
			if err != nil || v < 1 {
				return fmt.Errorf("-fleet-nodes %q: want positive numbers, comma-separated", *fleetNodes)
			}
			nodes = append(nodes, v)
		}
		if *fleetTrials < 1 || *fleetImages < 1 || *fleetTemplates < 1 {
			return errors.New("-fleet-trials, -fleet-images and -fleet-templates must be at least 1")
		}
		if *fleetResync < 10*time.Second {
			return errors.New("-fleet-resync must be at least 10s (the daemon's own minimum)")
		}
		err := b.fleetBench(ctx, fleetConfig{nodes: nodes, templates: *fleetTemplates, templateKB: *fleetTemplateKB,
			images: *fleetImages, resync: *fleetResync, trials: *fleetTrials, kwok: *kwok, daemon: *daemonBin,
			kubeconfig: os.Getenv("KUBECONFIG"), registryLog: *registryLog})
		if err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
	}
	if !want["fill"] && !want["warm"] && !want["slow"] && !want["overhead"] && !want["pods"] && !want["memory"] {
		return nil
	}

	opts := install.DefaultOptions("bench")
	opts.Namespace, opts.Image, opts.ResyncPeriod = b.ns, b.image, 0
	if err := b.apply(ctx, opts); err != nil {
		return err
	}
	defer b.uninstall(opts)

	if want["fill"] {
		works, err := parseWorks(*fills)
		if err != nil {
			return fmt.Errorf("-fills: %w", err)
		}
		if err := b.fill(ctx, opts, works, *trials); err != nil {
			return fmt.Errorf("cache fill: %w", err)
		}
	}
	if want["warm"] {
		works, err := parseWorks(*warmWork)
		if err != nil || len(works) != 1 {
			return fmt.Errorf("-warm %q: want one N x SIZE (%v)", *warmWork, err)
		}
		if err := b.warmUp(ctx, opts, works[0], *trials); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	if want["slow"] {
		if err := b.slowRegistry(ctx, *slowSize, *trials); err != nil {
			return fmt.Errorf("slow registry: %w", err)
		}
	}
	if want["overhead"] {
		ratio, cached, bare, err := b.overhead(ctx, *size<<20, *rounds)
		if err != nil {
			return fmt.Errorf("overhead: %w", err)
		}
		fmt.Printf("overhead: image of %d MiB: wanted->cached %s, bare pod %s: ratio %.2f (median of %d; goal <= 1.2)\n",
			*size, cached.Round(time.Millisecond), bare.Round(time.Millisecond), ratio, *rounds)
	}
	if want["pods"] || want["memory"] {
		// The memory figure reuses the 100 images cached here.
		if err := b.podsPerNode(ctx, opts); err != nil {
			return fmt.Errorf("pods per node: %w", err)
		}
	}
	if want["memory"] {
		if err := b.memory(ctx, *configMaps, *templates); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
	}
	return nil
}

func (b *bench) apply(ctx context.Context, o install.Options) error {
	a, err := testcluster.Applier(b.cfg, b.kube)
	if err != nil {
		return err
	}
	objs, err := install.Objects(o)
	if err != nil {
		return err
	}
	if _, err := a.Apply(ctx, objs); err != nil {
		return err
	}
	return testcluster.WaitRollout(ctx, b.kube, o.Namespace, 3*time.Minute)
}

func (b *bench) uninstall(o install.Options) {
	ctx := context.Background()
	if a, err := testcluster.Applier(b.cfg, b.kube); err == nil {
		_, _ = a.Uninstall(ctx, o.Namespace)
	}
	_ = b.kube.CoreV1().Namespaces().Delete(ctx, "icd-bench-sources", metav1.DeleteOptions{})
	_ = testcluster.DeleteArgoCRDs(ctx, b.cfg)
}

// push pushes an image of size bytes of fresh random content plus the
// warden (so a bare pod has something to run) and returns its reference.
func (b *bench) push(ctx context.Context, repo string, size int64) (string, error) {
	img, err := ociimage.Random(size, uint64(rand.Int()), 1)
	if err != nil {
		return "", err
	}
	withWarden, err := ociimage.Append(img, []ociimage.File{{Path: "/warden", Mode: 0o755, HostPath: b.warden}})
	if err != nil {
		return "", err
	}
	ref := b.registry + "/" + repo + ":" + rand.String(8)
	_, err = ociimage.Push(ctx, withWarden, ref)
	return ref, err
}

// overhead times, per round, a bare pod of a fresh image against the
// daemon caching another fresh image of the same size.
func (b *bench) overhead(ctx context.Context, size int64, rounds int) (float64, time.Duration, time.Duration, error) {
	var ratios []float64
	var cachedAll, bareAll []time.Duration
	for r := 0; r < rounds; r++ {
		bareImg, err := b.push(ctx, "bench/bare", size)
		if err != nil {
			return 0, 0, 0, err
		}
		cacheImg, err := b.push(ctx, "bench/cached", size)
		if err != nil {
			return 0, 0, 0, err
		}
		bare, err := b.barePod(ctx, bareImg)
		if err != nil {
			return 0, 0, 0, err
		}
		start := time.Now()
		if _, err := imagelist.Edit(ctx, b.kube, b.ns, install.DefaultConfigMap, func(cur []string) []string { return append(cur, cacheImg) }); err != nil {
			return 0, 0, 0, err
		}
		if err := b.waitCached(ctx, b.ns, []string{cacheImg}); err != nil {
			return 0, 0, 0, err
		}
		cached := time.Since(start)
		ratios = append(ratios, cached.Seconds()/bare.Seconds())
		cachedAll, bareAll = append(cachedAll, cached), append(bareAll, bare)
		fmt.Printf("  round %d: cached in %s, bare pod in %s\n", r+1, cached.Round(time.Millisecond), bare.Round(time.Millisecond))
	}
	i := medianIndex(ratios)
	return ratios[i], cachedAll[i], bareAll[i], nil
}

func medianIndex(v []float64) int {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, c int) bool { return v[idx[a]] < v[idx[c]] })
	return idx[len(idx)/2]
}

// barePod runs image in a plain pod (what a workload would do without the
// cache) and returns the time until its container finished.
func (b *bench) barePod(ctx context.Context, image string) (time.Duration, error) {
	pod := b.plainPod("bare", image)
	start := time.Now()
	created, err := b.kube.CoreV1().Pods(b.ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return 0, err
	}
	defer func() {
		_ = b.kube.CoreV1().Pods(b.ns).Delete(context.Background(), created.Name, metav1.DeleteOptions{})
	}()
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := b.kube.CoreV1().Pods(b.ns).Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if p.Status.Phase == corev1.PodFailed {
			return false, errors.New("the bare pod failed")
		}
		return p.Status.Phase == corev1.PodSucceeded, nil
	})
	return time.Since(start), err
}

// waitCached follows the prefetch pods of the installation in ns with a
// watch until every image is cached (on the one node of the local cluster).
func (b *bench) waitCached(ctx context.Context, ns string, images []string) error {
	_, err := testcluster.WaitCached(ctx, b.kube, ns, images, 10*time.Minute)
	return err
}

// metric reads one value from the daemon's /metrics through the API
// server's pod proxy.
func (b *bench) metric(ctx context.Context, name string) (float64, error) {
	pods, err := b.kube.CoreV1().Pods(b.ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=daemon"})
	if err != nil || len(pods.Items) == 0 {
		return 0, fmt.Errorf("no daemon pod: %v", err)
	}
	raw, err := b.kube.CoreV1().Pods(b.ns).ProxyGet("http", pods.Items[0].Name, "8080", "metrics", nil).DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading metrics: %w", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	return 0, fmt.Errorf("no metric %s", name)
}

// podsPerNode wants 100 images and counts the prefetch pods and sandboxes
// the node gets, then the sandboxes one resync makes.
func (b *bench) podsPerNode(ctx context.Context, o install.Options) error {
	var images []string
	for i := 0; i < 100; i++ {
		img, err := ociimage.Random(64<<10, uint64(rand.Int()), 1)
		if err != nil {
			return err
		}
		ref := fmt.Sprintf("%s/bench/hundred-%03d:%s", b.registry, i, rand.String(6))
		if _, err := ociimage.Push(ctx, img, ref); err != nil {
			return err
		}
		images = append(images, ref)
	}
	before, err := b.metric(ctx, "image_cache_prefetch_pods_created_total")
	if err != nil {
		return err
	}
	if _, err := imagelist.Edit(ctx, b.kube, b.ns, install.DefaultConfigMap, func([]string) []string { return images }); err != nil {
		return err
	}
	start := time.Now()
	if err := b.waitCached(ctx, b.ns, images); err != nil {
		return err
	}
	took := time.Since(start)
	filled, _ := testcluster.PrefetchPods(ctx, b.kube, b.ns)
	// A paced fill makes small pods; the daemon merges them once all are
	// cached: count what the node keeps, and the sandboxes it took.
	keep := (len(images) + options.NewOptions().BatchSize - 1) / options.NewOptions().BatchSize
	err = wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := testcluster.PrefetchPods(ctx, b.kube, b.ns)
		return err == nil && len(pods) <= keep, nil
	})
	if err != nil {
		return fmt.Errorf("the prefetch pods of 100 images were not merged into %d: %w", keep, err)
	}
	merged := time.Since(start)
	after, err := b.metric(ctx, "image_cache_prefetch_pods_created_total")
	if err != nil {
		return err
	}
	pods, _ := b.metric(ctx, "image_cache_prefetch_pods")
	fmt.Printf("100 images on 1 node: all cached in %s in %d prefetch pods; merged into %d pods after %s; %d pod sandboxes created in all\n",
		took.Round(time.Millisecond), len(filled), int(pods), merged.Round(time.Millisecond), int(after-before))

	// One resync: every finished pod is replaced once.
	o.ResyncPeriod = 30 * time.Second
	if err := b.apply(ctx, o); err != nil {
		return err
	}
	before, err = b.metric(ctx, "image_cache_prefetch_pods_created_total")
	if err != nil {
		return err
	}
	time.Sleep(o.ResyncPeriod + 10*time.Second)
	after, err = b.metric(ctx, "image_cache_prefetch_pods_created_total")
	if err != nil {
		return err
	}
	fmt.Printf("one resync of 100 images: %d pod sandboxes created\n", int(after-before))
	o.ResyncPeriod = 0
	return b.apply(ctx, o)
}

// memory creates many sources whose images are already cached and reads
// the daemon's RSS once it has seen them all.
func (b *bench) memory(ctx context.Context, configMaps, templates int) error {
	if err := testcluster.InstallArgoCRDs(ctx, b.cfg); err != nil {
		return err
	}
	argo, err := argoclient.NewForConfig(b.cfg)
	if err != nil {
		return err
	}
	cur, err := b.metric(ctx, "image_cache_wanted_images")
	if err != nil {
		return err
	}
	list, _ := b.kube.CoreV1().ConfigMaps(b.ns).Get(ctx, install.DefaultConfigMap, metav1.GetOptions{})
	pool, _, _ := listformat.ParseImageList(list.Data[source.DefaultKey])
	if len(pool) < 20 {
		return fmt.Errorf("want at least 20 cached images to reuse, have %d", len(pool))
	}
	ns := "icd-bench-sources"
	if _, err := b.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	start := time.Now()
	for i := 0; i < configMaps; i++ {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("list-%04d", i), Labels: imagelist.Labels},
			Data:       map[string]string{source.DefaultKey: listformat.Render([]string{pool[i%20], pool[(i+7)%20]})},
		}
		if _, err := b.kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	for i := 0; i < templates; i++ {
		var ts []wfv1.Template
		for j := 0; j < 5; j++ {
			ts = append(ts, wfv1.Template{Name: fmt.Sprintf("step-%d", j), Container: &corev1.Container{Image: pool[(i+j)%20],
				Command: []string{"sh", "-c"}, Args: []string{strings.Repeat("echo building step; ", 20)}}})
		}
		wt := &wfv1.WorkflowTemplate{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pipeline-%04d", i)},
			Spec: wfv1.WorkflowSpec{Entrypoint: "step-0", Templates: ts}}
		if _, err := argo.ArgoprojV1alpha1().WorkflowTemplates(ns).Create(ctx, wt, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	fmt.Printf("created %d ConfigMaps and %d WorkflowTemplates in %s\n", configMaps, templates, time.Since(start).Round(time.Millisecond))
	// At rest: the daemon has read them all (the wanted set is unchanged,
	// every image was cached already) and nothing is moving.
	time.Sleep(30 * time.Second)
	rss, err := b.metric(ctx, "process_resident_memory_bytes")
	if err != nil {
		return err
	}
	heap, _ := b.metric(ctx, "go_memstats_heap_inuse_bytes")
	wanted, _ := b.metric(ctx, "image_cache_wanted_images")
	fmt.Printf("daemon at rest with %d ConfigMaps and %d WorkflowTemplates (%d wanted images, %d before): RSS %.1f MiB, heap in use %.1f MiB (goal RSS < 50 MiB)\n",
		configMaps+1, templates, int(wanted), int(cur), rss/(1<<20), heap/(1<<20))
	return nil
}

func ptr[T any](v T) *T { return &v }
