package install

import (
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/dcherman/image-cache-daemon/cmd/daemon/app"
	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/warden"
)

func findDaemonSet(t *testing.T, objs []runtime.Object) *appsv1.DaemonSet {
	t.Helper()
	for _, o := range objs {
		if ds, ok := o.(*appsv1.DaemonSet); ok {
			return ds
		}
	}
	t.Fatal("no DaemonSet among the objects")
	return nil
}

// The original manifest and daemon disagreed on variable names twice; here
// every $(VAR) in the daemon's args must be an env var of the container, and
// every flag the args set must be a flag the daemon has.
func TestDaemonArgsAgreeWithEnvAndFlags(t *testing.T) {
	withNamespaces := DefaultOptions("v1.0.0")
	withNamespaces.SourceNamespaces = []string{"team-a"}
	for _, o := range []Options{DefaultOptions("v1.0.0"), withNamespaces} {
		daemonArgsAgree(t, o)
	}
}

func daemonArgsAgree(t *testing.T, o Options) {
	t.Helper()
	ds := findDaemonSet(t, mustObjects(t, o))
	c := ds.Spec.Template.Spec.Containers[0]
	env := map[string]bool{}
	for _, e := range c.Env {
		env[e.Name] = true
	}
	flags := app.NewCommand().Flags()
	ref := regexp.MustCompile(`\$\(([A-Z_]+)\)`)
	for _, arg := range c.Args {
		for _, m := range ref.FindAllStringSubmatch(arg, -1) {
			if !env[m[1]] {
				t.Errorf("arg %q refers to $(%s), which the container does not define", arg, m[1])
			}
		}
		name := strings.TrimPrefix(strings.SplitN(arg, "=", 2)[0], "--")
		if flags.Lookup(name) == nil {
			t.Errorf("arg %q sets --%s, which the daemon does not have", arg, name)
		}
	}
	for _, want := range []string{"node-name", "pod-name", "pod-namespace"} {
		found := false
		for _, arg := range c.Args {
			found = found || strings.HasPrefix(arg, "--"+want+"=")
		}
		if !found {
			t.Errorf("the daemon's required --%s is not set", want)
		}
	}
}

func TestDaemonSetMeetsRestrictedProfile(t *testing.T) {
	ds := findDaemonSet(t, mustObjects(t, DefaultOptions("v1.0.0")))
	spec := ds.Spec.Template.Spec
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil ||
		psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Fatalf("pod security context %+v is not restricted", psc)
	}
	for _, c := range spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			t.Errorf("container %s security context %+v is not restricted", c.Name, sc)
		}
	}
}

func TestOptionsReachTheDaemonSet(t *testing.T) {
	o := DefaultOptions("v1.0.0")
	o.Namespace = "other"
	o.Image = "registry.example/icd:v2"
	o.ImagePullSecrets = []string{"regcred"}
	o.WatchArgoCronWorkflows = false
	o.Tolerations = []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists}}
	objs := mustObjects(t, o)
	for _, obj := range objs {
		u, err := Unstructured(obj)
		if err != nil {
			t.Fatal(err)
		}
		if u.GetNamespace() != "" && u.GetNamespace() != "other" {
			t.Errorf("%s %s is in namespace %q, want other", u.GetKind(), u.GetName(), u.GetNamespace())
		}
	}
	ds := findDaemonSet(t, objs)
	spec := ds.Spec.Template.Spec
	if spec.Containers[0].Image != o.Image || spec.ImagePullSecrets[0].Name != "regcred" || spec.Tolerations[0].Key != "gpu" {
		t.Errorf("options not applied: image %s, pull secrets %v, tolerations %v", spec.Containers[0].Image, spec.ImagePullSecrets, spec.Tolerations)
	}
	if !contains(spec.Containers[0].Args, "--watch-argo-cron-workflows=false") {
		t.Errorf("args %v do not switch cron workflows off", spec.Containers[0].Args)
	}
}

// What the plugin prints and applies has no field the server fills in.
func TestUnstructuredHasNoEmptyServerFields(t *testing.T) {
	for _, obj := range mustObjects(t, DefaultOptions("v1.0.0")) {
		u, err := Unstructured(obj)
		if err != nil {
			t.Fatal(err)
		}
		b, err := u.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{`"creationTimestamp"`, `"status"`} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s %s has %s", u.GetKind(), u.GetName(), bad)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// rbacRules collects the rules of the installation's RBAC objects, as
// "Kind namespace/name" -> rules.
func rbacRules(t *testing.T, o Options) map[string][]rbacv1.PolicyRule {
	t.Helper()
	out := map[string][]rbacv1.PolicyRule{}
	for _, obj := range mustObjects(t, o) {
		switch r := obj.(type) {
		case *rbacv1.ClusterRole:
			out["ClusterRole "+r.Name] = r.Rules
		case *rbacv1.Role:
			out["Role "+r.Namespace+"/"+r.Name] = r.Rules
		}
	}
	return out
}

// The exact permissions, so that a change to them is deliberate. Each verb
// comes from a call the node daemon or the planner makes (see clusterRules,
// podRules, plannerClusterRules, plannerRules, sourceRules). The node
// daemon reads no source: only the planner may.
func TestRBACRules(t *testing.T) {
	listWatch := []string{"get", "list", "watch"}
	events := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}}
	nodes := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}}
	nodeStatus := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}}
	pods := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "create", "delete", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{warden.ConfigMap}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{wanted.ConfigMap}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: wanted.Names()[1:], Verbs: []string{"get"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{wanted.Planner}, Verbs: []string{"get"}},
		{APIGroups: []string{"apps"}, Resources: []string{"daemonsets"}, ResourceNames: []string{Name}, Verbs: []string{"get"}},
	}
	planner := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{wanted.ConfigMap}, Verbs: []string{"get", "update"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: wanted.Names()[1:], Verbs: []string{"get", "update", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{wanted.Planner}, Verbs: []string{"get", "update"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
		{APIGroups: []string{"apps"}, Resources: []string{"daemonsets"}, ResourceNames: []string{Name}, Verbs: []string{"get"}},
	}
	configMaps := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: listWatch}
	argo := func(resources ...string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{APIGroups: []string{"argoproj.io"}, Resources: resources, Verbs: listWatch}
	}
	const (
		node        = "ClusterRole image-cache-daemon:icd"
		plannerRole = "ClusterRole image-cache-daemon-planner:icd"
	)
	for _, tc := range []struct {
		name string
		set  func(*Options)
		want map[string][]rbacv1.PolicyRule
	}{
		{"every namespace", func(*Options) {}, map[string][]rbacv1.PolicyRule{
			node:                                  {events, nodes, nodeStatus},
			plannerRole:                           {configMaps, argo("workflowtemplates", "clusterworkflowtemplates", "cronworkflows"), events, nodes},
			"Role icd/image-cache-daemon":         pods,
			"Role icd/image-cache-daemon-planner": planner,
		}},
		{"sources switched off", func(o *Options) {
			o.WatchArgoWorkflowTemplates, o.WatchArgoClusterWorkflowTemplates = false, false
		}, map[string][]rbacv1.PolicyRule{
			node:                                  {events, nodes, nodeStatus},
			plannerRole:                           {configMaps, argo("cronworkflows"), events, nodes},
			"Role icd/image-cache-daemon":         pods,
			"Role icd/image-cache-daemon-planner": planner,
		}},
		{"source namespaces", func(o *Options) { o.SourceNamespaces = []string{"team-a", "team-b"} }, map[string][]rbacv1.PolicyRule{
			node:                                  {events, nodes, nodeStatus},
			plannerRole:                           {argo("clusterworkflowtemplates"), events, nodes},
			"Role icd/image-cache-daemon":         pods,
			"Role icd/image-cache-daemon-planner": planner,
			"Role icd/image-cache-daemon:icd":     {configMaps, argo("workflowtemplates", "cronworkflows")},
			"Role team-a/image-cache-daemon:icd":  {configMaps, argo("workflowtemplates", "cronworkflows")},
			"Role team-b/image-cache-daemon:icd":  {configMaps, argo("workflowtemplates", "cronworkflows")},
		}},
		{"startup taint", func(o *Options) { o.StartupTaint = "example.com/warming" }, map[string][]rbacv1.PolicyRule{
			node:                                  {events, {APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "patch"}}, nodeStatus},
			plannerRole:                           {configMaps, argo("workflowtemplates", "clusterworkflowtemplates", "cronworkflows"), events, nodes},
			"Role icd/image-cache-daemon":         pods,
			"Role icd/image-cache-daemon-planner": planner,
		}},
		{"pull secrets: the planner gets them by name, nodes not at all", func(o *Options) { o.ImagePullSecrets = []string{"reg-a", "reg-b"} }, map[string][]rbacv1.PolicyRule{
			node:                          {events, nodes, nodeStatus},
			plannerRole:                   {configMaps, argo("workflowtemplates", "clusterworkflowtemplates", "cronworkflows"), events, nodes},
			"Role icd/image-cache-daemon": pods,
			"Role icd/image-cache-daemon-planner": append(slices.Clip(planner),
				rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"reg-a", "reg-b"}, Verbs: []string{"get"}}),
		}},
		{"source namespaces, ConfigMaps only", func(o *Options) {
			o.SourceNamespaces = []string{"team-a"}
			o.WatchArgoWorkflowTemplates, o.WatchArgoClusterWorkflowTemplates, o.WatchArgoCronWorkflows = false, false, false
		}, map[string][]rbacv1.PolicyRule{
			node:                                  {events, nodes, nodeStatus},
			plannerRole:                           {events, nodes},
			"Role icd/image-cache-daemon":         pods,
			"Role icd/image-cache-daemon-planner": planner,
			"Role icd/image-cache-daemon:icd":     {configMaps},
			"Role team-a/image-cache-daemon:icd":  {configMaps},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions("v1.0.0")
			o.Namespace = "icd"
			tc.set(&o)
			if got := rbacRules(t, o); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("rules:\n%s\nwant:\n%s", renderRules(got), renderRules(tc.want))
			}
		})
	}
}

func renderRules(rules map[string][]rbacv1.PolicyRule) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(rules)) {
		fmt.Fprintf(&b, "%s:\n", k)
		for _, r := range rules[k] {
			fmt.Fprintf(&b, "  %v %v %v %v\n", r.APIGroups, r.Resources, r.ResourceNames, r.Verbs)
		}
	}
	return b.String()
}

// Each installation has its own cluster-scoped objects and its own Roles in
// source namespaces; every binding binds its service account, and every
// name is valid as the API server validates RBAC names (path segments),
// for the longest namespace too.
func TestObjectsAreNamedPerInstallation(t *testing.T) {
	long := strings.Repeat("n", 63)
	if msgs := validation.IsDNS1123Label(long); len(msgs) > 0 {
		t.Fatalf("precondition: %q is not a namespace name: %v", long, msgs)
	}
	for _, ns := range []string{"icd", long} {
		t.Run(fmt.Sprintf("namespace of %d characters", len(ns)), func(t *testing.T) {
			o := DefaultOptions("v1.0.0")
			o.Namespace = ns
			o.SourceNamespaces = []string{"team-a", long}
			seen := map[string]bool{}
			rbacName := func(name string, _ bool) []string { return path.IsValidPathSegmentName(name) }
			for _, obj := range mustObjects(t, o) {
				u, err := Unstructured(obj)
				if err != nil {
					t.Fatal(err)
				}
				id := u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
				if seen[id] {
					t.Errorf("%s twice", id)
				}
				seen[id] = true
				m := obj.(metav1.Object)
				objMeta := metav1.ObjectMeta{Name: m.GetName(), Namespace: m.GetNamespace(), Labels: m.GetLabels()}
				nameFn := apivalidation.NameIsDNSSubdomain
				var ref *rbacv1.RoleRef
				var subjects []rbacv1.Subject
				switch r := obj.(type) {
				case *rbacv1.ClusterRole, *rbacv1.Role:
					nameFn = rbacName
				case *rbacv1.ClusterRoleBinding:
					nameFn, ref, subjects = rbacName, &r.RoleRef, r.Subjects
				case *rbacv1.RoleBinding:
					nameFn, ref, subjects = rbacName, &r.RoleRef, r.Subjects
				case *corev1.Namespace:
					nameFn = apivalidation.ValidateNamespaceName
				}
				if errs := apivalidation.ValidateObjectMeta(&objMeta, u.GetNamespace() != "", nameFn, field.NewPath("metadata")); len(errs) > 0 {
					t.Errorf("%s: %v", id, errs.ToAggregate())
				}
				if ref != nil {
					if msgs := path.IsValidPathSegmentName(ref.Name); len(msgs) > 0 {
						t.Errorf("%s refers to %q: %v", id, ref.Name, msgs)
					}
					// The node daemon's service account, or the planner's.
					if node, planner := []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: ns}},
						[]rbacv1.Subject{{Kind: "ServiceAccount", Name: wanted.Planner, Namespace: ns}}; !reflect.DeepEqual(subjects, node) && !reflect.DeepEqual(subjects, planner) {
						t.Errorf("%s binds %v, want %v or %v", id, subjects, node, planner)
					}
				}
				clusterScoped := u.GetNamespace() == "" && u.GetKind() != "Namespace"
				outside := u.GetNamespace() != "" && u.GetNamespace() != ns
				if (clusterScoped || outside) && u.GetName() != RBACName(ns) && u.GetName() != PlannerRBACName(ns) && u.GetName() != PolicyName(ns) && u.GetName() != PodPolicyName(ns) {
					t.Errorf("%s is outside the install namespace but not named for it (%s)", id, RBACName(ns))
				}
			}
			for _, want := range []string{
				"ClusterRole /" + RBACName(ns), "ClusterRoleBinding /" + RBACName(ns),
				"Role team-a/" + RBACName(ns), "RoleBinding team-a/" + RBACName(ns),
				"Role " + long + "/" + RBACName(ns), "RoleBinding " + ns + "/" + RBACName(ns),
			} {
				if !seen[want] {
					t.Errorf("no %s", want)
				}
			}
		})
	}
}

// The daemon reads the namespaces its Roles grant: one flag per namespace,
// the install namespace (its image list) first, each once.
func TestSourceNamespaceArgs(t *testing.T) {
	for _, tc := range []struct {
		name       string
		namespaces []string
		want       []string
	}{
		{"every namespace", nil, nil},
		{"some", []string{"team-a", "team-b", "team-a", "icd"}, []string{"--source-namespace=icd", "--source-namespace=team-a", "--source-namespace=team-b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions("v1.0.0")
			o.Namespace, o.SourceNamespaces = "icd", tc.namespaces
			var got []string
			for _, arg := range findDaemonSet(t, mustObjects(t, o)).Spec.Template.Spec.Containers[0].Args {
				if strings.HasPrefix(arg, "--source-namespace") {
					got = append(got, arg)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("args %v, want %v", got, tc.want)
			}
		})
	}
}

// Only the image list matches the daemon's default ConfigMap selector:
// another ConfigMap of the installation would be read as a broken list.
func TestOnlyTheImageListMatchesTheSelector(t *testing.T) {
	sel, err := k8slabels.Parse(source.DefaultConfigMapSelector)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range mustObjects(t, DefaultOptions("v1.0.0")) {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok {
			continue
		}
		if matches := sel.Matches(k8slabels.Set(cm.Labels)); matches != (cm.Name == DefaultConfigMap) {
			t.Errorf("ConfigMap %s matches the image-list selector: %v", cm.Name, matches)
		}
	}
}
