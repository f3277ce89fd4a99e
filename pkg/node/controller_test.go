package node

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/metrics"
	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/warm"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// fixedSource is a Source whose wants the test sets: images wanted by
// "test", and wants with their own origins.
type fixedSource struct {
	images   []string
	wants    []source.Want
	unsynced bool
}

func (f *fixedSource) Name() string                { return "fixed" }
func (f *fixedSource) Run(context.Context, func()) {}
func (f *fixedSource) Health() wire.Health         { return wire.Health{Source: "fixed", Synced: true} }
func (f *fixedSource) HasSynced() bool             { return !f.unsynced }
func (f *fixedSource) Wanted() []source.Want {
	w := append([]source.Want(nil), f.wants...)
	for _, img := range f.images {
		w = append(w, source.Want{Image: img, Origin: "test"})
	}
	return w
}

// wants returns one Want per image, all from origin.
func wants(origin string, images ...string) []source.Want {
	var w []source.Want
	for _, img := range images {
		w = append(w, source.Want{Image: img, Origin: origin})
	}
	return w
}

var (
	t0    = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	owner = metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "icd", UID: "ds-uid"}
)

func testConfig() ControllerConfig {
	return ControllerConfig{
		Prefetch: prefetch.Config{Namespace: "icd", NodeName: "node-1", WardenImage: "warden:v1", BatchSize: 20, Owner: &owner},
		Resync:   time.Hour, MaxImages: 1000, MaxPods: 50,
		Self:     &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "icd", Name: "icd-daemon-abcde", UID: "self-uid"}},
		Recorder: record.NewFakeRecorder(10),
		Metrics:  metrics.New(),
	}
}

// node is the daemon's Node with room for the given pods.
func node(pods int64) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}, Status: corev1.NodeStatus{
		Allocatable: corev1.ResourceList{corev1.ResourcePods: *resource.NewQuantity(pods, resource.DecimalSI)}}}
}

type fixture struct {
	client *fake.Clientset
	ctrl   *Controller
	src    *fixedSource
	cfg    ControllerConfig
	events chan string
	clock  time.Time
	ctx    context.Context
}

// newFixture starts a controller over a fake API holding objs, its cache
// synced; change adjusts the configuration first.
func newFixture(t *testing.T, change func(*ControllerConfig), objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	cfg := testConfig()
	if change != nil {
		change(&cfg)
	}
	inf := newPodInformer(client, "icd", "node-1")
	f := &fixture{client: client, src: &fixedSource{}, cfg: cfg, events: cfg.Recorder.(*record.FakeRecorder).Events, clock: t0}
	ctrl, err := NewController(client, inf, source.NewSetOf(f.src), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctrl.now = func() time.Time { return f.clock }
	f.ctrl = ctrl
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f.ctx = ctx
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("pod cache never synced")
	}
	return f
}

// sync runs one sync and returns the API calls it made, in order, as
// "VERB RESOURCE NAME"; RequeueAfter goes to *requeue when it is not nil.
func (f *fixture) sync(t *testing.T) []string {
	t.Helper()
	actions, _ := f.syncRequeue(t)
	return actions
}

func (f *fixture) syncRequeue(t *testing.T) ([]string, time.Duration) {
	t.Helper()
	f.client.ClearActions()
	requeue, err := f.ctrl.sync(f.ctx)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	var calls []string
	for _, a := range f.client.Actions() {
		switch a := a.(type) {
		case k8stesting.CreateAction:
			calls = append(calls, "create pods "+a.GetObject().(*corev1.Pod).Name)
		case k8stesting.DeleteAction:
			calls = append(calls, "delete pods "+a.GetName())
		case k8stesting.GetAction:
			calls = append(calls, "get "+a.GetResource().Resource+" "+a.GetName())
		case k8stesting.ListAction, k8stesting.WatchAction:
			// the informer's
		default:
			calls = append(calls, fmt.Sprintf("%s %s", a.GetVerb(), a.GetResource().Resource))
		}
	}
	return calls, requeue
}

// waitCache waits until the informer has seen n pods.
func (f *fixture) waitCache(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		pods, _ := f.ctrl.pods.List(labels.Everything())
		if len(pods) == n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the pod cache never held %d pods", n)
}

// event returns the next Event recorded, or "" if there is none.
func (f *fixture) event() string {
	select {
	case e := <-f.events:
		return e
	default:
		return ""
	}
}

func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

func img(name string) string { return "docker.io/library/" + name + ":latest" }

// existing is a pod of the daemon as the API returns it, created at created.
func existing(cfg prefetch.Config, images []string, generation int, created time.Time) *corev1.Pod {
	p := cfg.Pod(images, generation, corev1.PullIfNotPresent)
	p.UID = types.UID("uid-" + p.Name)
	p.CreationTimestamp = metav1.NewTime(created)
	return p
}

func TestSyncCreatesOnePodPerBatchAndIsIdempotent(t *testing.T) {
	f := newFixture(t, nil, node(110))
	f.src.images = []string{img("a"), img("b")}
	want := f.cfg.Prefetch.Pod(f.src.images, 0, corev1.PullIfNotPresent)
	if got := f.sync(t); !reflect.DeepEqual(got, []string{"get nodes node-1", "create pods " + want.Name}) {
		t.Fatalf("first sync made %v, want the node read and one create of %s", got, want.Name)
	}
	f.waitCache(t, 1)
	if got := f.sync(t); len(got) != 0 {
		t.Fatalf("second sync made %v, want nothing", got)
	}
}

func TestSyncDeletesPodsOfUnwantedImages(t *testing.T) {
	cfg := testConfig().Prefetch
	old := existing(cfg, []string{img("gone")}, 0, t0)
	f := newFixture(t, nil, node(110), old)
	f.src.images = []string{img("new")}
	newPod := cfg.Pod(f.src.images, 0, corev1.PullIfNotPresent)
	want := []string{"get nodes node-1", "create pods " + newPod.Name, "delete pods " + old.Name}
	if got := f.sync(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("sync made %v, want %v", got, want)
	}
}

// While a source has not synced (say a namespace it may not read), the
// daemon still caches what the others want, and deletes nothing: the held
// images may be wanted by the source it cannot see.
func TestSyncOnAPartialViewCreatesButDeletesNothing(t *testing.T) {
	cfg := testConfig().Prefetch
	old := existing(cfg, []string{img("gone")}, 0, t0)
	f := newFixture(t, nil, node(110), old)
	f.src.images, f.src.unsynced = []string{img("new")}, true
	newPod := cfg.Pod([]string{img("new")}, 0, corev1.PullIfNotPresent)
	want := []string{"get nodes node-1", "create pods " + newPod.Name}
	if got := f.sync(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("sync on a partial view made %v, want %v", got, want)
	}
}

func TestSyncTreatsAlreadyExistsAsDone(t *testing.T) {
	f := newFixture(t, nil, node(110))
	f.src.images = []string{img("a")}
	// Another daemon created the same pod a moment ago; our cache has not seen it.
	f.client.PrependReactor("create", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewAlreadyExists(corev1.Resource("pods"), "x")
	})
	if _, err := f.ctrl.sync(f.ctx); err != nil {
		t.Fatalf("AlreadyExists made the sync fail: %v", err)
	}
}

// Only pods that carry this daemon's owner reference are its own: pods that
// merely carry the labels are never deleted and hold nothing for it.
func TestSyncIgnoresPodsItDoesNotOwn(t *testing.T) {
	cfg := testConfig().Prefetch
	unowned := existing(cfg, []string{img("x")}, 0, t0)
	unowned.OwnerReferences = nil
	otherInstall := existing(cfg, []string{img("a")}, 0, t0)
	otherInstall.Name = "icd-node-1-other"
	otherInstall.OwnerReferences[0].UID = "other-ds-uid"
	f := newFixture(t, nil, node(110), unowned, otherInstall)
	f.src.images = []string{img("a")}
	ours := cfg.Pod([]string{img("a")}, 0, corev1.PullIfNotPresent)
	if got := f.sync(t); !reflect.DeepEqual(got, []string{"get nodes node-1", "create pods " + ours.Name}) {
		t.Fatalf("sync made %v, want only our own pod for a created", got)
	}
	if n := value(t, f.cfg.Metrics.PrefetchPods); n != 0 {
		t.Fatalf("prefetch_pods = %v, want 0: the pods are not ours", n)
	}
}

// A pod the kubelet rejected at admission is replaced once its back-off is
// over, and not before; the replacement is counted.
func TestSyncReplacesRejectedPodsAfterBackOff(t *testing.T) {
	for _, tc := range []struct {
		name    string
		age     time.Duration
		replace bool
		requeue time.Duration
	}{
		{"during the back-off", 20 * time.Second, false, 10 * time.Second},
		{"after the back-off", 30 * time.Second, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig().Prefetch
			rejected := existing(cfg, []string{img("a")}, 0, t0.Add(-tc.age))
			rejected.Status = corev1.PodStatus{Phase: corev1.PodFailed, Reason: "OutOfpods",
				Message: "Pod was rejected: Node didn't have enough resource: pods"}
			f := newFixture(t, nil, node(110), rejected)
			f.src.images = []string{img("a")}
			got, requeue := f.syncRequeue(t)
			want := []string{"get nodes node-1"}
			if tc.replace {
				want = append(want, "create pods "+cfg.Pod([]string{img("a")}, 1, corev1.PullIfNotPresent).Name, "delete pods "+rejected.Name)
			}
			if !reflect.DeepEqual(got, want) || requeue != tc.requeue {
				t.Fatalf("sync made %v and came back after %s, want %v and %s", got, requeue, want, tc.requeue)
			}
			wantCount := 0.0
			if tc.replace {
				wantCount = 1
			}
			if n := value(t, f.cfg.Metrics.PodsRejected); n != wantCount {
				t.Fatalf("prefetch_pods_rejected_total = %v, want %v", n, wantCount)
			}
		})
	}
}

// The images past the limit are chosen fairly, and reported once per change.
func TestSyncLimitsImagesFairlyAndReportsChanges(t *testing.T) {
	f := newFixture(t, func(c *ControllerConfig) { c.MaxImages = 3 }, node(110))
	big := wants("ConfigMap tenant/huge", img("a1"), img("a2"), img("a3"), img("a4"), img("a5"))
	f.src.wants = append(append([]source.Want(nil), big...), wants("ConfigMap team/small", img("b1"))...)
	kept := f.cfg.Prefetch.Pod([]string{img("a1"), img("a2"), img("b1")}, 0, corev1.PullIfNotPresent)
	if got := f.sync(t); !reflect.DeepEqual(got, []string{"get nodes node-1", "create pods " + kept.Name}) {
		t.Fatalf("sync made %v, want one pod for a1, a2 and b1", got)
	}
	n, sample := f.ctrl.OverLimit()
	wantSample := []wire.Image{
		{Image: img("a3"), Origins: []string{"ConfigMap tenant/huge"}},
		{Image: img("a4"), Origins: []string{"ConfigMap tenant/huge"}},
		{Image: img("a5"), Origins: []string{"ConfigMap tenant/huge"}},
	}
	if n != 3 || !reflect.DeepEqual(sample, wantSample) {
		t.Fatalf("OverLimit() = %d, %v; want 3, %v", n, sample, wantSample)
	}
	if v := value(t, f.cfg.Metrics.ImagesOverLimit); v != 3 {
		t.Fatalf("images_over_limit = %v, want 3", v)
	}
	e := f.event()
	if !strings.HasPrefix(e, "Warning ImageLimitExceeded 3 wanted images are not cached on node node-1") ||
		!strings.Contains(e, "docker.io/library/a3:latest (wanted by ConfigMap tenant/huge)") || !strings.Contains(e, "--max-images=3") {
		t.Fatalf("event %q", e)
	}
	if s := f.ctrl.OverLimitSummary(); !strings.HasPrefix(e, "Warning ImageLimitExceeded "+s) {
		t.Fatalf("OverLimitSummary() = %q, not the event's message %q", s, e)
	}

	f.waitCache(t, 1)
	if got := f.sync(t); len(got) != 0 || f.event() != "" {
		t.Fatalf("an unchanged sync made %v and reported again", got)
	}
	f.src.wants = f.src.wants[1:] // a1 is no longer wanted: a3 takes its place
	f.sync(t)
	if e := f.event(); !strings.Contains(e, "2 wanted images are not cached") {
		t.Fatalf("a changed over-limit set was not reported: event %q", e)
	}
	f.src.wants = wants("ConfigMap team/small", img("b1"))
	f.sync(t)
	if n, _ := f.ctrl.OverLimit(); n != 0 || f.ctrl.OverLimitSummary() != "" || f.event() != "" {
		t.Fatalf("back under the limit: OverLimit() = %d, summary %q", n, f.ctrl.OverLimitSummary())
	}
}

// The node's allocatable pods bound the prefetch pods, and so the images.
func TestSyncHonoursTheNodeCapacity(t *testing.T) {
	forbidden := func(f *fixture) {
		f.client.PrependReactor("get", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(corev1.Resource("nodes"), "node-1", fmt.Errorf("no RBAC"))
		})
	}
	for _, tc := range []struct {
		name    string
		objs    []runtime.Object
		prepare func(*fixture)
		pods    int
	}{
		{"a quarter of the node's pods", []runtime.Object{node(8)}, nil, 2},
		{"the flag when it is lower", []runtime.Object{node(110)}, nil, 3},
		{"at least one pod on a tiny node", []runtime.Object{node(2)}, nil, 1},
		{"the flag alone when the node cannot be read", nil, forbidden, 3},
		{"the flag alone when the node is missing", nil, nil, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *ControllerConfig) { c.MaxPods = 3; c.Prefetch.BatchSize = 1 }, tc.objs...)
			if tc.prepare != nil {
				tc.prepare(f)
			}
			f.src.images = []string{img("a"), img("b"), img("c"), img("d"), img("e")}
			var creates int
			for _, call := range f.sync(t) {
				if strings.HasPrefix(call, "create pods ") {
					creates++
				}
			}
			if creates != tc.pods {
				t.Fatalf("%d pods created, want %d", creates, tc.pods)
			}
			if n, _ := f.ctrl.OverLimit(); n != 5-tc.pods {
				t.Fatalf("%d images over the limit, want %d", n, 5-tc.pods)
			}
		})
	}
}

func TestSyncReadsTheNodeEveryFewMinutes(t *testing.T) {
	f := newFixture(t, nil, node(110))
	for _, tc := range []struct {
		after time.Duration
		read  bool
	}{{0, true}, {time.Minute, false}, {nodeRefresh - time.Second, false}, {nodeRefresh, true}} {
		f.clock = t0.Add(tc.after)
		got := f.sync(t)
		if read := reflect.DeepEqual(got, []string{"get nodes node-1"}); read != tc.read {
			t.Fatalf("sync at +%s made %v; node read wanted: %t", tc.after, got, tc.read)
		}
	}
}

// Hostile values stay short in what the daemon reports.
func TestOverLimitSummaryIsBounded(t *testing.T) {
	long := strings.Repeat("r", 200)
	f := newFixture(t, func(c *ControllerConfig) { c.MaxImages = 1 }, node(110))
	for i := range 5 {
		image := fmt.Sprintf("registry.example/%s:%d", long, i)
		f.src.wants = append(f.src.wants, source.Want{Image: image, Origin: "ConfigMap ns/" + long + "-a"},
			source.Want{Image: image, Origin: "ConfigMap ns/" + long + "-b"})
	}
	f.sync(t)
	if s := f.ctrl.OverLimitSummary(); len(s) > 1024 || !strings.Contains(s, "...") {
		t.Fatalf("summary of %d bytes (an Event holds 1024), values not cut: %q", len(s), s)
	}
	_, sample := f.ctrl.OverLimit()
	for _, s := range sample {
		if len(s.Image) > imageref.MaxQuoted+32 || len(s.Origins[0]) > imageref.MaxQuoted+32 {
			t.Fatalf("sample not cut short: %+v", s)
		}
	}
}

func TestPodInformerIndexesNamespaces(t *testing.T) {
	inf := newPodInformer(fake.NewClientset(), "icd", "node-1")
	if _, ok := inf.GetIndexer().GetIndexers()[cache.NamespaceIndex]; !ok {
		t.Fatal("no namespace index: every namespaced List logs a warning and scans the whole cache")
	}
}

// Once every wanted image is cached, the sync writes the node's Warm
// condition and removes the startup taint, and only that taint.
func TestSyncWarmsTheNode(t *testing.T) {
	cfg := testConfig().Prefetch
	n := node(110)
	n.Spec.Taints = []corev1.Taint{{Key: "example.com/warming", Effect: corev1.TaintEffectNoSchedule}, {Key: "other", Effect: corev1.TaintEffectNoSchedule}}
	pod := existing(cfg, []string{img("a")}, 0, t0)
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: pod.Spec.Containers[0].Name, ImageID: img("a") + "@sha256:" + strings.Repeat("a", 64),
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, FinishedAt: metav1.NewTime(t0)}}}}
	f := newFixture(t, func(c *ControllerConfig) { c.WarmTimeout = time.Hour }, n, pod)
	f.ctrl.cfg.Warm = warm.NewNode(f.client, warm.NodeConfig{Name: "node-1", TaintKey: "example.com/warming", Recorder: record.NewFakeRecorder(10), FieldManager: FieldManager})
	var snaps []Snapshot
	f.ctrl.cfg.Report = func(s Snapshot) { snaps = append(snaps, s) }
	f.src.images = []string{img("a")}
	f.waitCache(t, 1)
	f.sync(t)
	// The report and the warm line are of the same sync (the daemon's pod
	// gets both in one patch).
	if len(snaps) != 1 || len(snaps[0].States) != 1 || snaps[0].States[0].State != wire.Cached || snaps[0].Warm == nil || !snaps[0].Warm.Warm {
		t.Errorf("one sync reported %+v; want one snapshot of a cached image on a warm node", snaps)
	}
	got, err := f.client.CoreV1().Nodes().Get(f.ctx, "node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Taints) != 1 || got.Spec.Taints[0].Key != "other" {
		t.Errorf("taints %v, want only the other one", got.Spec.Taints)
	}
	warmCond := false
	for _, c := range got.Status.Conditions {
		warmCond = warmCond || (c.Type == warm.ConditionType && c.Status == corev1.ConditionTrue)
	}
	if !warmCond {
		t.Errorf("conditions %v, want %s True", got.Status.Conditions, warm.ConditionType)
	}
	if w := f.ctrl.Warmth(); w == nil || !w.Warm {
		t.Errorf("Warmth() = %+v", w)
	}
	if v := value(t, f.ctrl.metrics.NodeWarming); v != 0 {
		t.Errorf("image_cache_node_warming = %v on a warm node", v)
	}
}
