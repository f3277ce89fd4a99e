package source

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
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
	put  func(t *testing.T, name, image string)
	bad  func(t *testing.T)
	drop func(t *testing.T, name string)
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

// argoGVRs are the Argo resources, with their list kinds for the dynamic fake.
var argoGVRs = map[schema.GroupVersionResource]string{
	wfv1.SchemeGroupVersion.WithResource("workflowtemplates"):        "WorkflowTemplateList",
	wfv1.SchemeGroupVersion.WithResource("clusterworkflowtemplates"): "ClusterWorkflowTemplateList",
	wfv1.SchemeGroupVersion.WithResource("cronworkflows"):            "CronWorkflowList",
}

func newDynamic() *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), argoGVRs)
}

// argoObject is an Argo object of kind as the API server stores it: spec is
// anything JSON can hold, including what does not decode into Argo's types.
func argoObject(kind, namespace, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": wfv1.SchemeGroupVersion.String(), "kind": kind,
		"metadata": map[string]any{"name": name}, "spec": spec,
	}}
	if namespace != "" {
		u.SetNamespace(namespace)
	}
	return u
}

// argoSpec is the spec of kind with one container template running image
// (a CronWorkflow holds it under workflowSpec).
func argoSpec(kind string, container map[string]any) map[string]any {
	spec := map[string]any{"templates": []any{map[string]any{"name": "main", "container": container}}}
	if kind == "CronWorkflow" {
		return map[string]any{"schedules": []any{"0 * * * *"}, "workflowSpec": spec}
	}
	return spec
}

// subjects builds every kind of source on fake clients.
func subjects(t *testing.T, rep Reporter) map[string]func() subject {
	ctx := context.Background()
	one := func(resource string) subject {
		kube := kubefake.NewClientset()
		dyn := newDynamic()
		argoServed(kube)
		cfg := Config{Selector: DefaultConfigMapSelector, CRDCheckInterval: 20 * time.Millisecond}
		switch resource {
		case "configmaps":
			cfg.ConfigMaps = true
		case "workflowtemplates":
			cfg.WorkflowTemplates = true
		case "clusterworkflowtemplates":
			cfg.ClusterWorkflowTemplates = true
		case "cronworkflows":
			cfg.CronWorkflows = true
		}
		all, err := newSources(cfg, Clients{Kube: kube, Dynamic: dyn, Discovery: kube.Discovery()}, rep)
		if err != nil {
			t.Fatal(err)
		}
		s := subject{src: all[len(all)-1]} // the static source comes first
		labels := map[string]string{wire.LabelPartOf: wire.PartOf}
		if resource == "configmaps" {
			cms := kube.CoreV1().ConfigMaps("ns")
			s.put = func(t *testing.T, name, image string) {
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: labels}, Data: map[string]string{"images": `["` + image + `"]`}}
				if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			s.bad = func(t *testing.T) {
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "ns", Labels: labels},
					Data: map[string]string{"images": "{not a list"}}
				if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			s.drop = func(t *testing.T, name string) {
				if err := cms.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			return s
		}
		gvr := wfv1.SchemeGroupVersion.WithResource(resource)
		kind := strings.TrimSuffix(argoGVRs[gvr], "List")
		ns := "ns"
		if resource == "clusterworkflowtemplates" {
			ns = ""
		}
		client := dyn.Resource(gvr).Namespace(ns)
		create := func(t *testing.T, name string, container map[string]any) {
			if _, err := client.Create(ctx, argoObject(kind, ns, name, argoSpec(kind, container)), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		s.put = func(t *testing.T, name, image string) { create(t, name, map[string]any{"image": image}) }
		// A YAML bool where Argo wants a string: the Argo CRDs keep such
		// fields, and a typed LIST would fail for every object of the kind.
		s.bad = func(t *testing.T) { create(t, "bad", map[string]any{"image": "alpine", "command": []any{true}}) }
		s.drop = func(t *testing.T, name string) {
			if err := client.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	out := map[string]func() subject{
		"static": func() subject { return subject{src: NewStatic([]string{"docker.io/library/alpine:latest"})} },
	}
	for _, resource := range []string{"configmaps", "workflowtemplates", "clusterworkflowtemplates", "cronworkflows"} {
		out[resource] = func() subject { return one(resource) }
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
			set := NewSetOf(s.src)
			set.Start(ctx, func() { changes.Add(1) })
			defer set.Wait()
			defer cancel()
			eventually(t, "HasSynced", s.src.HasSynced)
			if s.src.Name() == "" {
				t.Error("a source needs a name for logs and metrics")
			}
			if h := s.src.Health(); h.Source != s.src.Name() || !h.OK() {
				t.Errorf("a synced source's health is %+v", h)
			}
			if s.put == nil { // static
				if len(s.src.Wanted()) == 0 {
					t.Fatal("a static source wants nothing")
				}
				return
			}
			before := changes.Load()
			s.put(t, "x", "alpine:3.20")
			eventually(t, "the new object's image is wanted", func() bool { return wants(s.src, "docker.io/library/alpine:3.20") })
			// onChange follows the store's update; it may come a moment later.
			eventually(t, "onChange is called", func() bool { return changes.Load() != before })
			problems := rep.count()
			s.bad(t)
			eventually(t, "the bad object is reported", func() bool { return rep.count() > problems })
			if !wants(s.src, "docker.io/library/alpine:3.20") {
				t.Error("a bad object made the good one's image unwanted")
			}
			s.put(t, "after", "nginx:1.27")
			eventually(t, "an object written after the bad one is read", func() bool { return wants(s.src, "docker.io/library/nginx:1.27") })
			if h := s.src.Health(); h.Objects != 3 || h.Skipped != 1 || !h.OK() {
				t.Errorf("health %+v, want 3 objects read, 1 skipped, OK", h)
			}
			s.drop(t, "x")
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
	dyn := newDynamic()
	rep := &recorder{}
	disc := &lockedDiscovery{FakeDiscovery: kube.Discovery().(*fakediscovery.FakeDiscovery)}
	all, err := newSources(Config{WorkflowTemplates: true, CRDCheckInterval: 20 * time.Millisecond},
		Clients{Kube: kube, Dynamic: dyn, Discovery: disc}, rep)
	if err != nil {
		t.Fatal(err)
	}
	s := all[1]
	ctx, cancel := context.WithCancel(context.Background())
	set := NewSetOf(s)
	set.Start(ctx, func() {})
	defer set.Wait()
	defer cancel()
	eventually(t, "synced while the CRD is missing", s.HasSynced)
	if rep.count() == 0 {
		t.Error("the missing CRD was not reported")
	}
	if h := s.Health(); !h.Missing || !h.OK() {
		t.Errorf("health while the CRD is missing: %+v, want missing and OK", h)
	}
	wt := argoObject("WorkflowTemplate", "ns", "x", argoSpec("WorkflowTemplate", map[string]any{"image": "nginx:1.27"}))
	if _, err := dyn.Resource(wfv1.SchemeGroupVersion.WithResource("workflowtemplates")).Namespace("ns").Create(ctx, wt, metav1.CreateOptions{}); err != nil {
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

// A source that may not read shows it in its health, is never synced, and
// reports the error once, not on every retry of the reflector.
func TestForbiddenSourceShowsInHealth(t *testing.T) {
	kube := kubefake.NewClientset()
	kube.PrependReactor("list", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("configmaps"), "", errors.New("RBAC says no"))
	})
	rep := &recorder{}
	set, err := NewSet(Config{ConfigMaps: true, Selector: DefaultConfigMapSelector}, Clients{Kube: kube, Discovery: kube.Discovery()}, rep)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	set.Start(ctx, func() {})
	defer set.Wait()
	defer cancel()
	var h wire.Health
	eventually(t, "the forbidden LIST shows in health", func() bool {
		h = set.Health()[1]
		return strings.Contains(h.Problem, "forbidden")
	})
	if h.OK() || set.HasSynced() {
		t.Errorf("a forbidden source counts as working: %+v", h)
	}
	waitCtx, stop := context.WithTimeout(ctx, 100*time.Millisecond)
	defer stop()
	if err := set.WaitForSync(waitCtx); err == nil || !strings.Contains(err.Error(), "configmaps") {
		t.Errorf("WaitForSync = %v, want an error naming the source", err)
	}
	if n := rep.count(); n != 1 {
		t.Errorf("the forbidden LIST was reported %d times, want once", n)
	}
}
