package daemon

import (
	"context"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/metrics"
	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
	"github.com/dcherman/image-cache-daemon/pkg/source"
)

// fixedSource is a Source whose wants the test sets.
type fixedSource struct{ images []string }

func (f *fixedSource) Name() string                  { return "fixed" }
func (f *fixedSource) Start(context.Context, func()) {}
func (f *fixedSource) HasSynced() bool               { return true }
func (f *fixedSource) Wanted() []source.Want {
	var w []source.Want
	for _, img := range f.images {
		w = append(w, source.Want{Image: img, Origin: "test"})
	}
	return w
}

type fixture struct {
	client *fake.Clientset
	ctrl   *Controller
	src    *fixedSource
	cfg    prefetch.Config
	ctx    context.Context
}

func newFixture(t *testing.T, pods ...*corev1.Pod) *fixture {
	t.Helper()
	var objs []runtime.Object
	for _, p := range pods {
		objs = append(objs, p)
	}
	client := fake.NewClientset(objs...)
	cfg := prefetch.Config{Namespace: "icd", NodeName: "node-1", WardenImage: "warden:v1", BatchSize: 20}
	inf := coreinformers.NewFilteredPodInformer(client, "icd", 0, cache.Indexers{}, func(o *metav1.ListOptions) {
		o.LabelSelector = labels.SelectorFromSet(cachestate.NodeLabels("node-1")).String()
	})
	src := &fixedSource{}
	ctrl, err := NewController(client, inf, []source.Source{src}, cfg, time.Hour, metrics.New())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("pod cache never synced")
	}
	return &fixture{client: client, ctrl: ctrl, src: src, cfg: cfg, ctx: ctx}
}

// sync runs one sync and returns the API writes it made ("create pods
// [images]", "delete pods NAME").
func (f *fixture) sync(t *testing.T) []string {
	t.Helper()
	f.client.ClearActions()
	if _, err := f.ctrl.sync(f.ctx); err != nil {
		t.Fatalf("sync: %v", err)
	}
	var writes []string
	for _, a := range f.client.Actions() {
		switch a := a.(type) {
		case k8stesting.CreateAction:
			p := a.GetObject().(*corev1.Pod)
			writes = append(writes, "create "+p.Name)
		case k8stesting.DeleteAction:
			writes = append(writes, "delete "+a.GetName())
		}
	}
	sort.Strings(writes)
	return writes
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

func TestSyncCreatesOnePodPerBatchAndIsIdempotent(t *testing.T) {
	f := newFixture(t)
	f.src.images = []string{"docker.io/library/a:latest", "docker.io/library/b:latest"}
	want := f.cfg.Pod(f.src.images, 0, corev1.PullIfNotPresent)
	if got := f.sync(t); len(got) != 1 || got[0] != "create "+want.Name {
		t.Fatalf("first sync wrote %v, want one create of %s", got, want.Name)
	}
	f.waitCache(t, 1)
	if got := f.sync(t); len(got) != 0 {
		t.Fatalf("second sync wrote %v, want nothing", got)
	}
}

func TestSyncDeletesPodsOfUnwantedImages(t *testing.T) {
	cfg := prefetch.Config{Namespace: "icd", NodeName: "node-1", WardenImage: "warden:v1", BatchSize: 20}
	old := cfg.Pod([]string{"docker.io/library/gone:latest"}, 0, corev1.PullIfNotPresent)
	f := newFixture(t, old)
	f.src.images = []string{"docker.io/library/new:latest"}
	got := f.sync(t)
	newPod := cfg.Pod(f.src.images, 0, corev1.PullIfNotPresent)
	want := []string{"create " + newPod.Name, "delete " + old.Name}
	sort.Strings(want)
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("sync wrote %v, want %v", got, want)
	}
}

func TestSyncTreatsAlreadyExistsAsDone(t *testing.T) {
	f := newFixture(t)
	f.src.images = []string{"docker.io/library/a:latest"}
	// Another daemon created the same pod a moment ago; our cache has not seen it.
	f.client.PrependReactor("create", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, alreadyExists()
	})
	if _, err := f.ctrl.sync(f.ctx); err != nil {
		t.Fatalf("AlreadyExists made the sync fail: %v", err)
	}
}

func alreadyExists() error {
	return apierrors.NewAlreadyExists(corev1.Resource("pods"), "x")
}
