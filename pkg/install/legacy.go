package install

import (
	"context"
	"fmt"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// legacyName is the name of the ClusterRole and ClusterRoleBinding that
// every installation shared before they were named per namespace
// (RBACName): installing into a second namespace re-pointed the binding to
// its service account, and uninstalling it deleted the first installation's
// permissions.
const legacyName = Name

// legacyWhat says what a legacy object is, in results.
const legacyWhat = "an earlier version's, shared by every installation"

var (
	clusterRoleGVK        = rbacv1.SchemeGroupVersion.WithKind("ClusterRole")
	clusterRoleBindingGVK = rbacv1.SchemeGroupVersion.WithKind("ClusterRoleBinding")
)

// removeLegacyRBAC deletes the shared ClusterRoleBinding if its only
// subject is the service account of the installation in namespace, then
// the shared ClusterRole if no binding refers to it any more. What serves
// someone else is left alone, and its result says why.
func (a *Applier) removeLegacyRBAC(ctx context.Context, namespace string) ([]Result, error) {
	var results []Result
	binding, err := a.get(ctx, clusterRoleBindingGVK, "", legacyName)
	if err != nil {
		return nil, err
	}
	if binding != nil {
		r := Result{Kind: binding.GetKind(), Name: legacyName}
		subjects, _, err := unstructured.NestedSlice(binding.Object, "subjects")
		if err != nil {
			return nil, fmt.Errorf("reading the subjects of ClusterRoleBinding %s: %w", legacyName, err)
		}
		switch {
		case !madeByUs(binding):
			r.Action = "kept (not made by image-cache-daemon)"
		case len(subjects) == 1 && isServiceAccountOf(subjects[0], namespace):
			if r.Action, err = a.deleteLegacy(ctx, clusterRoleBindingGVK, "this installation now has its own, "+RBACName(namespace)); err != nil {
				return nil, err
			}
		default:
			r.Action = fmt.Sprintf("kept (%s; it binds %s, not this installation's service account alone: "+
				"installing this version where they are installed removes it)", legacyWhat, describeSubjects(subjects))
		}
		results = append(results, r)
	}

	role, err := a.get(ctx, clusterRoleGVK, "", legacyName)
	if err != nil || role == nil {
		return results, err
	}
	r := Result{Kind: role.GetKind(), Name: legacyName}
	if !madeByUs(role) {
		r.Action = "kept (not made by image-cache-daemon)"
		return append(results, r), nil
	}
	referrers, err := a.legacyRoleReferrers(ctx)
	if err != nil {
		return results, err
	}
	if len(referrers) > 0 {
		r.Action = fmt.Sprintf("kept (%s; still bound by %s)", legacyWhat, listShort(referrers))
		return append(results, r), nil
	}
	if r.Action, err = a.deleteLegacy(ctx, clusterRoleGVK, "no binding refers to it any more"); err != nil {
		return results, err
	}
	return append(results, r), nil
}

// deleteLegacy deletes the legacy object of kind gvk and returns its result's
// action.
func (a *Applier) deleteLegacy(ctx context.Context, gvk schema.GroupVersionKind, why string) (string, error) {
	ri, err := a.resourceFor(gvk, "")
	if err != nil {
		return "", err
	}
	if err := ri.Delete(ctx, legacyName, metav1.DeleteOptions{}); err != nil {
		return "", fmt.Errorf("deleting %s %s, shared by the installations of an earlier version: %w", gvk.Kind, legacyName, err)
	}
	return "deleted (" + legacyWhat + "; " + why + ")", nil
}

// legacyRoleReferrers names the ClusterRoleBindings and RoleBindings (a
// RoleBinding may grant a ClusterRole in its namespace) that refer to the
// legacy ClusterRole.
func (a *Applier) legacyRoleReferrers(ctx context.Context) ([]string, error) {
	var out []string
	for _, gvk := range []schema.GroupVersionKind{clusterRoleBindingGVK, roleBindingGVK} {
		ri, err := a.resourceFor(gvk, metav1.NamespaceAll)
		if err != nil {
			return nil, err
		}
		list, err := ri.List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing %ss, to see whether one still refers to ClusterRole %s: %w", gvk.Kind, legacyName, err)
		}
		for _, b := range list.Items {
			kind, _, _ := unstructured.NestedString(b.Object, "roleRef", "kind")
			name, _, _ := unstructured.NestedString(b.Object, "roleRef", "name")
			if kind == "ClusterRole" && name == legacyName {
				out = append(out, strings.ToLower(gvk.Kind)+"/"+describe(&b))
			}
		}
	}
	return out, nil
}

func madeByUs(u *unstructured.Unstructured) bool {
	return u.GetLabels()[wire.LabelPartOf] == Name
}

// isServiceAccountOf says whether subject (of an unstructured binding) is
// the daemon's service account in namespace.
func isServiceAccountOf(subject any, namespace string) bool {
	s, ok := subject.(map[string]any)
	return ok && s["kind"] == "ServiceAccount" && s["name"] == Name && s["namespace"] == namespace
}

// describeSubjects names the subjects of an unstructured binding, as
// kubectl describe does (serviceaccount ns/name, user name, group name).
func describeSubjects(subjects []any) string {
	var names []string
	for _, subject := range subjects {
		s, _ := subject.(map[string]any)
		kind, _ := s["kind"].(string)
		name, _ := s["name"].(string)
		if ns, _ := s["namespace"].(string); ns != "" {
			name = ns + "/" + name
		}
		names = append(names, strings.ToLower(kind)+" "+name)
	}
	if len(names) == 0 {
		return "no subject"
	}
	return listShort(names)
}

// listShort joins the first three of names and counts the others, so that
// a message stays short however many there are.
func listShort(names []string) string {
	const shown = 3
	if len(names) <= shown {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:shown], ", "), len(names)-shown)
}
