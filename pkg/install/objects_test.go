package install

import (
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/dcherman/image-cache-daemon/pkg/daemon"
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
	ds := findDaemonSet(t, Objects(DefaultOptions("v1.0.0")))
	c := ds.Spec.Template.Spec.Containers[0]
	env := map[string]bool{}
	for _, e := range c.Env {
		env[e.Name] = true
	}
	flags := daemon.NewCommand().Flags()
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
	ds := findDaemonSet(t, Objects(DefaultOptions("v1.0.0")))
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
	objs := Objects(o)
	for _, obj := range objs {
		u, err := Unstructured(obj)
		if err != nil {
			t.Fatal(err)
		}
		if u.GetKind() != "Namespace" && u.GetKind() != "ClusterRole" && u.GetKind() != "ClusterRoleBinding" && u.GetNamespace() != "other" {
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

func TestYAMLHasNoEmptyServerFields(t *testing.T) {
	y, err := YAML(Objects(DefaultOptions("v1.0.0")))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"creationTimestamp", "status:"} {
		if strings.Contains(string(y), bad) {
			t.Errorf("rendered YAML contains %q", bad)
		}
	}
	if n := strings.Count(string(y), "---\n"); n != len(Objects(DefaultOptions("v1.0.0"))) {
		t.Errorf("%d documents, want one per object", n)
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
