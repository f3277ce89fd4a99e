//go:build e2e

package e2e

import (
	"context"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// TestTwoInstallations installs a second image-cache-daemon beside a first
// and uninstalls it as kubectl imagecache uninstall does. This once took the
// first installation's permissions away (the benchmark's install in
// icd-bench) while its daemon stayed Ready with a clean status: the first
// must keep its RBAC, and a fresh daemon of it must read its sources and
// cache a new image without a "forbidden".
func TestTwoInstallations(t *testing.T) {
	ctx := context.Background()
	suffix := strings.ToLower(rand.String(4))
	first := install.DefaultOptions("e2e")
	first.Namespace, first.Image, first.ResyncPeriod = "icd-first-"+suffix, daemonImage(t), 0
	installDaemon(t, first)
	users := newNamespace(t)

	second := first
	second.Namespace = "icd-second-" + suffix
	a := applier(t)
	if _, err := a.Install(ctx, second, io.Discard); err != nil {
		t.Fatalf("installing the second: %v", err)
	}
	// Should the test stop before the second's uninstall below.
	t.Cleanup(func() { _, _ = a.Uninstall(context.Background(), second.Namespace) })
	waitRollout(t, second.Namespace)

	t.Run("both cache", func(t *testing.T) {
		img := randomImage(t, "e2e/two-installs:"+rand.String(6), uint64(rand.Int()))
		imageList(t, users, "two-installs", "- "+img+"\n")
		waitCached(t, first.Namespace, img)
		waitCached(t, second.Namespace, img)
	})

	results, err := a.Uninstall(ctx, second.Namespace)
	if err != nil {
		t.Fatalf("uninstalling the second: %v", err)
	}
	for _, r := range results {
		if (r.Namespace == "" || r.Namespace == first.Namespace) && strings.Contains(r.Name, first.Namespace) {
			t.Errorf("uninstalling the second acted on the first's %s %s: %s", r.Kind, r.Name, r.Action)
		}
	}
	err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := env.client.CoreV1().Namespaces().Get(ctx, second.Namespace, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("namespace %s was not removed: %v", second.Namespace, err)
	}

	t.Run("the second's cluster RBAC is gone", func(t *testing.T) {
		for _, name := range []string{install.RBACName(second.Namespace), install.PlannerRBACName(second.Namespace)} {
			if _, err := env.client.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("ClusterRole %s: %v, want it gone", name, err)
			}
			if _, err := env.client.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("ClusterRoleBinding %s: %v, want it gone", name, err)
			}
		}
	})

	t.Run("the first keeps its RBAC", func(t *testing.T) {
		name := install.RBACName(first.Namespace)
		if _, err := env.client.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("ClusterRole %s: %v", name, err)
		}
		crb, err := env.client.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("ClusterRoleBinding %s: %v", name, err)
		}
		sa := rbacv1.Subject{Kind: "ServiceAccount", Name: install.Name, Namespace: first.Namespace}
		if crb.RoleRef.Name != name || !slices.Contains(crb.Subjects, sa) {
			t.Errorf("ClusterRoleBinding %s grants %s to %v, want %s to %v", name, crb.RoleRef.Name, crb.Subjects, name, sa)
		}
		// What the API server decides, not only what the objects say: the
		// planner reads the sources, the node daemon none of them.
		for _, attr := range []authorizationv1.ResourceAttributes{
			{Verb: "list", Resource: "configmaps", Namespace: users},
			{Verb: "watch", Resource: "configmaps"},
			{Verb: "list", Group: "argoproj.io", Resource: "workflowtemplates", Namespace: users},
			{Verb: "list", Group: "argoproj.io", Resource: "clusterworkflowtemplates"},
			{Verb: "list", Group: "argoproj.io", Resource: "cronworkflows"},
			{Verb: "create", Resource: "events", Namespace: users},
		} {
			if !allowed(t, first.Namespace, wanted.Planner, attr) {
				t.Errorf("the first's planner may not %s %s (namespace %q)", attr.Verb, attr.Resource, attr.Namespace)
			}
			if attr.Verb != "create" && allowed(t, first.Namespace, install.Name, attr) {
				t.Errorf("the first's node daemon may %s %s (namespace %q): only the planner may read the sources", attr.Verb, attr.Resource, attr.Namespace)
			}
		}
		for _, attr := range []authorizationv1.ResourceAttributes{
			{Verb: "watch", Resource: "configmaps", Namespace: first.Namespace, Name: wanted.ConfigMap},
			{Verb: "get", Resource: "configmaps", Namespace: first.Namespace, Name: wanted.PartName(wanted.MaxParts)},
			{Verb: "get", Group: "coordination.k8s.io", Resource: "leases", Namespace: first.Namespace, Name: wanted.Planner},
			{Verb: "get", Resource: "nodes"},
			{Verb: "create", Resource: "pods", Namespace: first.Namespace},
		} {
			if !allowed(t, first.Namespace, install.Name, attr) {
				t.Errorf("the first's service account may not %s %s (namespace %q)", attr.Verb, attr.Resource, attr.Namespace)
			}
		}
	})

	// The node daemon's token reads no tenant's objects, as kubectl says it.
	t.Run("kubectl auth can-i", func(t *testing.T) {
		kubectl := os.Getenv("KUBECTL")
		if kubectl == "" {
			t.Fatal("KUBECTL is not set: run the e2e suite through make e2e, which passes the kubectl built with the cluster")
		}
		for _, tc := range []struct {
			sa, want string
			args     []string
		}{
			{install.Name, "no", []string{"list", "configmaps", "-A"}},
			{install.Name, "no", []string{"list", "configmaps", "-n", users}},
			{install.Name, "no", []string{"list", "workflowtemplates.argoproj.io", "-A"}},
			{install.Name, "yes", []string{"watch", "configmaps/" + wanted.ConfigMap, "-n", first.Namespace}},
			{wanted.Planner, "yes", []string{"list", "configmaps", "-A"}},
		} {
			args := append([]string{"auth", "can-i"}, tc.args...)
			args = append(args, "--as=system:serviceaccount:"+first.Namespace+":"+tc.sa)
			// The answer is the last line; a warning may come before it
			// (a resource type whose CRD is not installed).
			out, _ := exec.Command(kubectl, args...).CombinedOutput()
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if got := lines[len(lines)-1]; got != tc.want {
				t.Errorf("kubectl %s: %q, want %q", strings.Join(args, " "), got, tc.want)
			}
		}
	})

	// A running daemon's watches were authorised when they started and
	// would hide a loss for minutes: a fresh daemon lists its sources under
	// the RBAC there is now, and becomes ready only once it has.
	t.Run("a fresh daemon of the first caches a new image", func(t *testing.T) {
		restartDaemons(t, first.Namespace, "daemon")
		restartDaemons(t, first.Namespace, "planner")
		img := randomImage(t, "e2e/two-installs-after:"+rand.String(6), uint64(rand.Int()))
		imageList(t, users, "two-installs-after", "- "+img+"\n")
		waitCached(t, first.Namespace, img)
		pods, err := env.client.CoreV1().Pods(first.Namespace).List(ctx, metav1.ListOptions{LabelSelector: wire.LabelComponent + " in (" + wire.ComponentDaemon + "," + wire.ComponentPlanner + ")"})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("daemon pods of %s: %v (%d)", first.Namespace, err, len(pods.Items))
		}
		for _, p := range pods.Items {
			log := logs(t, first.Namespace, p.Name, p.Spec.Containers[0].Name)
			for _, line := range strings.Split(log, "\n") {
				if strings.Contains(strings.ToLower(line), "forbidden") {
					t.Errorf("daemon %s: %s", p.Name, line)
				}
			}
		}
	})
}

// allowed asks the API server whether the service account sa in ns may do
// attr.
func allowed(t *testing.T, ns, sa string, attr authorizationv1.ResourceAttributes) bool {
	t.Helper()
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               "system:serviceaccount:" + ns + ":" + sa,
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
		ResourceAttributes: &attr,
	}}
	got, err := env.client.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), review, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("asking whether %s may %s %s: %v", review.Spec.User, attr.Verb, attr.Resource, err)
	}
	return got.Status.Allowed
}

// restartDaemons deletes the pods of component (daemon, planner) in ns and
// waits until every one is replaced by a ready new one.
func restartDaemons(t *testing.T, ns, component string) {
	t.Helper()
	ctx := context.Background()
	selector := metav1.ListOptions{LabelSelector: wire.LabelComponent + "=" + component}
	pods, err := env.client.CoreV1().Pods(ns).List(ctx, selector)
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("daemon pods of %s: %v (%d)", ns, err, len(pods.Items))
	}
	old := map[types.UID]bool{}
	for _, p := range pods.Items {
		old[p.UID] = true
		if err := env.client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := env.client.CoreV1().Pods(ns).List(ctx, selector)
		if err != nil || len(pods.Items) < len(old) {
			return false, nil
		}
		for _, p := range pods.Items {
			if old[p.UID] || !podReady(p.Status.Conditions) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the daemon pods of %s were not all replaced by ready ones: %v\n%s", ns, err, daemonLogs(t, ns))
	}
}

func podReady(conds []corev1.PodCondition) bool {
	for _, c := range conds {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
