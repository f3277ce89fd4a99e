package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/dcherman/image-cache-daemon/internal/ociimage"
	"github.com/dcherman/image-cache-daemon/internal/testcluster"
	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/imagelist"
	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/resolve"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// The fleet figure: node daemons at 10, 50 and 100 simulated nodes, each a
// real image-cache-daemon process run outside the cluster against the local
// cluster's API server, with kwok (its controller only) keeping the Nodes
// Ready and writing the prefetch pods' statuses as a kubelet would once
// every image is pulled. BEFORE: every node daemon reads the sources itself
// (no --from-planner); AFTER: one planner reads them and the node daemons
// read its wanted set (--from-planner). Measured in the same run:
//   - bytes the API server sent, per node daemon, for a start (a relist:
//     every prefetch pod is already there and cached, so nothing is created)
//     and per WorkflowTemplate edit, from the API server's own /metrics
//     (apiserver_response_sizes_sum for requests, by resource;
//     apiserver_watch_events_sizes_sum for watch events, by resource), less the
//     background of the same length measured just before (kwok's
//     heartbeats), divided by the nodes;
//   - each node daemon's RSS and CPU, from /proc of the processes started;
//   - a new image in the labelled ConfigMap -> every simulated node has a
//     prefetch pod whose container for it terminated with exit 0 and an
//     imageID (what the daemon reads as cached);
//   - at the most nodes, one resync period: the planner's manifest checks
//     counted in the registry's access log (its user agent), and the
//     prefetch containers the node daemons create with imagePullPolicy
//     Always (each one a registry request on a real node).

const (
	fleetNamespace = "icd-fleet"
	fleetSources   = "icd-fleet-sources"
	// fleetLabel marks the simulated Nodes, so that cleanup finds them.
	fleetLabel = "icd-bench"
	// kwokAnnotation selects the Nodes kwok manages
	// (--manage-nodes-with-annotation-selector).
	kwokAnnotation = "kwok.x-k8s.io/node"
	// fleetPorts: daemon i serves metrics on fleetPorts+2i and health on
	// fleetPorts+2i+1 (loopback); the planner on fleetPorts-2 and -1.
	fleetPorts = 31000
)

type fleetConfig struct {
	nodes       []int
	templates   int
	templateKB  int
	images      int
	resync      time.Duration
	trials      int
	kwok        string
	daemon      string
	kubeconfig  string
	registryLog string
}

type fleet struct {
	b   *bench
	cfg fleetConfig
	// fast has no client-side rate limit: the setup's writes are bounded
	// by the errgroups that send them.
	fast kubernetes.Interface
	dir  string

	images []string // the wanted images, normalised
	// trial are the images the latency trials add, one each.
	trial []string
	// ids are the imageIDs kwok reports for every image above.
	ids       map[string]string
	nodeNames []string

	kwok    *proc
	planner *proc
	daemons []*proc

	pods     cache.SharedIndexInformer
	stopPods chan struct{}
	// trace follows the latency trial under way.
	trace trace
	// since and always count, for the pods added from since on, their
	// containers with imagePullPolicy Always.
	mu     sync.Mutex
	since  time.Time
	always int
}

// proc is a process the fleet started; it is stopped by its PID.
type proc struct {
	name   string
	cmd    *exec.Cmd
	health string
	done   chan struct{}
	// startTicks are its CPU ticks (user+system) when it was started: 0.
	log *os.File
}

type fleetRun struct {
	nodes int
	mode  string
	// start and edit are bytes per node daemon, by bucket; startTook is
	// until every daemon was ready.
	start     map[string]float64
	startTook time.Duration
	edit      []float64
	// editWrites and imageWrites are the API writes per node daemon per
	// template edit and per new image (until it is cached on every node);
	// restWrites per daemon per minute at rest.
	editWrites, imageWrites, restWrites []float64
	rss, anon                           []float64 // MiB, per daemon
	startCPU                            []float64 // CPU seconds per daemon until ready
	restCPU                             []float64 // per cent of one core, per daemon, at rest
	latency                             []time.Duration
	steps                               []traceSteps // of each latency trial
}

func (b *bench) fleetBench(ctx context.Context, cfg fleetConfig) error {
	if cfg.kwok == "" {
		return errors.New("-kwok (or KWOK) is needed: hack/kwok/build.sh builds it (make bench sets it)")
	}
	maxNodes := 0
	for _, n := range cfg.nodes {
		maxNodes = max(maxNodes, n)
	}
	fast := rest.CopyConfig(b.cfg)
	fast.QPS = -1
	kube, err := kubernetes.NewForConfig(fast)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "icd-fleet-")
	if err != nil {
		return err
	}
	f := &fleet{b: b, cfg: cfg, fast: kube, dir: dir, ids: map[string]string{}}
	defer f.cleanup()
	fmt.Printf("fleet: logs of kwok, the planner and the daemons in %s\n", dir)

	setup := time.Now()
	if err := f.install(ctx); err != nil {
		return err
	}
	if err := f.pushImages(ctx, len(cfg.nodes)*2*cfg.trials); err != nil {
		return err
	}
	if err := f.createTemplates(ctx); err != nil {
		return err
	}
	if err := f.startKwok(); err != nil {
		return err
	}
	if err := f.createNodes(ctx, maxNodes); err != nil {
		return err
	}
	if err := f.watchPods(); err != nil {
		return err
	}
	fmt.Printf("  setup: %d simulated nodes Ready, %d WorkflowTemplates, %d images, in %s\n",
		maxNodes, cfg.templates, len(f.images), time.Since(setup).Round(time.Second))

	// Fill every node's cache once (through the planner), so that each
	// measured start below is a relist and nothing more.
	fill := time.Now()
	if err := f.startPlanner(cfg.resync); err != nil {
		return err
	}
	if err := f.startDaemons(ctx, maxNodes, true, time.Hour); err != nil {
		return err
	}
	if err := f.waitCached(ctx, f.images, maxNodes, 10*time.Minute); err != nil {
		return fmt.Errorf("filling %d nodes: %w", maxNodes, err)
	}
	f.stopDaemons()
	f.stop(f.planner)
	f.planner = nil
	fmt.Printf("  filled %d nodes x %d images in %s\n", maxNodes, len(f.images), time.Since(fill).Round(time.Second))

	var runs []*fleetRun
	var resyncs [2]resyncResult
	for i, mode := range []string{"before", "after"} {
		planner := mode == "after"
		if planner {
			if err := f.startPlanner(cfg.resync); err != nil {
				return err
			}
			if err := f.waitPlannerReady(ctx); err != nil {
				return err
			}
			time.Sleep(5 * time.Second)
			rss, anon := memory(f.planner)
			fmt.Printf("  planner ready: RSS %.1f MiB (anon %.1f), CPU %.2f s to read the sources and publish\n", rss, anon, cpuSeconds(f.planner))
		}
		for _, n := range cfg.nodes {
			r, err := f.measure(ctx, n, planner)
			if err != nil {
				return fmt.Errorf("%s, %d nodes: %w", mode, n, err)
			}
			runs = append(runs, r)
		}
		res, err := f.resyncRun(ctx, maxNodes, planner)
		if err != nil {
			return fmt.Errorf("%s, one resync: %w", mode, err)
		}
		resyncs[i] = res
		if planner {
			f.stop(f.planner)
			f.planner = nil
		}
	}
	f.print(runs, resyncs, maxNodes)
	return nil
}

// install creates the installation's namespace and ConfigMaps (the image
// list, the warden) without its workloads: the node daemons and the
// planner run here, outside the cluster, one process each.
func (f *fleet) install(ctx context.Context) error {
	opts := install.DefaultOptions("bench")
	opts.Namespace, opts.Image = fleetNamespace, f.b.image
	objs, err := install.Objects(opts)
	if err != nil {
		return err
	}
	var keep []runtime.Object
	for _, o := range objs {
		switch o.(type) {
		case *corev1.Namespace, *corev1.ConfigMap:
			keep = append(keep, o)
		}
	}
	a, err := testcluster.Applier(f.b.cfg, f.b.kube)
	if err != nil {
		return err
	}
	if _, err := a.Apply(ctx, keep); err != nil {
		return fmt.Errorf("installing the namespace and ConfigMaps: %w", err)
	}
	if _, err := f.fast.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetSources}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return testcluster.InstallArgoCRDs(ctx, f.b.cfg)
}

// pushImages pushes the wanted images and those of the latency trials (a
// few KiB each: nothing pulls them) and records the imageID kwok reports
// for each: the registry's digest, as a kubelet would.
func (f *fleet) pushImages(ctx context.Context, trials int) error {
	total := f.cfg.images + trials
	refs := make([]string, total)
	ids := make([]string, total)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	run := rand.String(5)
	for i := range total {
		g.Go(func() error {
			img, err := ociimage.Random(4<<10, uint64(rand.Int()), 1)
			if err != nil {
				return err
			}
			repo := fmt.Sprintf("%s/bench/fleet-%03d", f.b.registry, i)
			if i >= f.cfg.images {
				repo = fmt.Sprintf("%s/bench/fleet-new-%02d", f.b.registry, i-f.cfg.images)
			}
			digest, err := ociimage.Push(gctx, img, repo+":"+run)
			if err != nil {
				return err
			}
			if refs[i], err = imageref.Normalize(repo + ":" + run); err != nil {
				return err
			}
			if j := strings.LastIndex(digest, "@"); j >= 0 {
				digest = digest[j+1:]
			}
			ids[i] = repo + "@" + digest
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i, ref := range refs {
		f.ids[ref] = ids[i]
	}
	f.images, f.trial = refs[:f.cfg.images], refs[f.cfg.images:]
	return nil
}

// createTemplates creates the WorkflowTemplates, each about templateKB
// KiB in JSON with 6 steps naming images of the pool; the step scripts are
// varied text, so that they compress about as real scripts do.
func (f *fleet) createTemplates(ctx context.Context) error {
	argo, err := argoclient.NewForConfig(noLimit(f.b.cfg))
	if err != nil {
		return err
	}
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range f.cfg.templates {
		g.Go(func() error {
			wt := f.template(i)
			_, err := argo.ArgoprojV1alpha1().WorkflowTemplates(fleetSources).Create(gctx, wt, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return nil
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("creating WorkflowTemplates: %w", err)
	}
	size, _ := json.Marshal(f.template(0))
	fmt.Printf("  created %d WorkflowTemplates of %.1f KiB in JSON (%.1f MB) in %s\n", f.cfg.templates,
		float64(len(size))/1024, float64(len(size)*f.cfg.templates)/1e6, time.Since(start).Round(time.Second))
	return nil
}

var scriptWords = []string{"build", "test", "lint", "package", "upload", "verify", "cache", "restore", "deploy", "notify", "shard", "matrix"}

func (f *fleet) template(i int) *wfv1.WorkflowTemplate {
	r := mrand.New(mrand.NewPCG(uint64(i), 17))
	const steps = 6
	build := func(pad int) *wfv1.WorkflowTemplate {
		var ts []wfv1.Template
		for j := range steps {
			var script strings.Builder
			for script.Len() < pad/steps {
				fmt.Fprintf(&script, "run-task --step=%s --id=%08x --shard=%d/%d || exit 1\n",
					scriptWords[r.IntN(len(scriptWords))], r.Uint32(), r.IntN(64), 64)
			}
			ts = append(ts, wfv1.Template{Name: fmt.Sprintf("step-%d", j), Container: &corev1.Container{
				Image:   f.images[(i*7+j*13)%len(f.images)],
				Command: []string{"sh", "-c"}, Args: []string{script.String()}}})
		}
		return &wfv1.WorkflowTemplate{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pipeline-%04d", i), Namespace: fleetSources},
			Spec: wfv1.WorkflowSpec{Entrypoint: "step-0", Templates: ts}}
	}
	bare, _ := json.Marshal(build(0))
	return build(max(0, f.cfg.templateKB<<10-len(bare)))
}

func noLimit(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.QPS = -1
	return c
}

// kwokStage makes a prefetch pod on a simulated node finish as a kubelet
// finishes it once every image is pulled: each container terminated with
// exit 0 and the imageID the registry's digest gives (an image not pushed
// by this benchmark gets none, which the daemon reads as cached without a
// digest). It replaces kwok's own pod stages, which leave containers
// running without an imageID.
func (f *fleet) kwokStage() string {
	keys := make([]string, 0, len(f.ids))
	for k := range f.ids {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var dict strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&dict, " %q %q", k, f.ids[k])
	}
	return `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: icd-prefetch-cached
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchLabels:
      ` + wire.LabelComponent + `: ` + wire.ComponentPrefetch + `
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Pending']
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $ids := dict` + dict.String() + ` }}
      conditions:
      - {lastTransitionTime: {{ $now | Quote }}, status: "True", type: PodScheduled}
      - {lastTransitionTime: {{ $now | Quote }}, status: "True", type: Initialized}
      - {lastTransitionTime: {{ $now | Quote }}, status: "False", reason: PodCompleted, type: Ready}
      - {lastTransitionTime: {{ $now | Quote }}, status: "False", reason: PodCompleted, type: ContainersReady}
      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        state: {terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}}
      {{ end }}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        imageID: {{ get $ids .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: false
        restartCount: 0
        state: {terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}}
      {{ end }}
      phase: Succeeded
      startTime: {{ $now | Quote }}
`
}

// startKwok runs kwok's controller against the cluster, managing only the
// Nodes with the kwok annotation: its own node stages (initialize,
// heartbeat), its pod-delete stage (no kubelet confirms a deletion), and
// kwokStage for prefetch pods.
func (f *fleet) startKwok() error {
	stages := filepath.Join(filepath.Dir(f.cfg.kwok), "stages")
	var config strings.Builder
	for _, s := range []string{"node/fast/node-initialize.yaml", "node/heartbeat/node-heartbeat.yaml", "pod/fast/pod-delete.yaml"} {
		raw, err := os.ReadFile(filepath.Join(stages, s))
		if err != nil {
			return fmt.Errorf("kwok's stages (hack/kwok/build.sh copies them): %w", err)
		}
		config.Write(raw)
		config.WriteString("\n---\n")
	}
	config.WriteString(f.kwokStage())
	path := filepath.Join(f.dir, "kwok.yaml")
	if err := os.WriteFile(path, []byte(config.String()), 0o644); err != nil {
		return err
	}
	p, err := f.start("kwok", f.cfg.kwok, []string{"--kubeconfig", f.cfg.kubeconfig, "--config", path,
		"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=" + kwokAnnotation + "=fake",
		"--server-address=127.0.0.1:10247"}, "")
	f.kwok = p
	return err
}

// createNodes creates n Nodes for kwok (tainted, so that no real pod lands
// there) with a daemon pod bound to each, which the daemon process for
// that node reads as its own (--pod-name); and waits until they are Ready.
func (f *fleet) createNodes(ctx context.Context, n int) error {
	caps := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods: resource.MustParse("110")}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range n {
		name := fmt.Sprintf("icd-fleet-%03d", i)
		f.nodeNames = append(f.nodeNames, name)
		g.Go(func() error {
			node := &corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{fleetLabel: "fleet", "type": "kwok"},
					Annotations: map[string]string{kwokAnnotation: "fake"}},
				Spec:   corev1.NodeSpec{Taints: []corev1.Taint{{Key: kwokAnnotation, Value: "fake", Effect: corev1.TaintEffectNoSchedule}}},
				Status: corev1.NodeStatus{Capacity: caps, Allocatable: caps},
			}
			if _, err := f.fast.CoreV1().Nodes().Create(gctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
			return f.ownPod(gctx, "daemon-"+name, "daemon", name)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := f.ownPod(ctx, "planner", "planner", f.nodeNames[0]); err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		nodes, err := f.fast.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: fleetLabel + "=fleet"})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, nd := range nodes.Items {
			for _, c := range nd.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready >= n, nil
	})
}

// ownPod creates the pod a daemon process reads as its own: bound to a
// simulated node (where kwok leaves it pending: nothing runs it), with the
// daemon image, so that the prefetch pods take the warden from there, and
// tolerating every taint, so that they do too.
func (f *fleet) ownPod(ctx context.Context, name, component, node string) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: fleetNamespace,
			Labels: map[string]string{wire.LabelPartOf: wire.PartOf, wire.LabelComponent: component}},
		Spec: corev1.PodSpec{NodeName: node, Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			// The install namespace enforces the restricted profile.
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr(true), RunAsUser: ptr[int64](install.UID),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{Name: install.ContainerName, Image: f.b.image, Command: []string{"image-cache-daemon"},
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}}},
	}
	_, err := f.fast.CoreV1().Pods(fleetNamespace).Create(ctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// watchPods follows the prefetch pods, for the waits and the counts.
func (f *fleet) watchPods() error {
	lw := cache.NewFilteredListWatchFromClient(f.b.kube.CoreV1().RESTClient(), "pods", fleetNamespace, func(o *metav1.ListOptions) {
		o.LabelSelector = labels.SelectorFromSet(wire.PrefetchLabels()).String()
	})
	f.pods = cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	_, err := f.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		f.trace.seePod(pod)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.since.IsZero() || pod.CreationTimestamp.Time.Before(f.since) {
			return
		}
		for _, c := range pod.Spec.Containers {
			if c.ImagePullPolicy == corev1.PullAlways {
				f.always++
			}
		}
	}, UpdateFunc: func(_, obj any) {
		if pod, ok := obj.(*corev1.Pod); ok {
			f.trace.seePod(pod)
		}
	}})
	if err != nil {
		return err
	}
	// The published set, for the trace of each trial (after: the planner's).
	sets := cache.NewSharedIndexInformer(cache.NewFilteredListWatchFromClient(f.b.kube.CoreV1().RESTClient(), "configmaps", fleetNamespace, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", wanted.ConfigMap).String()
	}), &corev1.ConfigMap{}, 0, cache.Indexers{})
	seeSet := func(obj any) {
		if cm, ok := obj.(*corev1.ConfigMap); ok {
			f.trace.seeSet(cm)
		}
	}
	if _, err := sets.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: seeSet, UpdateFunc: func(_, obj any) { seeSet(obj) }}); err != nil {
		return err
	}
	f.stopPods = make(chan struct{})
	go sets.Run(f.stopPods)
	go f.pods.Run(f.stopPods)
	if !cache.WaitForCacheSync(f.stopPods, f.pods.HasSynced) {
		return errors.New("the prefetch pod informer did not sync")
	}
	return nil
}

// cachedOn counts the first n nodes on which every image is cached, and
// the cached images that have no digest (kwok's stage gave none).
func (f *fleet) cachedOn(images []string, n int) (nodes, noDigest int) {
	want := map[string]bool{}
	for _, img := range images {
		want[img] = true
	}
	have := map[string]map[string]bool{}
	for _, obj := range f.pods.GetStore().List() {
		pod := obj.(*corev1.Pod)
		if pod.DeletionTimestamp != nil {
			continue
		}
		for _, st := range cachestate.FromPod(pod) {
			if st.State != wire.Cached || !want[st.Image] {
				continue
			}
			if st.Digest == "" {
				noDigest++
			}
			if have[st.Node] == nil {
				have[st.Node] = map[string]bool{}
			}
			have[st.Node][st.Image] = true
		}
	}
	for _, node := range f.nodeNames[:n] {
		if len(have[node]) == len(want) {
			nodes++
		}
	}
	return nodes, noDigest
}

func (f *fleet) waitCached(ctx context.Context, images []string, n int, timeout time.Duration) error {
	var nodes, noDigest int
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		nodes, noDigest = f.cachedOn(images, n)
		return nodes == n, nil
	})
	if noDigest > 0 {
		fmt.Printf("  warning: %d cached images have no digest in their imageID\n", noDigest)
	}
	if err != nil {
		return fmt.Errorf("%d of %d nodes have every image cached: %w", nodes, n, err)
	}
	return nil
}

// start runs a process of the fleet, its output in dir/name.log; health is
// its /readyz address ("" none). Pdeathsig: it does not outlive the bench.
func (f *fleet) start(name, bin string, args []string, health string) (*proc, error) {
	log, err := os.Create(filepath.Join(f.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	// As the chart runs the daemon and the planner.
	cmd.Env = append(os.Environ(), "GOMEMLIMIT=40MiB")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, health: health, done: make(chan struct{}), log: log}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop ends p by its PID: SIGTERM, then SIGKILL after 15 s.
func (f *fleet) stop(p *proc) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
}

func (f *fleet) startPlanner(resync time.Duration) error {
	p, err := f.start("planner", f.cfg.daemon, []string{"planner", "--kubeconfig", f.cfg.kubeconfig,
		"--pod-name", "planner", "--pod-namespace", fleetNamespace, "--node-name", "none",
		"--resync-period", resync.String(),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", fleetPorts-2),
		"--health-bind-address", fmt.Sprintf("127.0.0.1:%d", fleetPorts-1)}, fmt.Sprintf("127.0.0.1:%d", fleetPorts-1))
	f.planner = p
	return err
}

func (f *fleet) waitPlannerReady(ctx context.Context) error {
	return f.waitReady(ctx, []*proc{f.planner})
}

// startDaemons starts a node daemon for each of the first n nodes.
func (f *fleet) startDaemons(ctx context.Context, n int, fromPlanner bool, resync time.Duration) error {
	for i := range n {
		args := []string{"--kubeconfig", f.cfg.kubeconfig, "--node-name", f.nodeNames[i],
			"--pod-name", "daemon-" + f.nodeNames[i], "--pod-namespace", fleetNamespace,
			"--resync-period", resync.String(),
			// Simulated nodes pull nothing: no kubelet pull budget to pace
			// under, so a fill is one round of pods.
			"--registry-pull-qps=0",
			"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", fleetPorts+2*i),
			"--health-bind-address", fmt.Sprintf("127.0.0.1:%d", fleetPorts+2*i+1)}
		if fromPlanner {
			args = append(args, "--from-planner")
		}
		p, err := f.start(fmt.Sprintf("daemon-%03d", i), f.cfg.daemon, args, fmt.Sprintf("127.0.0.1:%d", fleetPorts+2*i+1))
		if err != nil {
			return err
		}
		f.daemons = append(f.daemons, p)
	}
	return f.waitReady(ctx, f.daemons)
}

// waitReady waits until every process answers /readyz.
func (f *fleet) waitReady(ctx context.Context, procs []*proc) error {
	client := &http.Client{Timeout: 2 * time.Second}
	pending := append([]*proc(nil), procs...)
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 5*time.Minute, true, func(context.Context) (bool, error) {
		var left []*proc
		for _, p := range pending {
			select {
			case <-p.done:
				return false, fmt.Errorf("%s exited: see %s", p.name, p.log.Name())
			default:
			}
			resp, err := client.Get("http://" + p.health + "/readyz")
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if err != nil || resp.StatusCode != http.StatusOK {
				left = append(left, p)
			}
		}
		pending = left
		return len(pending) == 0, nil
	})
}

// stopDaemons stops the node daemons, all at once.
func (f *fleet) stopDaemons() {
	var wg sync.WaitGroup
	for _, p := range f.daemons {
		wg.Go(func() { f.stop(p) })
	}
	wg.Wait()
	f.daemons = nil
}

// measure starts n node daemons and takes the run's figures, then stops
// them.
func (f *fleet) measure(ctx context.Context, n int, fromPlanner bool) (*fleetRun, error) {
	mode := "before"
	if fromPlanner {
		mode = "after"
	}
	r := &fleetRun{nodes: n, mode: mode}
	// The background (kwok's heartbeats, the cluster's own controllers).
	const bgWindow = 5 * time.Second
	bg0, err := f.apiBytes(ctx)
	if err != nil {
		return nil, err
	}
	time.Sleep(bgWindow)
	bg1, err := f.apiBytes(ctx)
	if err != nil {
		return nil, err
	}
	bgRate := scale(sub(bg1, bg0), 1/bgWindow.Seconds())

	s0, err := f.apiBytes(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	err = f.startDaemons(ctx, n, fromPlanner, time.Hour)
	r.startTook = time.Since(start)
	if err != nil {
		f.stopDaemons()
		return nil, err
	}
	// Settle: a daemon is ready once its reads have synced; its first sync
	// of the prefetch pods follows.
	time.Sleep(5 * time.Second)
	s1, err := f.apiBytes(ctx)
	if err != nil {
		return nil, err
	}
	took := time.Since(start)
	r.start = scale(sub(sub(s1, s0), scale(bgRate, took.Seconds())), 1/float64(n))
	for _, p := range f.daemons {
		r.startCPU = append(r.startCPU, cpuSeconds(p))
	}

	// At rest: CPU over a window, then memory.
	const restWindow = 20 * time.Second
	cpu0 := make([]float64, len(f.daemons))
	for i, p := range f.daemons {
		cpu0[i] = cpuSeconds(p)
	}
	w0 := f.daemonWrites(ctx)
	time.Sleep(restWindow)
	w1 := f.daemonWrites(ctx)
	for i := range w1 {
		r.restWrites = append(r.restWrites, (w1[i]-w0[i])*time.Minute.Seconds()/restWindow.Seconds())
	}
	for i, p := range f.daemons {
		r.restCPU = append(r.restCPU, 100*(cpuSeconds(p)-cpu0[i])/restWindow.Seconds())
		rss, anon := memory(p)
		r.rss, r.anon = append(r.rss, rss), append(r.anon, anon)
	}

	// Template edits: one object changes, its images do not.
	argo, err := argoclient.NewForConfig(f.b.cfg)
	if err != nil {
		return nil, err
	}
	const editWindow = 4 * time.Second
	for e := range 3 {
		e0, err := f.apiBytes(ctx)
		if err != nil {
			return nil, err
		}
		w0 := f.daemonWrites(ctx)
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"bench.icd.test/edit":"%s-%d-%d"}}}`, mode, n, e)
		name := fmt.Sprintf("pipeline-%04d", (n*3+e)%f.cfg.templates)
		if _, err := argo.ArgoprojV1alpha1().WorkflowTemplates(fleetSources).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return nil, err
		}
		time.Sleep(editWindow)
		e1, err := f.apiBytes(ctx)
		if err != nil {
			return nil, err
		}
		per := scale(sub(sub(e1, e0), scale(bgRate, editWindow.Seconds())), 1/float64(n))
		r.edit = append(r.edit, per["argo"]+per["configmaps"])
		r.editWrites = append(r.editWrites, perDaemon(w0, f.daemonWrites(ctx)))
	}

	// A new image in the labelled ConfigMap until every node has it.
	for t := range f.cfg.trials {
		img := f.trial[0]
		f.trial = f.trial[1:]
		f.trace.begin(img)
		start, w0 := time.Now(), f.daemonWrites(ctx)
		if _, err := imagelist.Edit(ctx, f.b.kube, fleetNamespace, install.DefaultConfigMap, func(cur []string) []string { return append(cur, img) }); err != nil {
			return nil, err
		}
		if err := f.waitCached(ctx, []string{img}, n, 3*time.Minute); err != nil {
			return nil, fmt.Errorf("trial %d: %w", t+1, err)
		}
		r.latency = append(r.latency, time.Since(start))
		r.steps = append(r.steps, f.trace.steps())
		f.trace.begin("")
		// Its writes: the pod, and the report once it is cached (which may
		// wait for the report's pace).
		time.Sleep(2 * time.Second)
		r.imageWrites = append(r.imageWrites, perDaemon(w0, f.daemonWrites(ctx)))
		if _, err := imagelist.Edit(ctx, f.b.kube, fleetNamespace, install.DefaultConfigMap, func(cur []string) []string {
			var out []string
			for _, c := range cur {
				if c != img {
					out = append(out, c)
				}
			}
			return out
		}); err != nil {
			return nil, err
		}
		time.Sleep(3 * time.Second)
	}
	f.stopDaemons()
	med, lo, hi := spreadD(r.latency)
	fmt.Printf("  %s, %d nodes: start %s, %.0f KiB per daemon (argo %.0f, configmaps %.0f, pods %.0f); edit %.1f KiB per daemon; RSS %.1f MiB; new image on every node %s (%s-%s)\n",
		mode, n, r.startTook.Round(time.Millisecond), total(r.start)/1024, r.start["argo"]/1024, r.start["configmaps"]/1024, r.start["pods"]/1024,
		median(r.edit)/1024, median(r.rss), med.Round(time.Millisecond), lo.Round(time.Millisecond), hi.Round(time.Millisecond))
	fmt.Printf("    where the new image's time went (medians of %d trials, from the edit): %s\n", len(r.steps), stepsLine(r.steps))
	return r, nil
}

type resyncResult struct {
	// window is the time counted: one resync period.
	window time.Duration
	// checks are the planner's manifest requests at the registry; -1
	// when the registry's log could not be read.
	checks int
	// always are the prefetch containers created with PullAlways.
	always int
}

// resyncRun runs n node daemons with --resync-period for one period, on
// nodes whose prefetch pods are older than that, and counts what one
// resync asks of the registry.
func (f *fleet) resyncRun(ctx context.Context, n int, fromPlanner bool) (resyncResult, error) {
	res := resyncResult{window: f.cfg.resync}
	logStart := fileSize(f.cfg.registryLog)
	f.mu.Lock()
	f.since, f.always = time.Now().Truncate(time.Second), 0
	f.mu.Unlock()
	start := time.Now()
	if err := f.startDaemons(ctx, n, fromPlanner, f.cfg.resync); err != nil {
		f.stopDaemons()
		return res, err
	}
	time.Sleep(time.Until(start.Add(f.cfg.resync)))
	f.mu.Lock()
	res.always = f.always
	f.since = time.Time{}
	f.mu.Unlock()
	res.checks = countLines(f.cfg.registryLog, logStart, resolve.UserAgent, "/manifests/")
	f.stopDaemons()
	mode := "before"
	if fromPlanner {
		mode = "after"
	}
	fmt.Printf("  %s, one resync (%s) at %d nodes: planner manifest checks %d, prefetch containers PullAlways %d\n",
		mode, f.cfg.resync, n, res.checks, res.always)
	return res, nil
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return st.Size()
}

// countLines counts the lines of path after offset that hold every one of
// subs; -1 when it cannot be read.
func countLines(path string, offset int64, subs ...string) int {
	if offset < 0 {
		return -1
	}
	file, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer file.Close()
	if _, err := file.Seek(offset, io.SeekStart); err != nil {
		return -1
	}
	n := 0
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
lines:
	for sc.Scan() {
		for _, s := range subs {
			if !strings.Contains(sc.Text(), s) {
				continue lines
			}
		}
		n++
	}
	return n
}

// daemonWrites reads each node daemon's API writes so far (POST, PUT, PATCH
// and DELETE in its image_cache_api_requests_total), in f.daemons' order;
// a daemon that does not answer counts -1.
func (f *fleet) daemonWrites(ctx context.Context) []float64 {
	client := &http.Client{Timeout: 2 * time.Second}
	out := make([]float64, len(f.daemons))
	for i := range f.daemons {
		out[i] = -1
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", fleetPorts+2*i), nil)
		if err != nil {
			continue
		}
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			continue
		}
		out[i] = 0
		for _, line := range strings.Split(string(raw), "\n") {
			rest, ok := strings.CutPrefix(line, "image_cache_api_requests_total{")
			closing := strings.LastIndex(rest, "}")
			if !ok || closing < 0 {
				continue
			}
			switch label(rest[:closing], "method") {
			case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
				if v, err := strconv.ParseFloat(strings.TrimSpace(rest[closing+1:]), 64); err == nil {
					out[i] += v
				}
			}
		}
	}
	return out
}

// perDaemon is the mean of after-before over the daemons that answered
// both times.
func perDaemon(before, after []float64) float64 {
	sum, n := 0.0, 0
	for i := range min(len(before), len(after)) {
		if before[i] >= 0 && after[i] >= 0 {
			sum += after[i] - before[i]
			n++
		}
	}
	if n == 0 {
		return -1
	}
	return sum / float64(n)
}

// apiBytes reads the bytes the API server has sent so far, by bucket:
// responses (apiserver_response_sizes_sum, every verb, by resource) and
// watch events (apiserver_watch_events_sizes_sum, by resource). Requests for no
// resource (this very /metrics) are left out.
func (f *fleet) apiBytes(ctx context.Context) (map[string]float64, error) {
	raw, err := f.b.kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's /metrics: %w", err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "apiserver_response_sizes_sum{") && !strings.HasPrefix(line, "apiserver_watch_events_sizes_sum{") {
			continue
		}
		open, closing := strings.Index(line, "{"), strings.LastIndex(line, "}")
		if closing < open {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(line[closing+1:]), 64)
		if err != nil {
			continue
		}
		// Watch events are labelled by resource (by kind on older API
		// servers).
		set := line[open+1 : closing]
		what := label(set, "resource")
		if what == "" {
			what = label(set, "kind")
		}
		if what == "" {
			continue
		}
		out[bucket(what)] += v
	}
	return out, nil
}

// label returns the value of key in a Prometheus label set.
func label(set, key string) string {
	for _, kv := range strings.Split(set, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k == key {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

func bucket(resourceOrKind string) string {
	switch strings.ToLower(resourceOrKind) {
	case "workflowtemplates", "workflowtemplate", "clusterworkflowtemplates", "clusterworkflowtemplate", "cronworkflows", "cronworkflow":
		return "argo"
	case "configmaps", "configmap":
		return "configmaps"
	case "pods", "pod":
		return "pods"
	}
	return "other"
}

func sub(a, b map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range a {
		out[k] = v - b[k]
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			out[k] = -v
		}
	}
	return out
}

func scale(a map[string]float64, by float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range a {
		out[k] = v * by
	}
	return out
}

func total(a map[string]float64) float64 {
	t := 0.0
	for _, v := range a {
		t += v
	}
	return t
}

// cpuSeconds is the user and system CPU time of p so far (0 once gone).
func cpuSeconds(p *proc) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndex(s, ")")+1:])
	// utime and stime are fields 14 and 15 of stat, 12 and 13 after the
	// command name; in clock ticks, 100 a second on Linux.
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	sys, _ := strconv.ParseFloat(f[12], 64)
	return (u + sys) / 100
}

// memory is p's resident set and its anonymous part (heap, stacks), MiB.
// The rest of the RSS is the executable's pages, which the node daemons on
// one machine share.
func memory(p *proc) (rss, anon float64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "RssAnon:":
			anon = kb / 1024
		}
	}
	return rss, anon
}

func median(v []float64) float64 {
	m, _, _ := spreadF(v)
	return m
}

func spreadF(v []float64) (med, lo, hi float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2], s[0], s[len(s)-1]
}

func spreadD(v []time.Duration) (med, lo, hi time.Duration) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	s := append([]time.Duration(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[0], s[len(s)-1]
}

func kib(b float64) string {
	switch {
	case b >= 10<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 10<<10:
		return fmt.Sprintf("%.0f KiB", b/1024)
	}
	return fmt.Sprintf("%.1f KiB", b/1024)
}

func (f *fleet) print(runs []*fleetRun, resyncs [2]resyncResult, maxNodes int) {
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("\nfleet: %d WorkflowTemplates of %d KiB, %d wanted images, kwok nodes, one node-daemon process per node (load %s)\n",
		f.cfg.templates, f.cfg.templateKB, len(f.images), strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Println("| nodes | mode | API bytes per daemon at start (sources; pods) | start until all ready | per template edit: per daemon (all daemons) | RSS per daemon (anon) | CPU per daemon: start; at rest | new image -> cached on every node | API writes per daemon: per template edit; per new image; per minute at rest |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, r := range runs {
		rss, rlo, rhi := spreadF(r.rss)
		anon := median(r.anon)
		cs, _, _ := spreadF(r.startCPU)
		rest, _, restHi := spreadF(r.restCPU)
		lat, llo, lhi := spreadD(r.latency)
		edit, elo, ehi := spreadF(r.edit)
		_, _, restHiW := spreadF(r.restWrites)
		fmt.Printf("| %d | %s | %s (%s; %s) | %s | %s (%s), %s-%s | %.1f MiB (%.1f-%.1f; anon %.1f) | %.2f s; %.2f%% (max %.2f%%) | %s (%s-%s) | %.2f; %.2f; %.2f (max %.2f) |\n",
			r.nodes, r.mode, kib(total(r.start)), kib(r.start["argo"]+r.start["configmaps"]), kib(r.start["pods"]),
			r.startTook.Round(100*time.Millisecond), kib(edit), kib(edit*float64(r.nodes)), kib(elo), kib(ehi),
			rss, rlo, rhi, anon, cs, rest, restHi,
			lat.Round(10*time.Millisecond), llo.Round(10*time.Millisecond), lhi.Round(10*time.Millisecond),
			median(r.editWrites), median(r.imageWrites), median(r.restWrites), restHiW)
	}
	fmt.Printf("\none resync period (%s) at %d nodes x %d unchanged images:\n", f.cfg.resync, maxNodes, len(f.images))
	fmt.Println("| mode | registry manifest checks by the planner | prefetch containers created PullAlways (a registry request each on a real node) | goal |")
	fmt.Println("|---|---|---|---|")
	checks := func(c int) string {
		if c < 0 {
			return "n/a (no registry log at " + f.cfg.registryLog + ")"
		}
		return strconv.Itoa(c)
	}
	fmt.Printf("| before | %s (no planner) | %d | |\n", checks(resyncs[0].checks), resyncs[0].always)
	fmt.Printf("| after | %s | %d | <= %d + 0 |\n", checks(resyncs[1].checks), resyncs[1].always, len(f.images))
}

func (f *fleet) cleanup() {
	f.stopDaemons()
	f.stop(f.planner)
	if f.stopPods != nil {
		close(f.stopPods)
	}
	ctx := context.Background()
	// Prefetch pods on simulated nodes: no kubelet confirms their end.
	_ = f.fast.CoreV1().Pods(fleetNamespace).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr[int64](0)}, metav1.ListOptions{})
	_ = f.fast.CoreV1().Namespaces().Delete(ctx, fleetNamespace, metav1.DeleteOptions{})
	_ = f.fast.CoreV1().Namespaces().Delete(ctx, fleetSources, metav1.DeleteOptions{})
	_ = f.fast.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: fleetLabel + "=fleet"})
	f.stop(f.kwok)
	_ = testcluster.DeleteArgoCRDs(ctx, f.b.cfg)
}
