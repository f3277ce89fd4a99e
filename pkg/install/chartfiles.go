package install

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/invopop/jsonschema"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/dcherman/image-cache-daemon/pkg/warden"
)

// ChartFiles are the chart's files made from Go: values.yaml (DefaultValues,
// each key with its description), values.schema.json (the Values type),
// the values reference of README.md, and the warden executables
// (files/warden-ARCH) that the warden ConfigMap carries. hack/chartgen
// writes them; a test checks that the chart holds them as they are made.
func ChartFiles() (map[string][]byte, error) {
	files := map[string][]byte{}
	docs := valueDocs(reflect.TypeFor[Values](), "")
	defaults, err := toMap(DefaultValues())
	if err != nil {
		return nil, err
	}
	var values bytes.Buffer
	values.WriteString("# Generated from pkg/install.Values by hack/chartgen: do not edit.\n")
	if err := writeValues(&values, reflect.TypeFor[Values](), defaults, 0); err != nil {
		return nil, err
	}
	files["values.yaml"] = values.Bytes()
	schema, err := json.MarshalIndent(ValuesSchema(), "", "  ")
	if err != nil {
		return nil, err
	}
	files["values.schema.json"] = append(schema, '\n')
	files["README.md"] = chartReadme(docs, defaults)
	for _, arch := range warden.Architectures {
		exe, err := warden.Executable(arch)
		if err != nil {
			return nil, err
		}
		files["files/warden-"+arch] = exe
	}
	return files, nil
}

// ValuesSchema is the JSON schema of the chart's values: the Values type,
// with no key it does not know (a misspelt value fails at helm install).
func ValuesSchema() *jsonschema.Schema {
	r := &jsonschema.Reflector{
		RequiredFromJSONSchemaTags: true,
		DoNotReference:             true,
		Anonymous:                  true,
		Mapper: func(t reflect.Type) *jsonschema.Schema {
			if t == reflect.TypeFor[Duration]() {
				return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
					{Type: "string", Pattern: `^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`},
					{Type: "integer", Enum: []any{0}},
				}}
			}
			if t == reflect.TypeFor[resource.Quantity]() {
				return &jsonschema.Schema{
					OneOf:       []*jsonschema.Schema{{Type: "string"}, {Type: "number"}},
					Description: "A quantity, as in 100m or 64Mi.",
				}
			}
			return nil
		},
	}
	s := r.Reflect(&Values{})
	s.Title = "Values of the image-cache-daemon chart"
	return s
}

// valueDoc is one value in the reference: its dotted path, JSON type and
// description.
type valueDoc struct {
	path, typ, description string
}

// valueDocs lists the values of struct type t under prefix: our own
// structs are opened, the Kubernetes types they hold are one value each.
func valueDocs(t reflect.Type, prefix string) []valueDoc {
	var docs []valueDoc
	for f := range fields(t) {
		p := prefix + f.name
		if f.open {
			docs = append(docs, valueDocs(f.Type, p+".")...)
			continue
		}
		docs = append(docs, valueDoc{path: p, typ: jsonType(f.Type), description: f.Tag.Get("jsonschema_description")})
	}
	return docs
}

// valueField is a field of a values struct with its JSON name; open says it is
// one of our own structs, whose fields are values themselves.
type valueField struct {
	reflect.StructField
	name string
	open bool
}

func fields(t reflect.Type) func(func(valueField) bool) {
	return func(yield func(valueField) bool) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" || name == "global" {
				continue
			}
			open := f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == t.PkgPath()
			if !yield(valueField{StructField: f, name: name, open: open}) {
				return
			}
		}
	}
}

func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Float64:
		return "number"
	case reflect.Slice:
		return "list"
	default:
		return "object"
	}
}

// writeValues writes the values of struct type t, from defaults, at depth,
// each after its description as a comment.
func writeValues(w *bytes.Buffer, t reflect.Type, defaults map[string]any, depth int) error {
	indent := strings.Repeat("  ", depth)
	for f := range fields(t) {
		if w.Len() > 0 && depth == 0 {
			w.WriteString("\n")
		}
		for _, line := range wrap(f.Tag.Get("jsonschema_description"), 76-len(indent)) {
			fmt.Fprintf(w, "%s# %s\n", indent, line)
		}
		if f.open {
			fmt.Fprintf(w, "%s%s:\n", indent, f.name)
			sub, _ := defaults[f.name].(map[string]any)
			if err := writeValues(w, f.Type, sub, depth+1); err != nil {
				return err
			}
			continue
		}
		out, err := yaml.Marshal(map[string]any{f.name: defaults[f.name]})
		if err != nil {
			return err
		}
		for line := range strings.Lines(string(out)) {
			w.WriteString(indent + line)
		}
	}
	return nil
}

// wrap cuts text into lines of at most width bytes, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// chartReadme is the chart's README: how to install it, and the values.
func chartReadme(docs []valueDoc, defaults map[string]any) []byte {
	var b bytes.Buffer
	b.WriteString(`<!-- Generated from pkg/install (chartfiles.go, Values) by hack/chartgen: do not edit. -->
# image-cache-daemon

Pulls the images your pods will need onto every node before they are needed: a
planner reads the wanted images (labelled ConfigMaps, Argo WorkflowTemplates,
ClusterWorkflowTemplates and CronWorkflows) and a DaemonSet keeps prefetch pods
on each node that pull them. This chart makes the same objects as
` + "`kubectl imagecache install`" + `, which renders it.

` + "```bash" + `
helm install image-cache-daemon oci://ghcr.io/dcherman/charts/image-cache-daemon \
  --namespace image-cache-daemon --create-namespace
kubectl imagecache add alpine --wait     # the plugin works on a Helm install
kubectl imagecache status
` + "```" + `

Every value is checked against values.schema.json: a misspelt or mistyped value
fails at ` + "`helm install`" + ` with its name. Object names are fixed (the daemon, the
planner and the plugin find each other by them); cluster-scoped ones carry the
release namespace, so two releases in two namespaces never share one. The image
list ` + "`image-cache-daemon-images`" + ` is made empty: ` + "`kubectl imagecache add`" + ` writes its
data, which ` + "`helm upgrade`" + ` leaves alone.

## Values

| value | type | default | description |
|---|---|---|---|
`)
	for _, d := range docs {
		def := lookup(defaults, d.path)
		raw, _ := json.Marshal(def)
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", d.path, d.typ, raw, strings.ReplaceAll(d.description, "|", "\\|"))
	}
	return b.Bytes()
}

// lookup reads a dotted path in m.
func lookup(m map[string]any, path string) any {
	var v any = m
	for key := range strings.SplitSeq(path, ".") {
		mm, _ := v.(map[string]any)
		v = mm[key]
	}
	return v
}

// toMap is v as Helm sees values: decoded JSON.
func toMap(v any) (map[string]any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(raw, &m)
}
