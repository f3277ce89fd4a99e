package install

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
)

// The chart's generated files are as pkg/install makes them: values.yaml
// and the README's reference from DefaultValues and Values, the schema from
// Values, the wardens from pkg/warden. Regenerate with go run ./hack/chartgen.
func TestChartFilesAreGenerated(t *testing.T) {
	files, err := ChartFiles()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join("..", "..", "charts", "image-cache-daemon", name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("charts/image-cache-daemon/%s is not as generated (%v): run go run ./hack/chartgen", name, err)
		}
	}
}

// values.yaml is what a Helm user starts from: rendered as it is, it makes
// a default installation of the chart's appVersion, without the namespace.
func TestDefaultValuesRender(t *testing.T) {
	c, err := Chart()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Render("icd", DefaultValues())
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		if obj.GetObjectKind().GroupVersionKind().Kind == "Namespace" {
			t.Error("a Helm release makes its namespace; values.yaml must not")
		}
	}
	ds := findDaemonSet(t, objs)
	if got, want := ds.Spec.Template.Spec.Containers[0].Image, "ghcr.io/dcherman/image-cache-daemon:"+c.Metadata.AppVersion; got != want {
		t.Errorf("image %s, want %s", got, want)
	}
}

// The chart passes helm lint (Helm's own linter: Chart.yaml, values and
// schema, templates rendered and parsed as Kubernetes objects), with its
// defaults and with the values the plugin gives: no warning, no error
// (information, such as that the chart has no icon, is logged).
func TestChartLint(t *testing.T) {
	dir := filepath.Join("..", "..", "charts", "image-cache-daemon")
	plugin, err := toMap(DefaultOptions("v1.2.3").Values())
	if err != nil {
		t.Fatal(err)
	}
	for name, values := range map[string]map[string]any{"values.yaml": nil, "the plugin's": plugin} {
		l := lint.RunAll(dir, values, "icd", lint.WithKubeVersion(&common.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}))
		for _, m := range l.Messages {
			if m.Severity > support.InfoSev {
				t.Errorf("%s: helm lint: %v", name, m)
			} else {
				t.Logf("%s: helm lint: %v", name, m)
			}
		}
	}
}

// DecodeManifests skips documents of comments only, refuses one with no
// kind and a field its type does not have, and orders objects by kind.
func TestDecodeManifests(t *testing.T) {
	objs, err := DecodeManifests(map[string]string{"a.yaml": "# only a comment\n---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: d}\n---\n" +
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n", "NOTES.txt": "not YAML: ["})
	if err != nil || len(objs) != 2 || objs[0].GetObjectKind().GroupVersionKind().Kind != "Namespace" {
		t.Fatalf("objects %v, %v", objs, err)
	}
	for doc, want := range map[string]string{
		"metadata: {name: x}\n": "Kind",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndatta: {}\n": "datta",
	} {
		if _, err := DecodeManifests(map[string]string{"b.yaml": doc}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error naming %s", doc, err, want)
		}
	}
}
