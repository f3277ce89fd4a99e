package install

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
)

// fakeApplier is an Applier on a fake dynamic client holding existing; the
// fake answers server-side apply by echoing the applied object, and records
// what was applied and deleted.
func fakeApplier(t *testing.T, existing ...runtime.Object) (*Applier, *[]string) {
	t.Helper()
	mapper := meta.NewDefaultRESTMapper(nil)
	resources := map[schema.GroupVersionResource]string{}
	for _, obj := range Objects(DefaultOptions("v1.0.0")) {
		u, err := Unstructured(obj)
		if err != nil {
			t.Fatal(err)
		}
		gvk := u.GroupVersionKind()
		scope := meta.RESTScopeNamespace
		if u.GetNamespace() == "" {
			scope = meta.RESTScopeRoot
		}
		plural, _ := meta.UnsafeGuessKindToResource(gvk)
		mapper.Add(gvk, scope)
		resources[plural] = gvk.Kind + "List"
	}
	var unstructuredExisting []runtime.Object
	for _, obj := range existing {
		u, err := Unstructured(obj)
		if err != nil {
			t.Fatal(err)
		}
		unstructuredExisting = append(unstructuredExisting, u)
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), resources, unstructuredExisting...)
	var acts []string
	dyn.PrependReactor("patch", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchAction)
		if p.GetPatchType() != types.ApplyPatchType {
			t.Errorf("patch of type %s, want server-side apply", p.GetPatchType())
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(p.GetPatch()); err != nil {
			return true, nil, err
		}
		acts = append(acts, "apply "+u.GetKind()+" "+u.GetName())
		return true, u, nil
	})
	dyn.PrependReactor("delete", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		acts = append(acts, "delete "+a.GetResource().Resource+" "+a.(k8stesting.DeleteAction).GetName())
		return false, nil, nil
	})
	return &Applier{Dynamic: dyn, Mapper: mapper}, &acts
}

func results(rs []Result) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Kind+"/"+r.Name+" "+r.Action)
	}
	return strings.Join(out, "\n")
}

// An existing image list holds the user's images: install keeps it as it is.
func TestApplyKeepsAnExistingImageList(t *testing.T) {
	var list runtime.Object
	for _, obj := range Objects(DefaultOptions("v1.0.0")) {
		if u, _ := Unstructured(obj); u.GetKind() == "ConfigMap" {
			list = obj.DeepCopyObject()
		}
	}
	a, acts := fakeApplier(t, list)
	rs, err := a.Apply(context.Background(), Objects(DefaultOptions("v1.0.0")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(results(rs), "ConfigMap/"+DefaultConfigMap+" kept") {
		t.Errorf("results:\n%s\nwant the image list kept", results(rs))
	}
	for _, act := range *acts {
		if strings.HasPrefix(act, "apply ConfigMap") {
			t.Errorf("the existing image list was applied over: %v", *acts)
		}
	}
	if !strings.Contains(results(rs), "DaemonSet/"+Name+" created") {
		t.Errorf("results:\n%s\nwant the DaemonSet created", results(rs))
	}
}

// A namespace that was there before (default, a team's) is never labelled
// by apply nor deleted by uninstall.
func TestForeignNamespaceIsNeitherLabelledNorDeleted(t *testing.T) {
	o := DefaultOptions("v1.0.0")
	o.Namespace = "platform"
	foreign := &unstructured.Unstructured{}
	foreign.SetAPIVersion("v1")
	foreign.SetKind("Namespace")
	foreign.SetName("platform")
	a, acts := fakeApplier(t, foreign)
	rs, err := a.Apply(context.Background(), Objects(o))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(results(rs), "Namespace/platform kept") {
		t.Errorf("apply results:\n%s\nwant the namespace kept", results(rs))
	}
	rs, err = a.Delete(context.Background(), Objects(o))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(results(rs), "Namespace/platform kept (not created by image-cache-daemon)") {
		t.Errorf("delete results:\n%s\nwant the namespace kept", results(rs))
	}
	for _, act := range *acts {
		if strings.HasSuffix(act, "Namespace platform") || act == "delete namespaces platform" {
			t.Errorf("the foreign namespace was touched: %v", *acts)
		}
	}
	// The workload goes first: its pods must not outlive their RBAC.
	if len(*acts) == 0 || !strings.HasPrefix(nthDelete(*acts, 0), "delete daemonsets") {
		t.Errorf("delete order %v, want the DaemonSet first", *acts)
	}
}

// Uninstalling what is not there is not an error.
func TestDeleteOfNothingSaysNotFound(t *testing.T) {
	a, _ := fakeApplier(t)
	rs, err := a.Delete(context.Background(), Objects(DefaultOptions("v1.0.0")))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Action != "not found" {
			t.Errorf("%s/%s: %s, want not found", r.Kind, r.Name, r.Action)
		}
	}
}

// nthDelete returns the i-th delete action.
func nthDelete(acts []string, i int) string {
	n := 0
	for _, a := range acts {
		if strings.HasPrefix(a, "delete ") {
			if n == i {
				return a
			}
			n++
		}
	}
	return ""
}
