package install

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

var (
	daemonSetGVK   = appsv1.SchemeGroupVersion.WithKind("DaemonSet")
	namespaceGVK   = corev1.SchemeGroupVersion.WithKind("Namespace")
	roleGVK        = rbacv1.SchemeGroupVersion.WithKind("Role")
	roleBindingGVK = rbacv1.SchemeGroupVersion.WithKind("RoleBinding")
)

// Install installs o, or updates the installation in o.Namespace:
//   - a source namespace that does not exist is refused before anything
//     changes (its Role cannot be created, and creating the namespace would
//     hide a typo);
//   - a namespace that existed before is shared, not taken over: notes (if
//     not nil) is told so before anything changes;
//   - Objects(o) are applied;
//   - the Roles of source namespaces o no longer reads are deleted;
//   - the ClusterRole and ClusterRoleBinding that installations shared
//     before they had their own are removed if only this one used them.
func (a *Applier) Install(ctx context.Context, o Options, notes io.Writer) ([]Result, error) {
	if err := a.refuseHelmRelease(ctx, o.Namespace, "install"); err != nil {
		return nil, err
	}
	if err := a.checkSourceNamespaces(ctx, o); err != nil {
		return nil, err
	}
	ns, err := a.get(ctx, namespaceGVK, "", o.Namespace)
	if err != nil {
		return nil, err
	}
	if ns != nil && foreignNamespace(ns) && notes != nil {
		if _, err := fmt.Fprintln(notes, sharedNamespaceNote(o.Namespace)); err != nil {
			return nil, fmt.Errorf("writing a note: %w", err)
		}
	}
	objs, err := Objects(o)
	if err != nil {
		return nil, err
	}
	results, err := a.Apply(ctx, objs)
	if err != nil {
		return results, err
	}
	installed, err := a.installedSourceNamespaces(ctx, o.Namespace)
	if err != nil {
		return results, err
	}
	var stale []runtime.Object
	for _, sns := range installed {
		if !slices.Contains(o.sourceNamespaces(), sns) {
			stale = append(stale, sourceRBAC(o.Namespace, sns)...)
		}
	}
	if len(stale) > 0 {
		rs, err := a.Delete(ctx, stale)
		results = append(results, rs...)
		if err != nil {
			return results, err
		}
	}
	rs, err := a.removeLegacyRBAC(ctx, o.Namespace)
	return append(results, rs...), err
}

// Uninstall deletes the installation in namespace: the objects Objects
// makes, the Roles it keeps in source namespaces (found by their labels),
// and the ClusterRole and ClusterRoleBinding installations shared before
// they had their own if only this one used them. A namespace that existed
// before the installation is kept.
func (a *Applier) Uninstall(ctx context.Context, namespace string) ([]Result, error) {
	if err := a.refuseHelmRelease(ctx, namespace, "uninstall"); err != nil {
		return nil, err
	}
	// Only the kinds and names of the objects matter to Delete.
	o := DefaultOptions("")
	o.Namespace = namespace
	var err error
	if o.SourceNamespaces, err = a.installedSourceNamespaces(ctx, namespace); err != nil {
		return nil, err
	}
	objs, err := Objects(o)
	if err != nil {
		return nil, err
	}
	// And the wanted set, which the planner writes: its head and parts.
	for _, name := range wanted.Names() {
		objs = append(objs, &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}})
	}
	results, err := a.Delete(ctx, objs)
	// The parts a set never took are not worth a line each.
	results = slices.DeleteFunc(results, func(r Result) bool {
		return r.Kind == "ConfigMap" && r.Action == "not found" && r.Name != wanted.ConfigMap && slices.Contains(wanted.Names(), r.Name)
	})
	if err != nil {
		return results, err
	}
	rs, err := a.removeLegacyRBAC(ctx, namespace)
	return append(results, rs...), err
}

// Helm's marks on the objects of a release.
const (
	helmReleaseName      = "meta.helm.sh/release-name"
	helmReleaseNamespace = "meta.helm.sh/release-namespace"
)

// refuseHelmRelease refuses to change an installation that a Helm release
// manages (its DaemonSet carries Helm's marks): the plugin and Helm would
// fight over its objects, and Helm's record of the release would no longer
// say what runs. Helm refuses the other way by itself: it adopts no object
// without its marks. The message says how to move over.
func (a *Applier) refuseHelmRelease(ctx context.Context, namespace, verb string) error {
	ds, err := a.get(ctx, daemonSetGVK, namespace, Name)
	if err != nil || ds == nil {
		return err
	}
	release := ds.GetAnnotations()[helmReleaseName]
	if release == "" {
		return nil
	}
	if ns := ds.GetAnnotations()[helmReleaseNamespace]; ns != "" {
		namespace = ns
	}
	if verb == "uninstall" {
		return fmt.Errorf("image-cache-daemon in namespace %[1]s is Helm release %[2]s: remove it with `helm uninstall %[2]s -n %[1]s`", namespace, release)
	}
	return fmt.Errorf("image-cache-daemon in namespace %[1]s is Helm release %[2]s: change it with `helm upgrade %[2]s -n %[1]s` (kubectl imagecache install would fight Helm over its objects); "+
		"to manage it with the plugin instead, run `helm uninstall %[2]s -n %[1]s`, then kubectl imagecache install (the image list goes with the release: save it first with kubectl imagecache list)", namespace, release)
}

// sharedNamespaceNote says what installing into a namespace that existed
// before means.
func sharedNamespaceNote(namespace string) string {
	return fmt.Sprintf("namespace %s existed before image-cache-daemon: it is used as it is "+
		"(its Pod Security labels are not changed, and the restricted profile is not enforced on the prefetch pods there); "+
		"uninstall will keep it and remove only image-cache-daemon's objects in it.", namespace)
}

// checkSourceNamespaces refuses source namespaces that do not exist (the
// install namespace is created by the installation).
func (a *Applier) checkSourceNamespaces(ctx context.Context, o Options) error {
	var missing []string
	for _, sns := range o.sourceNamespaces() {
		if sns == o.Namespace {
			continue
		}
		ns, err := a.get(ctx, namespaceGVK, "", sns)
		if err != nil {
			return err
		}
		if ns == nil {
			missing = append(missing, sns)
		}
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("source namespace %s does not exist: create it first (kubectl create namespace %[1]s) or leave it out of --source-namespace; nothing was applied", missing[0])
	default:
		return fmt.Errorf("source namespaces %s do not exist: create them first (kubectl create namespace NAME) or leave them out of --source-namespace; nothing was applied", strings.Join(missing, ", "))
	}
}

// installedSourceNamespaces returns the namespaces that hold a Role or
// RoleBinding of the installation in namespace granting it its sources,
// sorted.
func (a *Applier) installedSourceNamespaces(ctx context.Context, namespace string) ([]string, error) {
	selector := k8slabels.SelectorFromSet(k8slabels.Set{wire.LabelPartOf: Name, wire.LabelInstance: namespace}).String()
	var out []string
	for _, gvk := range []schema.GroupVersionKind{roleGVK, roleBindingGVK} {
		ri, err := a.resourceFor(gvk, metav1.NamespaceAll)
		if err != nil {
			return nil, err
		}
		list, err := ri.List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, fmt.Errorf("listing the %ss of the installation in namespace %s: %w", gvk.Kind, namespace, err)
		}
		for _, item := range list.Items {
			if item.GetName() == RBACName(namespace) && !slices.Contains(out, item.GetNamespace()) {
				out = append(out, item.GetNamespace())
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// get reads one object; nil when there is none.
func (a *Applier) get(ctx context.Context, gvk schema.GroupVersionKind, namespace, name string) (*unstructured.Unstructured, error) {
	ri, err := a.resourceFor(gvk, namespace)
	if err != nil {
		return nil, err
	}
	u, err := ri.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		where := name
		if namespace != "" {
			where = namespace + "/" + name
		}
		return nil, fmt.Errorf("reading %s %s: %w", gvk.Kind, where, err)
	}
	return u, nil
}
