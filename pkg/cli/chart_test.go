package cli

import (
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	kubefake "helm.sh/helm/v4/pkg/kube/fake"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage"
	"helm.sh/helm/v4/pkg/storage/driver"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/dcherman/image-cache-daemon/pkg/install"
)

// helmTemplate renders the chart as helm install --dry-run=client does
// (Helm's own code: values merged with values.yaml and checked against
// values.schema.json), as release name in namespace with valuesYAML.
func helmTemplate(t *testing.T, namespace, valuesYAML string) (string, error) {
	t.Helper()
	c, err := install.Chart()
	if err != nil {
		t.Fatal(err)
	}
	var vals map[string]any
	if err := yaml.Unmarshal([]byte(valuesYAML), &vals); err != nil {
		t.Fatalf("values %q: %v", valuesYAML, err)
	}
	cfg := action.NewConfiguration()
	cfg.Releases = storage.Init(driver.NewMemory())
	cfg.KubeClient = &kubefake.PrintingKubeClient{Out: io.Discard}
	in := action.NewInstall(cfg)
	in.DryRunStrategy = action.DryRunClient
	in.Replace = true
	in.ReleaseName = "image-cache-daemon"
	in.Namespace = namespace
	in.KubeVersion = &common.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}
	r, err := in.Run(c, vals)
	if err != nil {
		return "", err
	}
	return r.(*release.Release).Manifest, nil
}

// pluginTemplate is what kubectl imagecache install --dry-run=client -o yaml
// prints with args.
func pluginTemplate(t *testing.T, args ...string) string {
	t.Helper()
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	cmd := NewCmdImageCache(streams)
	cmd.SetArgs(append([]string{"install", "--dry-run=client", "-o", "yaml"}, args...))
	if err := cmd.Execute(); err != nil {
		t.Fatalf("install %v: %v", args, err)
	}
	return out.String()
}

// objectsByName decodes a YAML stream and keys its objects by kind,
// namespace and name, as unstructured maps.
func objectsByName(t *testing.T, stream string) map[string]map[string]any {
	t.Helper()
	objs, err := install.DecodeManifests(map[string]string{"stream.yaml": stream})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, obj := range objs {
		u, err := install.Unstructured(obj)
		if err != nil {
			t.Fatal(err)
		}
		out[u.GetKind()+" "+u.GetNamespace()+"/"+u.GetName()] = u.Object
	}
	return out
}

// The chart is the one source of an installation: rendered by Helm with
// values V it makes exactly the objects `kubectl imagecache install
// --dry-run=client -o yaml` prints with the flags that mean V, for every
// flag of install that shapes an object (a flag added without a case here
// fails the test).
func TestChartEqualsInstallForEveryFlag(t *testing.T) {
	const image = "--image=registry.example/icd:v9"
	const imageValues = "createNamespace: true\nimage: {repository: registry.example/icd, tag: v9}\n"
	digest := "sha256:" + strings.Repeat("ab", 32)
	cases := []struct {
		name      string
		args      []string
		namespace string
		values    string
	}{
		{name: "defaults"},
		{name: "image by digest", args: []string{"--image=registry.example/icd@" + digest},
			values: "createNamespace: true\nimage: {repository: registry.example/icd, digest: '" + digest + "'}"},
		{name: "image without a tag", args: []string{"--image=registry.example/icd"},
			values: "createNamespace: true\nimage: {repository: registry.example/icd, tag: latest}"},
		{name: "namespace", args: []string{"-n", "other"}, namespace: "other"},
		{name: "pull policy", args: []string{"--image=registry.example/icd:v9", "--image-pull-policy=Always"},
			values: "createNamespace: true\nimage: {repository: registry.example/icd, tag: v9, pullPolicy: Always}"},
		{name: "tolerations", args: []string{"--toleration=gpu=yes:NoSchedule", "--toleration=dedicated"},
			values: "tolerations: [{key: gpu, operator: Equal, value: 'yes', effect: NoSchedule}, {key: dedicated, operator: Exists}]"},
		{name: "node selector", args: []string{"--node-selector=pool=ci", "--node-selector=disk=ssd"}, values: "nodeSelector: {pool: ci, disk: ssd}"},
		{name: "priority class", args: []string{"--priority-class=high"}, values: "priorityClassName: high"},
		{name: "static images", args: []string{"--cache-image=alpine", "--cache-image=nginx:1.27"}, values: "images: [alpine, 'nginx:1.27']"},
		{name: "pull secrets", args: []string{"--image-pull-secret=regcred", "--image-pull-secret=other"}, values: "imagePullSecrets: [regcred, other]"},
		{name: "resync period", args: []string{"--resync-period=1h30m"}, values: "resyncPeriod: 1h30m"},
		{name: "no resync", args: []string{"--resync-period=0"}, values: "resyncPeriod: '0'"},
		{name: "no resync, as --set writes it", args: []string{"--resync-period=0"}, values: "resyncPeriod: 0"},
		{name: "namespaces YAML would read as other types", args: []string{"-n", "123", "--source-namespace=no", "--source-namespace=null"},
			namespace: "123", values: "sources: {namespaces: ['no', 'null']}"},
		{name: "source namespaces", args: []string{"--source-namespace=team-a", "--source-namespace=team-b"},
			values: "sources: {namespaces: [team-a, team-b]}"},
		{name: "startup taint", args: []string{"--startup-taint=example.com/warming", "--warm-timeout=5m"},
			values: "startupTaint: {key: example.com/warming, warmTimeout: 5m}"},
		{name: "pull pacing", args: []string{"--registry-pull-qps=2.5", "--registry-burst=4"}, values: "registryPullQPS: 2.5\nregistryBurst: 4"},
		{name: "no pull pacing", args: []string{"--registry-pull-qps=0"}, values: "registryPullQPS: 0"},
		{name: "no pull pacing, any burst", args: []string{"--registry-pull-qps=0", "--registry-burst=0"}, values: "registryPullQPS: 0"},
		{name: "sources off", args: []string{"--watch-configmaps=false", "--watch-argo-workflow-templates=false",
			"--watch-argo-cluster-workflow-templates=false", "--watch-argo-cron-workflows=false"},
			values: "sources: {configMaps: false, argoWorkflowTemplates: false, argoClusterWorkflowTemplates: false, argoCronWorkflows: false}"},
		{name: "cluster templates only", args: []string{"--watch-configmaps=false", "--watch-argo-workflow-templates=false",
			"--watch-argo-cron-workflows=false"},
			values: "sources: {configMaps: false, argoWorkflowTemplates: false, argoCronWorkflows: false}"},
		{name: "argo in two namespaces", args: []string{"--watch-configmaps=false", "--source-namespace=team-a", "--source-namespace=icd"},
			values: "sources: {configMaps: false, namespaces: [team-a, icd]}"},
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args, values := tc.args, tc.values
			if !strings.Contains(strings.Join(args, " "), "--image=") {
				args = append([]string{image}, args...)
				values = imageValues + values
			}
			ns := tc.namespace
			if ns == "" {
				ns = install.DefaultNamespace
			}
			for _, a := range args {
				name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
				covered[name] = true
			}
			manifest, err := helmTemplate(t, ns, values)
			if err != nil {
				t.Fatalf("helm: %v", err)
			}
			fromHelm, fromPlugin := objectsByName(t, manifest), objectsByName(t, pluginTemplate(t, args...))
			if !slices.Equal(slices.Sorted(maps.Keys(fromHelm)), slices.Sorted(maps.Keys(fromPlugin))) {
				t.Fatalf("helm makes %v\nthe plugin %v", slices.Sorted(maps.Keys(fromHelm)), slices.Sorted(maps.Keys(fromPlugin)))
			}
			for key, h := range fromHelm {
				if p := fromPlugin[key]; !reflect.DeepEqual(h, p) {
					hy, _ := yaml.Marshal(h)
					py, _ := yaml.Marshal(p)
					t.Errorf("%s differs:\n--- helm\n%s\n--- plugin\n%s", key, hy, py)
				}
			}
		})
	}
	// Every flag of install that shapes an object has a case.
	notObjects := []string{"dry-run", "wait", "timeout", "output", "template", "show-managed-fields", "allow-missing-template-keys"}
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	cmd := NewCmdImageCache(streams)
	installCmd, _, err := cmd.Find([]string{"install"})
	if err != nil {
		t.Fatal(err)
	}
	installCmd.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
		if !covered[f.Name] && !slices.Contains(notObjects, f.Name) {
			t.Errorf("install flag --%s has no case comparing the chart with it", f.Name)
		}
	})
	if !covered["n"] {
		t.Error("the namespace has no case")
	}
}

// Values Helm cannot take fail at helm install, naming the value.
func TestChartSchemaRefusesBadValues(t *testing.T) {
	for values, want := range map[string]string{
		"image: {pullPolicy: Sometimes}":    "pullPolicy",
		"resyncPeriod: soon":                "resyncPeriod",
		"registryPullQPS: -1":               "registryPullQPS",
		"registryBurst: 0":                  "registryBurst",
		"tolerations: [{key: 1}]":           "tolerations",
		"sources: {configMap: true}":        "configMap",
		"imagePullSecret: [regcred]":        "imagePullSecret",
		"startupTaint: warming":             "startupTaint",
		"image: {digest: latest}":           "digest",
		"resources: {limits: {memory: []}}": "memory",
	} {
		_, err := helmTemplate(t, "icd", values)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("values %q: error %v, want one naming %s", values, err, want)
		}
	}
}
