// Package installtest is a fake cluster for the tests of what installs
// image-cache-daemon: an install.Applier on a fake dynamic client that
// keeps what is applied and records, in order, what was applied and
// deleted.
package installtest

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dcherman/image-cache-daemon/pkg/install"
)

// Cluster is the fake cluster behind an Applier.
type Cluster struct {
	t      testing.TB
	mapper meta.RESTMapper
	kinds  map[string]schema.GroupVersionKind
	// Dynamic is the fake client; its Actions() are every request made.
	Dynamic *dynamicfake.FakeDynamicClient
	// Acts are the applies ("apply Kind [namespace/]name") and deletes
	// ("delete resource [namespace/]name") made, in order.
	Acts []string
}

// NewApplier returns an Applier on a fake cluster that holds existing
// (typed or unstructured objects of the kinds an installation has). The
// fake answers a server-side apply by storing the applied object as it is.
func NewApplier(t testing.TB, existing ...runtime.Object) (*install.Applier, *Cluster) {
	t.Helper()
	mapper := meta.NewDefaultRESTMapper(nil)
	listKinds := map[schema.GroupVersionResource]string{}
	kinds := map[string]schema.GroupVersionKind{}
	for _, obj := range Objects(t, install.DefaultOptions("v1.0.0")) {
		u, err := install.Unstructured(obj)
		if err != nil {
			t.Fatal(err)
		}
		gvk := u.GroupVersionKind()
		if _, ok := kinds[gvk.Kind]; ok {
			continue
		}
		kinds[gvk.Kind] = gvk
		scope := meta.RESTScopeNamespace
		if u.GetNamespace() == "" {
			scope = meta.RESTScopeRoot
		}
		mapper.Add(gvk, scope)
		plural, _ := meta.UnsafeGuessKindToResource(gvk)
		listKinds[plural] = gvk.Kind + "List"
	}
	var objs []runtime.Object
	for _, obj := range existing {
		u, err := install.Unstructured(obj)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, u)
	}
	c := &Cluster{t: t, mapper: mapper, kinds: kinds}
	c.Dynamic = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds, objs...)
	tracker := c.Dynamic.Tracker()
	c.Dynamic.PrependReactor("patch", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchAction)
		if p.GetPatchType() != types.ApplyPatchType {
			t.Errorf("patch of type %s, want server-side apply", p.GetPatchType())
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(p.GetPatch()); err != nil {
			return true, nil, err
		}
		c.Acts = append(c.Acts, "apply "+u.GetKind()+" "+key(p.GetNamespace(), u.GetName()))
		gvr, ns := p.GetResource(), p.GetNamespace()
		_, err := tracker.Get(gvr, ns, u.GetName())
		switch {
		case apierrors.IsNotFound(err):
			err = tracker.Create(gvr, u, ns)
		case err == nil:
			err = tracker.Update(gvr, u, ns)
		}
		if err != nil {
			return true, nil, err
		}
		stored, err := tracker.Get(gvr, ns, u.GetName())
		return true, stored, err
	})
	c.Dynamic.PrependReactor("delete", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		c.Acts = append(c.Acts, "delete "+a.GetResource().Resource+" "+key(a.GetNamespace(), a.(k8stesting.DeleteAction).GetName()))
		return false, nil, nil
	})
	return &install.Applier{Dynamic: c.Dynamic, Mapper: mapper}, c
}

// Get returns the object of kind (of an installation: Namespace, Role,
// ClusterRoleBinding...) namespace/name, or nil when there is none.
func (c *Cluster) Get(kind, namespace, name string) *unstructured.Unstructured {
	c.t.Helper()
	gvk, ok := c.kinds[kind]
	if !ok {
		c.t.Fatalf("the fake cluster does not serve %s", kind)
	}
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		c.t.Fatal(err)
	}
	u, err := c.Dynamic.Resource(m.Resource).Namespace(namespace).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		c.t.Fatalf("reading %s %s: %v", kind, key(namespace, name), err)
	}
	return u
}

func key(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// Objects are the objects of installation o; rendering them must not fail.
func Objects(t testing.TB, o install.Options) []runtime.Object {
	t.Helper()
	objs, err := install.Objects(o)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}
