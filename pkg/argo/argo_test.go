package argo

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/dcherman/image-cache-daemon/pkg/argo/argotest"
)

// Builders that keep the table below readable.

// The builders of pkg/argo/argotest, under the short names the tests use.
var (
	param  = argotest.Param
	args   = argotest.Args
	inputs = argotest.Inputs
	ctr    = argotest.Ctr
	user   = argotest.User
	steps  = argotest.Steps
)

func script(image string) *wfv1.ScriptTemplate {
	return &wfv1.ScriptTemplate{Container: corev1.Container{Image: image}, Source: "echo hi"}
}

func containerSet(images ...string) *wfv1.ContainerSetTemplate {
	cs := &wfv1.ContainerSetTemplate{}
	for i, img := range images {
		cs.Containers = append(cs.Containers, wfv1.ContainerNode{Container: corev1.Container{Name: string(rune('a' + i)), Image: img}})
	}
	return cs
}

func item(t *testing.T, json string) wfv1.Item {
	t.Helper()
	it, err := wfv1.ParseItem(json)
	if err != nil {
		t.Fatal(err)
	}
	return it
}

// manyItems is a withItems list of n images, app-000 ...
func manyItems(t *testing.T, n int) []wfv1.Item {
	var out []wfv1.Item
	for i := 0; i < n; i++ {
		out = append(out, item(t, fmt.Sprintf(`"registry.example/app-%03d:v1"`, i)))
	}
	return out
}

func manyImages(n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("registry.example/app-%03d:v1", i))
	}
	return out
}

// hub spells a Docker Hub image the way Normalize writes it.
func hub(s string) string {
	if !strings.Contains(s, ":") {
		s += ":latest"
	}
	return "docker.io/library/" + s
}

// skip is what a test expects of one Skipped: its template, its field and
// words of its reason.
type skip struct{ template, field, says string }

func TestImagesFromWorkflowSpec(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spec    *wfv1.WorkflowSpec
		want    []string
		skipped []skip
	}{
		{name: "nil spec", spec: nil},
		{name: "empty spec", spec: &wfv1.WorkflowSpec{}},
		{name: "steps and DAG templates hold no image", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{
			{Name: "main", Steps: steps(wfv1.WorkflowStep{Name: "a", Template: "x"})},
			{Name: "dag", DAG: &wfv1.DAGTemplate{Tasks: []wfv1.DAGTask{{Name: "a", Template: "x"}}}},
			{Name: "wait", Suspend: &wfv1.SuspendTemplate{}},
		}}},

		// Every position of a template.
		{name: "container", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{{Name: "t", Container: ctr("alpine")}}},
			want: []string{hub("alpine")}},
		{name: "script", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{{Name: "t", Script: script("python:3.12")}}},
			want: []string{hub("python:3.12")}},
		{name: "containerSet", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{{Name: "t", ContainerSet: containerSet("alpine", "ghcr.io/org/app:v1")}}},
			want: []string{hub("alpine"), "ghcr.io/org/app:v1"}},
		{name: "initContainers", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{{Name: "t", Container: ctr("alpine"),
			InitContainers: []wfv1.UserContainer{user("init", "busybox:1.36")}}}},
			want: []string{hub("alpine"), hub("busybox:1.36")}},
		{name: "sidecars", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{{Name: "t", Container: ctr("alpine"),
			Sidecars: []wfv1.UserContainer{user("db", "postgres:16"), user("cache", "redis:7")}}}},
			want: []string{hub("alpine"), hub("postgres:16"), hub("redis:7")}},
		{name: "a container without image is not an image", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{{Name: "t", Container: ctr("")}}}},
		{name: "inline templates in steps and DAG tasks", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{
			{Name: "main", Steps: steps(
				wfv1.WorkflowStep{Name: "a", Inline: &wfv1.Template{Container: ctr("alpine")}},
				wfv1.WorkflowStep{Name: "b", Inline: &wfv1.Template{Script: script("{{item}}")}})},
			{Name: "dag", DAG: &wfv1.DAGTemplate{Tasks: []wfv1.DAGTask{{Name: "c", Inline: &wfv1.Template{
				Inputs: inputs(param("tag", nil, "1.27")), Container: ctr("nginx:{{inputs.parameters.tag}}")}}}}},
		}}, want: []string{hub("alpine"), hub("nginx:1.27")},
			skipped: []skip{{"main/b", "script", "loop item"}}},

		// templateDefaults.
		{name: "templateDefaults images are wanted even if no template inherits them", spec: &wfv1.WorkflowSpec{
			TemplateDefaults: &wfv1.Template{
				Container:      ctr("defaults-container"),
				Script:         script("defaults-script"),
				ContainerSet:   containerSet("defaults-set"),
				InitContainers: []wfv1.UserContainer{user("init", "defaults-init")},
				Sidecars:       []wfv1.UserContainer{user("log", "defaults-sidecar")},
			},
			Templates: []wfv1.Template{{Name: "t", Container: ctr("alpine")}},
		}, want: []string{hub("alpine"), hub("defaults-container"), hub("defaults-init"), hub("defaults-script"), hub("defaults-set"), hub("defaults-sidecar")}},
		{name: "templateDefaults container resolved in each template that inherits it", spec: &wfv1.WorkflowSpec{
			TemplateDefaults: &wfv1.Template{Container: ctr("{{inputs.parameters.image}}")},
			Templates: []wfv1.Template{
				{Name: "a", Inputs: inputs(param("image", nil, "alpine")), Container: ctr("")},
				{Name: "b", Inputs: inputs(param("image", "nginx:1.27", nil)), Container: &corev1.Container{Args: []string{"x"}}},
				{Name: "own-image", Inputs: inputs(param("image", nil, "ignored")), Container: ctr("debian")},
				{Name: "no-default", Inputs: inputs(param("image", nil, nil)), Container: ctr("")},
				{Name: "script-does-not-inherit-container", Inputs: inputs(param("image", nil, "ignored")), Script: script("")},
			},
		}, want: []string{hub("alpine"), hub("debian"), hub("nginx:1.27")},
			skipped: []skip{{"no-default", "container (from templateDefaults)", `input parameter "image" has neither a value nor a default`}}},
		{name: "templateDefaults image with inputs that no template inherits", spec: &wfv1.WorkflowSpec{
			TemplateDefaults: &wfv1.Template{Container: ctr("{{inputs.parameters.image}}")},
			Templates:        []wfv1.Template{{Name: "t", Container: ctr("alpine")}},
		}, want: []string{hub("alpine")},
			skipped: []skip{{"templateDefaults", "container", "resolved in each template that inherits the image, and none does"}}},
		{name: "templateDefaults script goes to script templates only", spec: &wfv1.WorkflowSpec{
			TemplateDefaults: &wfv1.Template{Script: script("python:{{inputs.parameters.v}}")},
			Templates: []wfv1.Template{
				{Name: "s", Inputs: inputs(param("v", nil, "3.12")), Script: script("")},
				{Name: "c", Inputs: inputs(param("v", nil, "3.11")), Container: ctr("alpine")},
			},
		}, want: []string{hub("alpine"), hub("python:3.12")}},
		{name: "templateDefaults sidecars merge by name into pod templates", spec: &wfv1.WorkflowSpec{
			TemplateDefaults: &wfv1.Template{
				Sidecars:       []wfv1.UserContainer{user("log", "fluent-bit:{{inputs.parameters.v}}"), user("proxy", "envoy:v1")},
				InitContainers: []wfv1.UserContainer{user("init", "busybox")},
			},
			Templates: []wfv1.Template{
				{Name: "c", Inputs: inputs(param("v", nil, "3")), Container: ctr("alpine"),
					Sidecars: []wfv1.UserContainer{user("log", "")}},
				{Name: "r", Inputs: inputs(param("v", nil, "4")), Resource: &wfv1.ResourceTemplate{Action: "create"}},
				{Name: "steps-run-no-pod", Steps: steps(wfv1.WorkflowStep{Name: "a", Template: "c"})},
			},
		}, want: []string{hub("alpine"), hub("busybox"), hub("envoy:v1"), hub("fluent-bit:3"), hub("fluent-bit:4")}},
		{name: "inherited and unresolvable is reported by the template, not twice", spec: &wfv1.WorkflowSpec{
			TemplateDefaults: &wfv1.Template{Container: ctr("{{item}}")},
			Templates:        []wfv1.Template{{Name: "t", Container: ctr("")}},
		}, skipped: []skip{{"t", "container (from templateDefaults)", "loop item"}}},
		{name: "templateDefaults resolved from workflow parameters", spec: &wfv1.WorkflowSpec{
			Arguments:        args(param("registry", nil, "ghcr.io/org")),
			TemplateDefaults: &wfv1.Template{Sidecars: []wfv1.UserContainer{user("log", "{{workflow.parameters.registry}}/log:v1")}},
		}, want: []string{"ghcr.io/org/log:v1"}},

		// Parameters.
		{name: "workflow parameter: value, else default", spec: &wfv1.WorkflowSpec{
			Arguments: args(param("img", "alpine:3.20", "ignored"), param("tag", nil, "1.27"), param("n", nil, 7)),
			Templates: []wfv1.Template{
				{Name: "a", Container: ctr("{{workflow.parameters.img}}")},
				{Name: "b", Container: ctr("nginx:{{ workflow.parameters.tag }}")},
				{Name: "c", Container: ctr("app:v{{workflow.parameters.n}}")},
			},
		}, want: []string{hub("alpine:3.20"), hub("app:v7"), hub("nginx:1.27")}},
		{name: "input parameter: value, else default", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{
			{Name: "a", Inputs: inputs(param("img", "alpine:3.20", "ignored")), Container: ctr("{{inputs.parameters.img}}")},
			{Name: "b", Inputs: inputs(param("tag", nil, "1.27")), Script: script("nginx:{{ inputs.parameters.tag  }}")},
			// Argo substitutes into JSON, where a tab is an escape it does not trim.
			{Name: "c", Inputs: inputs(param("tag", nil, "1.27")), Script: script("nginx:{{\tinputs.parameters.tag}}")},
		}}, want: []string{hub("alpine:3.20"), hub("nginx:1.27")},
			skipped: []skip{{"c", "script", "Argo does not substitute it as written"}}},
		{name: "inputs are the template's own", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{
			{Name: "a", Inputs: inputs(param("img", nil, "alpine")), Container: ctr("{{inputs.parameters.img}}")},
			{Name: "b", Container: ctr("{{inputs.parameters.img}}")},
		}}, want: []string{hub("alpine")},
			skipped: []skip{{"b", "container", `the template has no input parameter "img"`}}},
		{name: "several placeholders, chained through an input default", spec: &wfv1.WorkflowSpec{
			Arguments: args(param("registry", "ghcr.io/org", nil)),
			Templates: []wfv1.Template{{Name: "t",
				Inputs: inputs(param("repo", nil, "{{workflow.parameters.registry}}/app"), param("tag", nil, "v2")),
				Script: script("{{inputs.parameters.repo}}:{{inputs.parameters.tag}}"),
				Sidecars: []wfv1.UserContainer{
					user("s", "{{workflow.parameters.registry}}/{{inputs.parameters.tag}}/side:{{inputs.parameters.tag}}")},
			}},
		}, want: []string{"ghcr.io/org/app:v2", "ghcr.io/org/v2/side:v2"}},

		// Inputs passed by callers in the spec.
		{name: "a called template takes its inputs from each call site", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{
			{Name: "main", Steps: steps(
				wfv1.WorkflowStep{Name: "a", Template: "run", Arguments: args(param("image", "alpine:3.20", nil))},
				wfv1.WorkflowStep{Name: "b", Template: "run", Arguments: args(param("image", "nginx:1.27", nil))},
				wfv1.WorkflowStep{Name: "c", Template: "run"})}, // passes nothing: the default
			{Name: "run", Inputs: inputs(param("image", nil, "debian:12")), Container: ctr("{{inputs.parameters.image}}")},
		}}, want: []string{hub("alpine:3.20"), hub("debian:12"), hub("nginx:1.27")}},
		{name: "withItems: one image per item, plain or map", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{
			{Name: "main", DAG: &wfv1.DAGTemplate{Tasks: []wfv1.DAGTask{
				{Name: "plain", Template: "run", Arguments: args(param("image", "{{item}}", nil)),
					WithItems: []wfv1.Item{item(t, `"redis:7"`), item(t, `"postgres:16"`)}},
				{Name: "map", Template: "run", Arguments: args(param("image", "ghcr.io/org/{{item.name}}:{{item.tag}}", nil)),
					WithItems: []wfv1.Item{item(t, `{"name": "api", "tag": "v3"}`)}},
			}}},
			{Name: "run", Inputs: inputs(param("image", nil, nil)), Container: ctr("{{inputs.parameters.image}}")},
		}}, want: []string{hub("postgres:16"), hub("redis:7"), "ghcr.io/org/api:v3"}},
		{name: "arguments resolve through a chain of callers", spec: &wfv1.WorkflowSpec{
			Arguments: args(param("registry", "ghcr.io/org", nil)),
			Templates: []wfv1.Template{
				{Name: "main", Steps: steps(wfv1.WorkflowStep{Name: "s", Template: "mid",
					Arguments: args(param("repo", "{{workflow.parameters.registry}}/app", nil))})},
				{Name: "mid", Inputs: inputs(param("repo", nil, nil)), Steps: steps(wfv1.WorkflowStep{Name: "t", Template: "leaf",
					Arguments: args(param("image", "{{inputs.parameters.repo}}:v2", nil))})},
				{Name: "leaf", Inputs: inputs(param("image", nil, nil)), Container: ctr("{{inputs.parameters.image}}")},
				// Recursion ends: the template calls itself.
				{Name: "again", Inputs: inputs(param("tag", nil, "1")), Container: ctr("busybox:{{inputs.parameters.tag}}"),
					Steps: steps(wfv1.WorkflowStep{Name: "r", Template: "again", Arguments: args(param("tag", "{{inputs.parameters.tag}}", nil))})},
			},
		}, want: []string{hub("busybox:1"), "ghcr.io/org/app:v2"}},
		{name: "arguments known only at run time are skipped, naming the call", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{
			{Name: "main", DAG: &wfv1.DAGTemplate{Tasks: []wfv1.DAGTask{
				{Name: "output", Template: "run", Arguments: args(param("image", "{{tasks.build.outputs.parameters.image}}", nil))},
				{Name: "param-loop", Template: "run", Arguments: args(param("image", "{{item}}", nil)), WithParam: "{{tasks.list.outputs.result}}"},
				{Name: "from", Template: "run", Arguments: args(wfv1.Parameter{Name: "image", ValueFrom: &wfv1.ValueFrom{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{Key: "k"}}})},
				{Name: "good", Template: "run", Arguments: args(param("image", "alpine", nil))},
			}}},
			{Name: "run", Inputs: inputs(param("image", nil, nil)), Container: ctr("{{inputs.parameters.image}}")},
		}}, want: []string{hub("alpine")}, skipped: []skip{
			{"run", "container", `input parameter "image" is passed as "{{tasks.build.outputs.parameters.image}}": {{tasks.build.outputs.parameters.image}} is the output of another step, known only when the workflow runs (as called by step "output" of template "main")`},
			{"run", "container", `is a loop item (withItems, withParam, withSequence), known only when the workflow runs (as called by step "param-loop"`},
			{"run", "container", `is passed from a source read only when the workflow runs (as called by step "from"`},
		}},

		{name: "the entrypoint takes spec.arguments as its inputs, and passes them on", spec: &wfv1.WorkflowSpec{
			Entrypoint: "main",
			Arguments:  args(param("image", "alpine:3.20", nil), param("undeclared", "x", nil)),
			Templates: []wfv1.Template{
				{Name: "main", Inputs: inputs(param("image", nil, "debian:12")),
					Steps: steps(wfv1.WorkflowStep{Name: "s", Template: "run", Arguments: args(param("image", "{{inputs.parameters.image}}", nil))})},
				{Name: "run", Inputs: inputs(param("image", nil, nil)), Container: ctr("{{inputs.parameters.image}}")},
			},
		}, want: []string{hub("alpine:3.20")}},
		{name: "a cycle of calls gives the same images whatever the order of the templates", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{
			{Name: "b", Inputs: inputs(param("x", nil, nil)), Container: ctr("{{inputs.parameters.x}}"),
				Steps: steps(wfv1.WorkflowStep{Name: "back", Template: "a", Arguments: args(param("x", "{{inputs.parameters.x}}", nil))})},
			{Name: "a", Inputs: inputs(param("x", nil, nil)), Container: ctr("{{inputs.parameters.x}}"),
				Steps: steps(wfv1.WorkflowStep{Name: "on", Template: "b", Arguments: args(param("x", "{{inputs.parameters.x}}", nil))})},
			{Name: "main", Steps: steps(wfv1.WorkflowStep{Name: "in", Template: "a", Arguments: args(param("x", "alpine", nil))})},
		}}, want: []string{hub("alpine")}},
		{name: "a cycle of calls, templates in the other order", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{
			{Name: "main", Steps: steps(wfv1.WorkflowStep{Name: "in", Template: "a", Arguments: args(param("x", "alpine", nil))})},
			{Name: "a", Inputs: inputs(param("x", nil, nil)), Container: ctr("{{inputs.parameters.x}}"),
				Steps: steps(wfv1.WorkflowStep{Name: "on", Template: "b", Arguments: args(param("x", "{{inputs.parameters.x}}", nil))})},
			{Name: "b", Inputs: inputs(param("x", nil, nil)), Container: ctr("{{inputs.parameters.x}}"),
				Steps: steps(wfv1.WorkflowStep{Name: "back", Template: "a", Arguments: args(param("x", "{{inputs.parameters.x}}", nil))})},
		}}, want: []string{hub("alpine")}},
		{name: "a run-time value passed down a chain says where it comes from", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{
			{Name: "main", Steps: steps(wfv1.WorkflowStep{Name: "s", Template: "mid",
				Arguments: args(wfv1.Parameter{Name: "img", ValueFrom: &wfv1.ValueFrom{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{Key: "k"}}})})},
			{Name: "mid", Inputs: inputs(param("img", nil, nil)), Steps: steps(wfv1.WorkflowStep{Name: "t", Template: "leaf",
				Arguments: args(param("img", "{{inputs.parameters.img}}", nil))})},
			{Name: "leaf", Inputs: inputs(param("img", nil, nil)), Container: ctr("{{inputs.parameters.img}}")},
		}}, skipped: []skip{{"leaf", "container", `is passed from a source read only when the workflow runs`}}},
		{name: "more ways of calling than are read are reported", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{
			{Name: "main", Steps: steps(wfv1.WorkflowStep{Name: "many", Template: "run", Arguments: args(param("image", "{{item}}", nil)),
				WithItems: manyItems(t, DefaultBudget().MaxScopes+1)})},
			{Name: "run", Inputs: inputs(param("image", nil, nil)), Container: ctr("{{inputs.parameters.image}}")},
		}}, want: manyImages(DefaultBudget().MaxScopes), skipped: []skip{{"run", "container", "called in more than 64 ways"}}},

		// What cannot be resolved, or is not an image.
		{name: "unresolvable placeholders are skipped", spec: &wfv1.WorkflowSpec{
			Arguments: args(param("novalue", nil, nil), param("a", nil, "{{workflow.parameters.b}}"), param("b", nil, "{{workflow.parameters.a}}")),
			Templates: []wfv1.Template{
				{Name: "loop", Container: ctr("{{item}}")},
				{Name: "loop-field", Container: ctr("{{item.image}}")},
				{Name: "step-output", Container: ctr("{{steps.build.outputs.result}}")},
				{Name: "task-output", Script: script("{{tasks.build.outputs.parameters.image}}")},
				{Name: "expression", Container: ctr("{{=inputs.parameters.x}}")},
				{Name: "runtime", Container: ctr("app:{{workflow.name}}")},
				{Name: "no-value", Container: ctr("{{workflow.parameters.novalue}}")},
				{Name: "undeclared", Container: ctr("{{workflow.parameters.missing}}")},
				{Name: "caller-passes", Inputs: inputs(param("img", nil, nil)), Container: ctr("{{inputs.parameters.img}}")},
				{Name: "cycle", Container: ctr("{{workflow.parameters.a}}")},
				{Name: "good", Container: ctr("alpine")},
			},
		}, want: []string{hub("alpine")}, skipped: []skip{
			{"loop", "container", "{{item}} is a loop item"},
			{"loop-field", "container", "{{item.image}} is a loop item"},
			{"step-output", "container", "output of another step"},
			{"task-output", "script", "output of another step"},
			{"expression", "container", "is an expression"},
			{"runtime", "container", "{{workflow.name}} is known only when the workflow runs"},
			{"no-value", "container", `workflow parameter "novalue" has neither a value nor a default`},
			{"undeclared", "container", `spec.arguments has no parameter "missing"`},
			{"caller-passes", "container", "comes from the caller"},
			{"cycle", "container", "refer to each other in a loop"},
		}},
		{name: "invalid images are skipped", spec: &wfv1.WorkflowSpec{
			Arguments: args(param("img", "Alpine", nil), param("empty", "", nil)),
			Templates: []wfv1.Template{
				{Name: "literal", Container: ctr("Not/Valid:x")},
				{Name: "resolved", Container: ctr("{{workflow.parameters.img}}")},
				{Name: "resolved-empty", Container: ctr("{{workflow.parameters.empty}}")},
				{Name: "unterminated", Container: ctr("alpine:{{tag")},
				{Name: "sidecar", Container: ctr("debian"), Sidecars: []wfv1.UserContainer{user("", "bad image")}},
			},
		}, want: []string{hub("debian")}, skipped: []skip{
			{"literal", "container", `it is not a valid image reference: repository names must be lowercase`},
			{"resolved", "container", `it resolves to "Alpine", which is not a valid image reference: repository names must be lowercase`},
			{"resolved-empty", "container", `it resolves to "", which is not a valid image reference: it is empty`},
			{"unterminated", "container", "unresolved {{...}} template"},
			{"sidecar", "sidecars[0]", "white space"},
		}},
		{name: "duplicates collapse across templates and positions", spec: &wfv1.WorkflowSpec{
			Arguments:        args(param("img", "library/alpine", nil)),
			TemplateDefaults: &wfv1.Template{Container: ctr("docker.io/library/alpine:latest")},
			Templates: []wfv1.Template{
				{Name: "a", Container: ctr("alpine"), Sidecars: []wfv1.UserContainer{user("s", "alpine:latest")}},
				{Name: "b", Script: script("docker.io/alpine")},
				{Name: "c", ContainerSet: containerSet("index.docker.io/library/alpine", "{{workflow.parameters.img}}")},
				{Name: "d", Container: ctr("")},
			},
		}, want: []string{hub("alpine")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, skipped := readSpec(t, tc.spec)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("images = %q, want %q", got, tc.want)
			}
			if len(skipped) != len(tc.skipped) {
				t.Fatalf("skipped = %v, want %d: %v", skipped, len(tc.skipped), tc.skipped)
			}
			for i, s := range skipped {
				w := tc.skipped[i]
				if s.Template != w.template || s.Field != w.field || !strings.Contains(s.Reason, w.says) {
					t.Errorf("skipped[%d] = %+v, want template %q, field %q, reason saying %q", i, s, w.template, w.field, w.says)
				}
				if s.Image == "" {
					t.Errorf("skipped[%d] = %+v does not carry the image", i, s)
				}
			}
			again, skippedAgain := readSpec(t, tc.spec)
			if !reflect.DeepEqual(again, got) || !reflect.DeepEqual(skippedAgain, skipped) {
				t.Errorf("a second parse differs: %q %v", again, skippedAgain)
			}
		})
	}
}

func TestSkippedReads(t *testing.T) {
	s := Skipped{Template: "build", Field: "container", Image: "{{item}}", Reason: "{{item}} is a loop item"}
	const want = `template "build" container: image "{{item}}" skipped: {{item}} is a loop item`
	if s.String() != want || s.Error() != want {
		t.Fatalf("String() = %q, Error() = %q, want %q", s.String(), s.Error(), want)
	}
}

// TestArgoObjectsFromYAML reads the three Argo kinds as users write them,
// which checks the JSON names this package relies on (templateDefaults,
// containerSet, inline...) and CronWorkflow's embedded spec.
func TestArgoObjectsFromYAML(t *testing.T) {
	const workflowTemplate = `
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata: {name: build, namespace: ci}
spec:
  arguments:
    parameters:
    - name: registry
      value: 127.0.0.1:5000
  templateDefaults:
    sidecars:
    - name: log
      image: fluent/fluent-bit:3
    container:
      image: "{{inputs.parameters.image}}"
  templates:
  - name: main
    steps:
    - - name: each
        template: run
        withItems: [a, b]
      - name: inline
        inline:
          script:
            image: python:3.12
            source: print(1)
  - name: run
    inputs:
      parameters:
      - name: image
        default: "{{workflow.parameters.registry}}/tools:v1"
    container:
      command: [run]
  - name: set
    containerSet:
      containers:
      - {name: a, image: "{{item}}"}
      - {name: b, image: alpine}
`
	var wt wfv1.WorkflowTemplate
	if err := yaml.UnmarshalStrict([]byte(workflowTemplate), &wt); err != nil {
		t.Fatal(err)
	}
	images, skipped := readSpec(t, &wt.Spec)
	want := []string{"127.0.0.1:5000/tools:v1", "docker.io/fluent/fluent-bit:3", hub("alpine"), hub("python:3.12")}
	if !reflect.DeepEqual(images, want) {
		t.Errorf("WorkflowTemplate images = %q, want %q", images, want)
	}
	if len(skipped) != 1 || skipped[0].Template != "set" || skipped[0].Field != "containerSet.containers[a]" {
		t.Errorf("WorkflowTemplate skipped = %v, want the {{item}} of set", skipped)
	}

	const cronWorkflow = `
apiVersion: argoproj.io/v1alpha1
kind: CronWorkflow
metadata: {name: nightly}
spec:
  schedules: ["0 2 * * *"]
  workflowSpec:
    entrypoint: main
    templates:
    - name: main
      container: {image: "busybox:1.36"}
`
	var cw wfv1.CronWorkflow
	if err := yaml.UnmarshalStrict([]byte(cronWorkflow), &cw); err != nil {
		t.Fatal(err)
	}
	images, skipped = readSpec(t, &cw.Spec.WorkflowSpec)
	if !reflect.DeepEqual(images, []string{hub("busybox:1.36")}) || len(skipped) != 0 {
		t.Errorf("CronWorkflow: images %q, skipped %v", images, skipped)
	}

	var cwt wfv1.ClusterWorkflowTemplate
	if err := yaml.UnmarshalStrict([]byte(strings.Replace(workflowTemplate, "kind: WorkflowTemplate", "kind: ClusterWorkflowTemplate", 1)), &cwt); err != nil {
		t.Fatal(err)
	}
	if images, _ := readSpec(t, &cwt.Spec); !reflect.DeepEqual(images, want) {
		t.Errorf("ClusterWorkflowTemplate images = %q, want %q", images, want)
	}
}

// images reads spec within the default budget, which no spec of these
// tests exceeds.
func readSpec(t *testing.T, spec *wfv1.WorkflowSpec) ([]string, []Skipped) {
	t.Helper()
	got, skipped, err := Images(spec, DefaultBudget())
	if err != nil {
		t.Fatalf("Images: %v", err)
	}
	return got, skipped
}
