//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/cli"
	"helm.sh/helm/v4/pkg/kube"
	"helm.sh/helm/v4/pkg/registry"
	release "helm.sh/helm/v4/pkg/release/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/dcherman/image-cache-daemon/charts"
	"github.com/dcherman/image-cache-daemon/internal/chartrelease"
	"github.com/dcherman/image-cache-daemon/internal/testcluster"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// helmConfig is Helm's action configuration for namespace, on the local
// cluster, as the helm command makes it (release records in Secrets).
func helmConfig(t *testing.T, namespace string) *action.Configuration {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	kubeconfig := os.Getenv("KUBECONFIG")
	flags.KubeConfig, flags.Namespace = &kubeconfig, &namespace
	// The helm command's field manager (else the test binary's name).
	kube.ManagedFieldsManager = "helm"
	cfg := action.NewConfiguration()
	if err := cfg.Init(flags, namespace, "secret"); err != nil {
		t.Fatal(err)
	}
	cfg.SetLogger(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg
}

// helmValues are the values a user gives the chart for image: what
// values.yaml says otherwise; the image list resyncs never (a test
// measures nothing over time), and registryBurst is burst.
func helmValues(t *testing.T, image string, burst int) map[string]any {
	t.Helper()
	o := install.DefaultOptions("")
	o.Image, o.ResyncPeriod, o.RegistryBurst = image, 0, burst
	v := o.Values()
	v.CreateNamespace = false
	return asMap(t, v)
}

// releaseObjects reads every object of a release's manifest from the
// cluster.
func releaseObjects(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := install.DecodeManifests(map[string]string{"manifest.yaml": manifest})
	if err != nil {
		t.Fatal(err)
	}
	a := applier(t)
	var out []*unstructured.Unstructured
	for _, obj := range objs {
		gvk := obj.GetObjectKind().GroupVersionKind()
		m, err := a.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatal(err)
		}
		u, err := install.Unstructured(obj)
		if err != nil {
			t.Fatal(err)
		}
		live, err := a.Dynamic.Resource(m.Resource).Namespace(u.GetNamespace()).Get(context.Background(), u.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s %s of the release: %v", u.GetKind(), u.GetName(), err)
		}
		out = append(out, live)
	}
	return out
}

// helmWrites is what Helm last wrote to obj: its entries in the managed
// fields (an apply that changes nothing leaves them as they were) and the
// generation.
func helmWrites(obj *unstructured.Unstructured) string {
	var b strings.Builder
	fmt.Fprintf(&b, "generation %d", obj.GetGeneration())
	helm := false
	for _, f := range obj.GetManagedFields() {
		if f.Manager == "helm" {
			helm = true
			fmt.Fprintf(&b, "; %s %s at %v: %s", f.Manager, f.Operation, f.Time, f.FieldsV1)
		}
	}
	if !helm {
		return "no field managed by helm"
	}
	return b.String()
}

func prefetchPodUIDs(t *testing.T, ns string) []string {
	t.Helper()
	pods, err := env.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: labels.SelectorFromSet(wire.PrefetchLabels()).String()})
	if err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, p := range pods.Items {
		uids = append(uids, string(p.UID))
	}
	slices.Sort(uids)
	return uids
}

// chartFromOCI releases the chart as the release does (hack/chartgen
// package, then push) to the local registry, then fetches it from there as
// helm install oci://... does, and returns it with its version.
func chartFromOCI(t *testing.T, cfg *action.Configuration) (*chart.Chart, string) {
	t.Helper()
	version := "0.0.0-e2e." + strings.ToLower(rand.String(6))
	archive, err := chartrelease.Package(version, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	repo := "oci://" + env.registry + "/charts"
	if _, err := chartrelease.Push(archive, repo, true); err != nil {
		t.Fatal(err)
	}
	client, err := registry.NewClient(registry.ClientOptPlainHTTP())
	if err != nil {
		t.Fatal(err)
	}
	cfg.RegistryClient = client
	settings := cli.New()
	settings.RepositoryCache, settings.ContentCache = t.TempDir(), t.TempDir()
	settings.RegistryConfig = filepath.Join(t.TempDir(), "config.json")
	in := action.NewInstall(cfg)
	in.Version, in.PlainHTTP = version, true
	path, err := in.LocateChart(repo+"/"+charts.Name, settings)
	if err != nil {
		t.Fatalf("helm pull %s/%s --version %s: %v", repo, charts.Name, version, err)
	}
	c, err := loader.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Metadata.Version != version || c.Metadata.AppVersion != "v"+version {
		t.Fatalf("the chart from %s is %s, appVersion %s", repo, c.Metadata.Version, c.Metadata.AppVersion)
	}
	return c, version
}

// TestHelmLifecycle: the chart, pushed to an OCI registry as a release pushes
// it, installed from there with Helm's own code; the plugin
// working against it, an upgrade that changes a value re-pulling nothing, an
// upgrade with the same values changing no object, the plugin refusing to
// take the release over, and helm uninstall leaving nothing behind.
func TestHelmLifecycle(t *testing.T) {
	ctx := context.Background()
	ns := "icd-helm-" + strings.ToLower(rand.String(4))
	const name = "cache"
	bin := buildGo(t, "github.com/dcherman/image-cache-daemon/cmd/kubectl-imagecache")
	cfg := helmConfig(t, ns)
	chart, version := chartFromOCI(t, cfg)
	image := daemonImage(t)
	t.Cleanup(func() {
		saveArtifacts(t, ns)
		un := action.NewUninstall(cfg)
		un.WaitStrategy = kube.HookOnlyStrategy
		_, _ = un.Run(name)
		_ = env.client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})

	in := action.NewInstall(cfg)
	in.ReleaseName, in.Namespace, in.CreateNamespace = name, ns, true
	in.Version = version
	in.WaitStrategy = kube.HookOnlyStrategy
	r, err := in.RunWithContext(ctx, chart, helmValues(t, image, 10))
	if err != nil {
		t.Fatalf("helm install: %v", err)
	}
	manifest := r.(*release.Release).Manifest
	if err := testcluster.WaitRollout(ctx, env.client, ns, 3*time.Minute); err != nil {
		t.Fatalf("the release did not roll out: %v", err)
	}

	var cached string
	t.Run("the plugin works on a Helm release", func(t *testing.T) {
		cached = randomImage(t, "e2e/helm:"+rand.String(6), uint64(rand.Int()))
		out := mustPlugin(t, bin, "add", cached, "--wait", "--timeout", "3m", "-n", ns)
		if !strings.Contains(out, "every node") {
			t.Fatalf("add --wait:\n%s", out)
		}
		n := len(nodeNames(t))
		if out := mustPlugin(t, bin, "status", "-n", ns); !strings.Contains(out, fmt.Sprintf("%d/%d", n, n)) {
			t.Errorf("status:\n%s", out)
		}
		if out := mustPlugin(t, bin, "list", "-n", ns); !strings.Contains(out, strings.TrimPrefix(cached, "127.0.0.1:5000/")) {
			t.Errorf("list:\n%s", out)
		}
	})

	t.Run("an upgrade that changes a value re-pulls nothing", func(t *testing.T) {
		before := prefetchPodUIDs(t, ns)
		if len(before) == 0 {
			t.Fatal("no prefetch pods before the upgrade")
		}
		ds, err := env.client.AppsV1().DaemonSets(ns).Get(ctx, install.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		up := action.NewUpgrade(cfg)
		up.Namespace, up.WaitStrategy = ns, kube.HookOnlyStrategy
		r, err := up.RunWithContext(ctx, name, chart, helmValues(t, image, 9))
		if err != nil {
			t.Fatalf("helm upgrade: %v", err)
		}
		manifest = r.(*release.Release).Manifest
		// The daemons roll (their flags changed) ...
		err = wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			now, err := env.client.AppsV1().DaemonSets(ns).Get(ctx, install.Name, metav1.GetOptions{})
			return err == nil && now.Generation > ds.Generation && now.Status.ObservedGeneration == now.Generation &&
				now.Status.UpdatedNumberScheduled == now.Status.DesiredNumberScheduled && now.Status.NumberReady == now.Status.DesiredNumberScheduled, nil
		})
		if err != nil {
			t.Fatalf("the daemons did not roll: %v", err)
		}
		if err := testcluster.WaitRollout(ctx, env.client, ns, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
		// ... and keep the prefetch pods they had, the image cached.
		out := mustPlugin(t, bin, "add", cached, "--wait", "--timeout", "1m", "-n", ns)
		if !strings.Contains(out, "already in") {
			t.Errorf("the image list lost the image in the upgrade:\n%s", out)
		}
		if after := prefetchPodUIDs(t, ns); !slices.Equal(before, after) {
			t.Errorf("prefetch pods before the upgrade %v, after %v: something was pulled again", before, after)
		}
	})

	t.Run("an upgrade with the same values changes no object", func(t *testing.T) {
		before := map[string]string{}
		for _, o := range releaseObjects(t, manifest) {
			before[o.GetKind()+"/"+o.GetName()] = helmWrites(o)
			if before[o.GetKind()+"/"+o.GetName()] == "no field managed by helm" {
				t.Errorf("%s %s: no field managed by helm", o.GetKind(), o.GetName())
			}
		}
		up := action.NewUpgrade(cfg)
		up.Namespace, up.WaitStrategy = ns, kube.HookOnlyStrategy
		if _, err := up.RunWithContext(ctx, name, chart, helmValues(t, image, 9)); err != nil {
			t.Fatalf("helm upgrade: %v", err)
		}
		for _, o := range releaseObjects(t, manifest) {
			key := o.GetKind() + "/" + o.GetName()
			if now := helmWrites(o); now != before[key] {
				t.Errorf("%s changed: %s, then %s", key, before[key], now)
			}
		}
	})

	t.Run("the plugin refuses to take a Helm release over", func(t *testing.T) {
		out, code := plugin(t, bin, "install", "-n", ns, "--image", image)
		if code == 0 || !strings.Contains(out, "is Helm release "+name) || !strings.Contains(out, "helm upgrade "+name+" -n "+ns) {
			t.Errorf("install over the release: exit %d\n%s", code, out)
		}
		out, code = plugin(t, bin, "uninstall", "--yes", "-n", ns)
		if code == 0 || !strings.Contains(out, "helm uninstall "+name+" -n "+ns) {
			t.Errorf("uninstall of the release: exit %d\n%s", code, out)
		}
	})

	t.Run("helm uninstall leaves nothing behind", func(t *testing.T) {
		un := action.NewUninstall(cfg)
		un.WaitStrategy, un.DeletionPropagation = kube.HookOnlyStrategy, "background"
		if _, err := un.Run(name); err != nil {
			t.Fatalf("helm uninstall: %v", err)
		}
		var left []string
		err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			left = nil
			pods, err := env.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			for _, p := range pods.Items {
				left = append(left, "pod/"+p.Name)
			}
			cms, err := env.client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			for _, cm := range cms.Items {
				if cm.Name != "kube-root-ca.crt" {
					left = append(left, "configmap/"+cm.Name)
				}
			}
			if _, err := env.client.CoordinationV1().Leases(ns).Get(ctx, wanted.Planner, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				left = append(left, "lease/"+wanted.Planner)
			}
			for _, name := range []string{install.RBACName(ns), install.PlannerRBACName(ns)} {
				if _, err := env.client.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					left = append(left, "clusterrole/"+name)
				}
			}
			for _, name := range []string{install.PolicyName(ns), install.PodPolicyName(ns)} {
				if _, err := env.client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					left = append(left, "validatingadmissionpolicy/"+name)
				}
			}
			return len(left) == 0, nil
		})
		if err != nil {
			t.Fatalf("left behind by helm uninstall: %v (%v)", left, err)
		}
		// The namespace is the user's (helm install --create-namespace):
		// Helm keeps it, as it does for every chart.
		if _, err := env.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			t.Errorf("the namespace: %v", err)
		}
	})
}
