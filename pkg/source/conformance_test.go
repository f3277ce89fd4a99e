package source

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	fakediscovery "k8s.io/client-go/discovery/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
)

// recorder is a Reporter that keeps what it is told.
type recorder struct {
	mu       sync.Mutex
	problems []error
}

func (r *recorder) Problems(_ string, _ runtime.Object, p []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, p...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.problems)
}

// subject is one Source under test, with a way to make it want an image
// (put) and to take that back (drop). Static sources have neither.
type subject struct {
	src  Source
	put  func(t *testing.T, image string)
	bad  func(t *testing.T)
	drop func(t *testing.T)
}

func argoServed(kube *kubefake.Clientset) {
	kube.Discovery().(*fakediscovery.FakeDiscovery).Resources = argoResources()
}

func argoResources() []*metav1.APIResourceList {
	return []*metav1.APIResourceList{{
		GroupVersion: wfv1.SchemeGroupVersion.String(),
		APIResources: []metav1.APIResource{{Name: "workflowtemplates"}, {Name: "clusterworkflowtemplates"}, {Name: "cronworkflows"}},
	}}
}

func workflowSpec(image string) wfv1.WorkflowSpec {
	return wfv1.WorkflowSpec{Templates: []wfv1.Template{{Name: "main", Container: &corev1.Container{Image: image}}}}
}

// subjects builds every kind of source on fake clients.
func subjects(t *testing.T, rep Reporter) map[string]func() subject {
	ctx := context.Background()
	one := func(kind string) subject {
		kube := kubefake.NewClientset()
		argo := argofake.NewSimpleClientset()
		argoServed(kube)
		cfg := Config{Selector: DefaultConfigMapSelector, CRDCheckInterval: 20 * time.Millisecond}
		switch kind {
		case "configmaps":
			cfg.ConfigMaps = true
		case "workflowtemplates":
			cfg.WorkflowTemplates = true
		case "clusterworkflowtemplates":
			cfg.ClusterWorkflowTemplates = true
		case "cronworkflows":
			cfg.CronWorkflows = true
		}
		all, err := New(cfg, Clients{Kube: kube, Argo: argo, Discovery: kube.Discovery()}, rep)
		if err != nil {
			t.Fatal(err)
		}
		s := subject{src: all[len(all)-1]} // the static source comes first
		meta := metav1.ObjectMeta{Name: "x", Namespace: "ns", Labels: map[string]string{"app.kubernetes.io/part-of": "image-cache-daemon"}}
		switch kind {
		case "configmaps":
			s.put = func(t *testing.T, image string) {
				cm := &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"images": `["` + image + `"]`}}
				if _, err := kube.CoreV1().ConfigMaps("ns").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			s.bad = func(t *testing.T) {
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "ns", Labels: meta.Labels},
					Data: map[string]string{"images": "{not a list"}}
				if _, err := kube.CoreV1().ConfigMaps("ns").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			s.drop = func(t *testing.T) {
				if err := kube.CoreV1().ConfigMaps("ns").Delete(ctx, "x", metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		case "workflowtemplates":
			s.put = func(t *testing.T, image string) {
				_, err := argo.ArgoprojV1alpha1().WorkflowTemplates("ns").Create(ctx, &wfv1.WorkflowTemplate{ObjectMeta: meta, Spec: workflowSpec(image)}, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
			}
			s.bad = func(t *testing.T) {
				_, err := argo.ArgoprojV1alpha1().WorkflowTemplates("ns").Create(ctx, &wfv1.WorkflowTemplate{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "ns"}, Spec: workflowSpec("{{item}}")}, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
			}
			s.drop = func(t *testing.T) {
				if err := argo.ArgoprojV1alpha1().WorkflowTemplates("ns").Delete(ctx, "x", metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		case "clusterworkflowtemplates":
			cmeta := metav1.ObjectMeta{Name: "x"}
			s.put = func(t *testing.T, image string) {
				_, err := argo.ArgoprojV1alpha1().ClusterWorkflowTemplates().Create(ctx, &wfv1.ClusterWorkflowTemplate{ObjectMeta: cmeta, Spec: workflowSpec(image)}, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
			}
			s.drop = func(t *testing.T) {
				if err := argo.ArgoprojV1alpha1().ClusterWorkflowTemplates().Delete(ctx, "x", metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		case "cronworkflows":
			s.put = func(t *testing.T, image string) {
				cron := &wfv1.CronWorkflow{ObjectMeta: meta, Spec: wfv1.CronWorkflowSpec{WorkflowSpec: workflowSpec(image)}}
				if _, err := argo.ArgoprojV1alpha1().CronWorkflows("ns").Create(ctx, cron, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			s.drop = func(t *testing.T) {
				if err := argo.ArgoprojV1alpha1().CronWorkflows("ns").Delete(ctx, "x", metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		return s
	}
	out := map[string]func() subject{
		"static": func() subject { return subject{src: NewStatic([]string{"docker.io/library/alpine:latest"})} },
	}
	for _, kind := range []string{"configmaps", "workflowtemplates", "clusterworkflowtemplates", "cronworkflows"} {
		out[kind] = func() subject { return one(kind) }
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 5*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("never: %s", what)
	}
}

func wants(s Source, image string) bool {
	for _, w := range s.Wanted() {
		if w.Image == image {
			return w.Origin != ""
		}
	}
	return false
}

// TestConformance: every source syncs, reports what objects want with their
// origin, notices changes, and reports bad objects without losing others.
func TestConformance(t *testing.T) {
	rep := &recorder{}
	for name, build := range subjects(t, rep) {
		t.Run(name, func(t *testing.T) {
			s := build()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var changes atomic.Int32
			s.src.Start(ctx, func() { changes.Add(1) })
			eventually(t, "HasSynced", s.src.HasSynced)
			if s.src.Name() == "" {
				t.Error("a source needs a name for logs and metrics")
			}
			if s.put == nil {
				if len(s.src.Wanted()) == 0 {
					t.Fatal("a static source wants nothing")
				}
				return
			}
			before := changes.Load()
			s.put(t, "alpine:3.20")
			eventually(t, "the new object's image is wanted", func() bool { return wants(s.src, "docker.io/library/alpine:3.20") })
			if changes.Load() == before {
				t.Error("onChange was not called")
			}
			if s.bad != nil {
				problems := rep.count()
				s.bad(t)
				eventually(t, "the bad object is reported", func() bool { return rep.count() > problems })
				if !wants(s.src, "docker.io/library/alpine:3.20") {
					t.Error("a bad object made the good one's image unwanted")
				}
			}
			s.drop(t)
			eventually(t, "the deleted object's image is no longer wanted", func() bool { return !wants(s.src, "docker.io/library/alpine:3.20") })
		})
	}
}

// lockedDiscovery lets a test serve a resource while a source is polling
// discovery: the fake's Resources field has no lock of its own.
type lockedDiscovery struct {
	*fakediscovery.FakeDiscovery
	mu sync.Mutex
}

func (d *lockedDiscovery) ServerResourcesForGroupVersion(gv string) (*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.FakeDiscovery.ServerResourcesForGroupVersion(gv)
}

func (d *lockedDiscovery) serve(resources []*metav1.APIResourceList) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Resources = resources
}

// An Argo source whose CRD is missing reports it, counts as synced, and
// starts once the resource is served, without a restart.
func TestArgoSourceWaitsForItsCRD(t *testing.T) {
	kube := kubefake.NewClientset()
	argo := argofake.NewSimpleClientset()
	rep := &recorder{}
	disc := &lockedDiscovery{FakeDiscovery: kube.Discovery().(*fakediscovery.FakeDiscovery)}
	all, err := New(Config{WorkflowTemplates: true, CRDCheckInterval: 20 * time.Millisecond},
		Clients{Kube: kube, Argo: argo, Discovery: disc}, rep)
	if err != nil {
		t.Fatal(err)
	}
	s := all[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx, func() {})
	eventually(t, "synced while the CRD is missing", s.HasSynced)
	if rep.count() == 0 {
		t.Error("the missing CRD was not reported")
	}
	wt := &wfv1.WorkflowTemplate{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "ns"}, Spec: workflowSpec("nginx:1.27")}
	if _, err := argo.ArgoprojV1alpha1().WorkflowTemplates("ns").Create(ctx, wt, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	disc.serve(argoResources())
	eventually(t, "the template is read once the CRD is there", func() bool { return wants(s, "docker.io/library/nginx:1.27") })
}

// The Argo fake clientset is generated by an older client-gen and cannot
// serve the streaming lists that informers ask for by default; without
// this its informers never sync. (The real API server serves them.)
func TestMain(m *testing.M) {
	os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	os.Exit(m.Run())
}
