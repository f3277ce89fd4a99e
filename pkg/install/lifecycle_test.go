package install_test

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/install/installtest"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

func options(namespace string, sourceNamespaces ...string) install.Options {
	o := install.DefaultOptions("v1.0.0")
	o.Namespace, o.SourceNamespaces = namespace, sourceNamespaces
	return o
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// assertBinds checks that the installation in ns has its ClusterRole and a
// ClusterRoleBinding that grants it to its service account.
func assertBinds(t *testing.T, c *installtest.Cluster, ns string) {
	t.Helper()
	if c.Get("ClusterRole", "", install.RBACName(ns)) == nil {
		t.Errorf("ClusterRole %s is gone", install.RBACName(ns))
	}
	b := c.Get("ClusterRoleBinding", "", install.RBACName(ns))
	if b == nil {
		t.Fatalf("ClusterRoleBinding %s is gone", install.RBACName(ns))
	}
	var binding rbacv1.ClusterRoleBinding
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(b.Object, &binding); err != nil {
		t.Fatal(err)
	}
	want := rbacv1.Subject{Kind: "ServiceAccount", Name: install.Name, Namespace: ns}
	if binding.RoleRef.Name != install.RBACName(ns) || len(binding.Subjects) != 1 || binding.Subjects[0] != want {
		t.Errorf("ClusterRoleBinding %s grants %s to %v, want %s to %v", binding.Name, binding.RoleRef.Name, binding.Subjects, install.RBACName(ns), want)
	}
}

// The incident: a second installation's install and uninstall took the
// first one's permissions away.
func TestSecondInstallationLeavesTheFirstAlone(t *testing.T) {
	ctx := context.Background()
	a, c := installtest.NewApplier(t)
	for _, ns := range []string{"icd", "icd-bench"} {
		if _, err := a.Install(ctx, options(ns), &strings.Builder{}); err != nil {
			t.Fatal(err)
		}
	}
	assertBinds(t, c, "icd")
	assertBinds(t, c, "icd-bench")
	if _, err := a.Uninstall(ctx, "icd-bench"); err != nil {
		t.Fatal(err)
	}
	assertBinds(t, c, "icd")
	for _, kind := range []string{"ClusterRole", "ClusterRoleBinding"} {
		if c.Get(kind, "", install.RBACName("icd-bench")) != nil {
			t.Errorf("the uninstalled installation's %s is still there", kind)
		}
	}
	for _, act := range c.Acts {
		name := act[strings.LastIndexAny(act, " /")+1:]
		if strings.HasPrefix(act, "delete") && name == install.RBACName("icd") {
			t.Errorf("uninstalling icd-bench did %q", act)
		}
	}
}

// What an earlier version installed: one ClusterRole and one
// ClusterRoleBinding named image-cache-daemon for every installation.
func legacyRBAC(subjects ...rbacv1.Subject) []runtime.Object {
	labels := map[string]string{wire.LabelName: install.Name, wire.LabelPartOf: install.Name, wire.LabelComponent: "rbac"}
	return []runtime.Object{
		&rbacv1.ClusterRole{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
			ObjectMeta: metav1.ObjectMeta{Name: install.Name, Labels: labels},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"list", "watch"}}}},
		&rbacv1.ClusterRoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: install.Name, Labels: labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: install.Name},
			Subjects:   subjects},
	}
}

func serviceAccountIn(ns string) rbacv1.Subject {
	return rbacv1.Subject{Kind: "ServiceAccount", Name: install.Name, Namespace: ns}
}

// Upgrading (install) or uninstalling the installation in icd removes the
// shared ClusterRoleBinding only when it serves icd alone, and the shared
// ClusterRole only when nothing binds it any more; otherwise both stay and
// the results say why.
func TestLegacyRBAC(t *testing.T) {
	legacy := legacyRBAC(serviceAccountIn("icd"))
	otherBinding := &rbacv1.RoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: "reads-images", Namespace: "team"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: install.Name},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: "alice"}}}
	unlabelled := legacyRBAC(serviceAccountIn("icd"))
	for _, obj := range unlabelled {
		obj.(metav1.Object).SetLabels(nil)
	}
	for _, tc := range []struct {
		name     string
		existing []runtime.Object
		// want are the results about the legacy objects; gone and kept
		// the kinds removed and left.
		want       []string
		gone, kept []string
	}{
		{"none", nil, nil, nil, nil},
		{"this installation's", legacy, []string{
			"ClusterRoleBinding/image-cache-daemon deleted (an earlier version's, shared by every installation; this installation now has its own, image-cache-daemon:icd)",
			"ClusterRole/image-cache-daemon deleted (an earlier version's, shared by every installation; no binding refers to it any more)",
		}, []string{"ClusterRoleBinding", "ClusterRole"}, nil},
		{"another installation's", legacyRBAC(serviceAccountIn("other")), []string{
			"ClusterRoleBinding/image-cache-daemon kept (an earlier version's, shared by every installation; it binds serviceaccount other/image-cache-daemon, " +
				"not this installation's service account alone: installing this version where they are installed removes it)",
			"ClusterRole/image-cache-daemon kept (an earlier version's, shared by every installation; still bound by clusterrolebinding/image-cache-daemon)",
		}, nil, []string{"ClusterRoleBinding", "ClusterRole"}},
		{"this one's and a user's", legacyRBAC(serviceAccountIn("icd"), rbacv1.Subject{Kind: "User", Name: "alice"}), []string{
			"ClusterRoleBinding/image-cache-daemon kept (an earlier version's, shared by every installation; it binds serviceaccount icd/image-cache-daemon, user alice, " +
				"not this installation's service account alone: installing this version where they are installed removes it)",
			"ClusterRole/image-cache-daemon kept (an earlier version's, shared by every installation; still bound by clusterrolebinding/image-cache-daemon)",
		}, nil, []string{"ClusterRoleBinding", "ClusterRole"}},
		{"role still bound elsewhere", append(legacyRBAC(serviceAccountIn("icd")), otherBinding), []string{
			"ClusterRoleBinding/image-cache-daemon deleted (an earlier version's, shared by every installation; this installation now has its own, image-cache-daemon:icd)",
			"ClusterRole/image-cache-daemon kept (an earlier version's, shared by every installation; still bound by rolebinding/team/reads-images)",
		}, []string{"ClusterRoleBinding"}, []string{"ClusterRole"}},
		{"binding gone already", legacy[:1], []string{
			"ClusterRole/image-cache-daemon deleted (an earlier version's, shared by every installation; no binding refers to it any more)",
		}, []string{"ClusterRole"}, nil},
		{"not made by image-cache-daemon", unlabelled, []string{
			"ClusterRoleBinding/image-cache-daemon kept (not made by image-cache-daemon)",
			"ClusterRole/image-cache-daemon kept (not made by image-cache-daemon)",
		}, nil, []string{"ClusterRoleBinding", "ClusterRole"}},
	} {
		for _, op := range []string{"install", "uninstall"} {
			t.Run(tc.name+"/"+op, func(t *testing.T) {
				existing := append([]runtime.Object{}, tc.existing...)
				for i, obj := range existing {
					existing[i] = obj.DeepCopyObject()
				}
				a, c := installtest.NewApplier(t, existing...)
				var rs []install.Result
				var err error
				if op == "install" {
					rs, err = a.Install(context.Background(), options("icd"), &strings.Builder{})
				} else {
					rs, err = a.Uninstall(context.Background(), "icd")
				}
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, line := range strings.Split(results(rs), "\n") {
					if strings.HasPrefix(line, "ClusterRole/image-cache-daemon ") || strings.HasPrefix(line, "ClusterRoleBinding/image-cache-daemon ") {
						got = append(got, line)
					}
				}
				if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
					t.Errorf("results about the legacy objects:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
				}
				for _, kind := range tc.gone {
					if c.Get(kind, "", install.Name) != nil {
						t.Errorf("legacy %s is still there", kind)
					}
				}
				for _, kind := range tc.kept {
					if c.Get(kind, "", install.Name) == nil {
						t.Errorf("legacy %s was deleted", kind)
					}
				}
				if op == "install" {
					assertBinds(t, c, "icd")
				}
			})
		}
	}
}

// --source-namespace: a Role and RoleBinding in each namespace read (and in
// the install namespace), removed when the namespace is no longer read and
// by uninstall, found by their labels.
func TestSourceNamespaceRoles(t *testing.T) {
	ctx := context.Background()
	a, c := installtest.NewApplier(t, namespace("team-a", nil), namespace("team-b", nil), namespace("team-c", nil))
	roles := func() []string {
		var out []string
		for _, ns := range []string{"icd", "team-a", "team-b", "team-c"} {
			role, binding := c.Get("Role", ns, install.RBACName("icd")), c.Get("RoleBinding", ns, install.RBACName("icd"))
			if (role == nil) != (binding == nil) {
				t.Errorf("namespace %s has the Role %t, the RoleBinding %t", ns, role != nil, binding != nil)
			}
			if role != nil {
				out = append(out, ns)
			}
		}
		return out
	}
	// Another installation's Role in the same namespace is never touched.
	other := options("other", "team-a")
	if _, err := a.Install(ctx, other, &strings.Builder{}); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name       string
		namespaces []string
		want       string
	}{
		{"install", []string{"team-a", "team-b"}, "icd team-a team-b"},
		{"narrowed", []string{"team-c", "team-a"}, "icd team-a team-c"},
		{"every namespace", nil, ""},
		{"again", []string{"team-b"}, "icd team-b"},
	} {
		if _, err := a.Install(ctx, options("icd", step.namespaces...), &strings.Builder{}); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := strings.Join(roles(), " "); got != step.want {
			t.Errorf("%s: Roles in %q, want %q", step.name, got, step.want)
		}
	}
	rs, err := a.Uninstall(ctx, "icd")
	if err != nil {
		t.Fatal(err)
	}
	if got := roles(); len(got) != 0 {
		t.Errorf("uninstall left Roles in %v:\n%s", got, results(rs))
	}
	if c.Get("Role", "team-a", install.RBACName("other")) == nil || c.Get("RoleBinding", "team-a", install.RBACName("other")) == nil {
		t.Error("the other installation's Role in team-a is gone")
	}
}

// A source namespace that does not exist is refused, naming it and the
// flag, before anything is applied.
func TestMissingSourceNamespaceIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name       string
		namespaces []string
		says       string
	}{
		{"one", []string{"team-a", "team-x"}, "source namespace team-x does not exist: create it first (kubectl create namespace team-x) or leave it out of --source-namespace; nothing was applied"},
		{"two", []string{"team-y", "team-a", "team-x"}, "source namespaces team-y, team-x do not exist: create them first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, c := installtest.NewApplier(t, namespace("team-a", nil))
			rs, err := a.Install(context.Background(), options("icd", tc.namespaces...), &strings.Builder{})
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("err = %v, want it to say %q", err, tc.says)
			}
			if len(rs) != 0 || len(c.Acts) != 0 {
				t.Errorf("a refused install acted: results %v, acts %v", rs, c.Acts)
			}
		})
	}
}

// Installing into a namespace that existed before says, before applying
// anything, that it is shared.
func TestInstallNotesASharedNamespace(t *testing.T) {
	const note = "namespace default existed before image-cache-daemon: it is used as it is (its Pod Security labels are not changed, " +
		"and the restricted profile is not enforced on the prefetch pods there); uninstall will keep it and remove only image-cache-daemon's objects in it.\n"
	for _, tc := range []struct {
		name     string
		existing []runtime.Object
		want     string
	}{
		{"existed before", []runtime.Object{namespace("default", map[string]string{"kubernetes.io/metadata.name": "default"})}, note},
		{"made by an earlier install", []runtime.Object{namespace("default", map[string]string{wire.LabelPartOf: install.Name})}, ""},
		{"new", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, c := installtest.NewApplier(t, tc.existing...)
			notes := &actsAtWrite{acts: &c.Acts}
			if _, err := a.Install(context.Background(), options("default"), notes); err != nil {
				t.Fatal(err)
			}
			if notes.String() != tc.want {
				t.Errorf("notes %q, want %q", notes.String(), tc.want)
			}
			if notes.actsBefore > 0 {
				t.Errorf("the note came after %d applies", notes.actsBefore)
			}
		})
	}
}

// actsAtWrite is a notes writer that remembers how many applies and
// deletes were made before it was first written to.
type actsAtWrite struct {
	strings.Builder
	acts       *[]string
	written    bool
	actsBefore int
}

func (w *actsAtWrite) Write(p []byte) (int, error) {
	if !w.written {
		w.written, w.actsBefore = true, len(*w.acts)
	}
	return w.Builder.Write(p)
}

// An installation that a Helm release manages is not changed by the
// plugin: install and uninstall refuse, act on nothing, and say how to move
// over.
func TestHelmReleaseIsRefused(t *testing.T) {
	ds := &appsv1.DaemonSet{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: metav1.ObjectMeta{Name: install.Name, Namespace: "icd", Annotations: map[string]string{
			"meta.helm.sh/release-name": "cache", "meta.helm.sh/release-namespace": "icd"}},
	}
	a, c := installtest.NewApplier(t, ds)
	_, err := a.Install(context.Background(), options("icd"), &strings.Builder{})
	if err == nil || !strings.Contains(err.Error(), "is Helm release cache: change it with `helm upgrade cache -n icd`") ||
		!strings.Contains(err.Error(), "run `helm uninstall cache -n icd`, then kubectl imagecache install") {
		t.Errorf("install: %v", err)
	}
	_, err = a.Uninstall(context.Background(), "icd")
	if err == nil || !strings.Contains(err.Error(), "remove it with `helm uninstall cache -n icd`") {
		t.Errorf("uninstall: %v", err)
	}
	if len(c.Acts) != 0 {
		t.Errorf("a refused change acted: %v", c.Acts)
	}
	// Without Helm's marks the same DaemonSet is the plugin's own.
	ds.Annotations = nil
	a, _ = installtest.NewApplier(t, ds)
	if _, err := a.Install(context.Background(), options("icd"), &strings.Builder{}); err != nil {
		t.Errorf("install over the plugin's own: %v", err)
	}
}
