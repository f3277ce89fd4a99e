package install

import (
	"context"
	"fmt"
	"maps"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// FieldManager names the installer's server-side applies.
const FieldManager = "kubectl-imagecache"

// Result says what happened to one object.
type Result struct {
	Kind, Namespace, Name string
	// Action is "created", "configured", "unchanged" or "kept" (an image
	// list that exists already is never overwritten).
	Action string
}

// Applier applies an installation's objects with server-side apply.
type Applier struct {
	Dynamic dynamic.Interface
	Mapper  meta.RESTMapper
}

// Apply applies objs in order. ConfigMaps labelled as image lists are only
// created when missing: they hold the user's images (kubectl imagecache add
// writes them), and applying the installer's empty list would wipe them.
func (a *Applier) Apply(ctx context.Context, objs []runtime.Object) ([]Result, error) {
	var results []Result
	for _, obj := range objs {
		u, err := Unstructured(obj)
		if err != nil {
			return results, err
		}
		ri, err := a.resource(u)
		if err != nil {
			return results, err
		}
		r := Result{Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName()}
		before, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			before = nil
		case err != nil:
			return results, fmt.Errorf("reading %s %s: %w", u.GetKind(), describe(u), err)
		}
		if before != nil && (isImageList(u) || foreignNamespace(before)) {
			r.Action = "kept"
			results = append(results, r)
			continue
		}
		after, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		if err != nil {
			return results, fmt.Errorf("applying %s %s: %w", u.GetKind(), describe(u), err)
		}
		switch {
		case before == nil:
			r.Action = "created"
		case unchanged(before, after):
			r.Action = "unchanged"
		default:
			r.Action = "configured"
		}
		results = append(results, r)
	}
	return results, nil
}

// Delete deletes objs in reverse order (the workload first) and waits for
// nothing; NotFound is not an error. Deleting the DaemonSet lets the garbage
// collector remove the prefetch pods it owns; deleting the namespace
// removes whatever is left in it.
func (a *Applier) Delete(ctx context.Context, objs []runtime.Object) ([]Result, error) {
	var results []Result
	background := metav1.DeletePropagationBackground
	for i := len(objs) - 1; i >= 0; i-- {
		u, err := Unstructured(objs[i])
		if err != nil {
			return results, err
		}
		ri, err := a.resource(u)
		if err != nil {
			return results, err
		}
		r := Result{Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName(), Action: "deleted"}
		if u.GetKind() == "Namespace" {
			existing, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
			if err == nil && foreignNamespace(existing) {
				r.Action = "kept (not created by image-cache-daemon)"
				results = append(results, r)
				continue
			}
		}
		err = ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{PropagationPolicy: &background})
		switch {
		case apierrors.IsNotFound(err):
			r.Action = "not found"
		case err != nil:
			return results, fmt.Errorf("deleting %s %s: %w", u.GetKind(), describe(u), err)
		}
		results = append(results, r)
	}
	return results, nil
}

// unchanged reports whether an apply left obj as it was. For a kind with a
// generation (one with a status, such as a DaemonSet or a
// ValidatingAdmissionPolicy), a status written by its controller meanwhile
// changes the resourceVersion but not the generation: only the spec and
// the metadata the installer writes count.
func unchanged(before, after *unstructured.Unstructured) bool {
	if before.GetResourceVersion() == after.GetResourceVersion() {
		return true
	}
	// What the installer applied is what it applied before: its entry in
	// the managed fields is as it was (an apply that changes nothing leaves
	// it alone), whatever others wrote meanwhile (a Lease's holder, a
	// status).
	if b, a := appliedFields(before), appliedFields(after); b != nil && a != nil && reflect.DeepEqual(b, a) {
		return true
	}
	return before.GetGeneration() > 0 && before.GetGeneration() == after.GetGeneration() &&
		maps.Equal(before.GetLabels(), after.GetLabels()) && maps.Equal(before.GetAnnotations(), after.GetAnnotations())
}

// appliedFields is the installer's entry in obj's managed fields, nil if it
// has none.
func appliedFields(obj *unstructured.Unstructured) *metav1.ManagedFieldsEntry {
	for _, f := range obj.GetManagedFields() {
		if f.Manager == FieldManager && f.Operation == metav1.ManagedFieldsOperationApply {
			return &f
		}
	}
	return nil
}

func (a *Applier) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	return a.resourceFor(u.GroupVersionKind(), u.GetNamespace())
}

// resourceFor is the client of kind gvk in namespace (ignored for a
// cluster-scoped kind; metav1.NamespaceAll lists every namespace).
func (a *Applier) resourceFor(gvk schema.GroupVersionKind, namespace string) (dynamic.ResourceInterface, error) {
	m, err := a.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("the API server does not serve %s: %w", gvk, err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return a.Dynamic.Resource(m.Resource).Namespace(namespace), nil
	}
	return a.Dynamic.Resource(m.Resource), nil
}

// foreignNamespace: a namespace that existed before the installation (say
// default or kube-system) is used as it is, never labelled (that would put
// the restricted Pod Security profile on it) and never deleted.
func foreignNamespace(u *unstructured.Unstructured) bool {
	return u.GetKind() == "Namespace" && u.GetLabels()[wire.LabelPartOf] != Name
}

func isImageList(u *unstructured.Unstructured) bool {
	return u.GetKind() == "ConfigMap" && u.GetLabels()[wire.LabelComponent] == wire.ComponentImages
}

func describe(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetName()
	}
	return u.GetNamespace() + "/" + u.GetName()
}
