package install

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/dcherman/image-cache-daemon/charts"
)

// ReleaseName is the Helm release name kubectl imagecache install renders
// the chart as; the chart's object names do not depend on it.
const ReleaseName = Name

var loadChart = sync.OnceValues(func() (*chart.Chart, error) {
	return readChart(charts.FS, charts.Name)
})

// readChart loads the chart in directory dir of fsys.
func readChart(fsys fs.FS, dir string) (*chart.Chart, error) {
	var files []*archive.BufferedFile
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files = append(files, &archive.BufferedFile{Name: strings.TrimPrefix(p, dir+"/"), Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the chart: %w", err)
	}
	return loader.LoadFiles(files)
}

// Chart returns the chart every installation is made from.
func Chart() (*chart.Chart, error) { return loadChart() }

// kindOrder is the order objects are applied in: what others refer to
// first, the workloads last.
var kindOrder = []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
	"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "Lease", "ConfigMap", "Deployment", "DaemonSet"}

// Render renders the chart as the release of namespace with values v,
// validated against the chart's schema, and decodes its objects, strictly,
// in the order they are applied.
func Render(namespace string, v Values) ([]runtime.Object, error) {
	c, err := loadChart()
	if err != nil {
		return nil, err
	}
	vals, err := toMap(v)
	if err != nil {
		return nil, err
	}
	top, err := chartutil.ToRenderValuesWithSchemaValidation(c, vals,
		common.ReleaseOptions{Name: ReleaseName, Namespace: namespace, IsInstall: true}, common.DefaultCapabilities, false)
	if err != nil {
		return nil, fmt.Errorf("the chart's values: %w", err)
	}
	files, err := engine.Render(c, top)
	if err != nil {
		return nil, fmt.Errorf("rendering the chart: %w", err)
	}
	return DecodeManifests(files)
}

// DecodeManifests decodes rendered templates (file name → YAML documents)
// into typed objects, strictly (a field the type does not have is an
// error), in the order they are applied: by kind, then by file and place.
func DecodeManifests(files map[string]string) ([]runtime.Object, error) {
	names := make([]string, 0, len(files))
	for name := range files {
		if path.Ext(name) == ".yaml" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var objs []runtime.Object
	for _, name := range names {
		docs := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(files[name])))
		for {
			doc, err := docs.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			obj, err := decode(doc)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if obj != nil {
				objs = append(objs, obj)
			}
		}
	}
	rank := func(o runtime.Object) int { return slices.Index(kindOrder, o.GetObjectKind().GroupVersionKind().Kind) }
	sort.SliceStable(objs, func(i, j int) bool { return rank(objs[i]) < rank(objs[j]) })
	return objs, nil
}

// decode decodes one document into its typed object; nil for a document
// that holds nothing (only comments).
func decode(doc []byte) (runtime.Object, error) {
	var fields map[string]any
	if err := yaml.Unmarshal(doc, &fields); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, doc)
	}
	if len(fields) == 0 {
		return nil, nil
	}
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, doc)
	}
	if tm.Kind == "" || tm.APIVersion == "" {
		return nil, fmt.Errorf("a document with no Kind or apiVersion:\n%s", doc)
	}
	obj, err := scheme.Scheme.New(tm.GroupVersionKind())
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, doc)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	obj.GetObjectKind().SetGroupVersionKind(tm.GroupVersionKind())
	return obj, nil
}
