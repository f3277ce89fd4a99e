// Package argotest builds the worst Argo workflow specs of issue 16 at a
// given size, for the tests and benchmarks of pkg/argo and for the e2e test
// that writes them to a real cluster.
package argotest

import (
	"encoding/json"
	"fmt"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
)

// ValueBytes is the longest value argo.DefaultBudget reads (MaxValueBytes;
// a test of pkg/argo keeps them equal).
const ValueBytes = 1024

// The worst inputs of issue 16, built at a given size so that tests can
// place them just under and just over a limit, and the benchmark can print
// what each costs at the sizes the audit used.

// NestedCalls is many workflow parameters and a chain of templates, each
// calling the next from fan steps: from the third link on, every template
// runs in MaxScopes ways, and each way is a scope that sees every workflow
// parameter. The audit's 250 KB object is about NestedCalls(4000, 100, 8).
func NestedCalls(params, templates, fan int) *wfv1.WorkflowSpec {
	spec := &wfv1.WorkflowSpec{Entrypoint: "t0"}
	for p := 0; p < params; p++ {
		spec.Arguments.Parameters = append(spec.Arguments.Parameters, Param(fmt.Sprintf("p%04d", p), "v", nil))
	}
	spec.Arguments.Parameters = append(spec.Arguments.Parameters, Param("x", "alpine", nil))
	for i := 0; i < templates; i++ {
		t := wfv1.Template{Name: fmt.Sprintf("t%d", i), Inputs: Inputs(Param("x", nil, nil))}
		if i+1 < templates {
			var calls []wfv1.WorkflowStep
			for f := 0; f < fan; f++ {
				calls = append(calls, wfv1.WorkflowStep{Name: fmt.Sprintf("s%d", f), Template: fmt.Sprintf("t%d", i+1),
					Arguments: Args(Param("x", "{{inputs.parameters.x}}", nil))})
			}
			t.Steps = Steps(calls...)
		} else {
			t.Container = Ctr("{{inputs.parameters.x}}")
		}
		spec.Templates = append(spec.Templates, t)
	}
	return spec
}

// Expressions is many workflow parameters and templates whose image is as
// many {{=...}} as fit in an image, each naming one parameter: Argo builds
// the expression's environment for each. The audit's 58 KB object is
// about Expressions(1000, 30).
func Expressions(params, templates int) *wfv1.WorkflowSpec {
	spec := &wfv1.WorkflowSpec{}
	for p := 0; p < params; p++ {
		spec.Arguments.Parameters = append(spec.Arguments.Parameters, Param(fmt.Sprintf("p%d", p), "v", nil))
	}
	image := strings.Repeat("{{=workflow.parameters.p1}}", ValueBytes/len("{{=workflow.parameters.p1}}"))
	for i := 0; i < templates; i++ {
		spec.Templates = append(spec.Templates, wfv1.Template{Name: fmt.Sprintf("t%d", i), Container: Ctr(image)})
	}
	return spec
}

// Flattening is templates whose image is as many {{=item}} as fit: Argo
// looks for item in the whole expression environment flattened, sprig's
// functions included, for each.
func Flattening(templates int) *wfv1.WorkflowSpec {
	spec := &wfv1.WorkflowSpec{}
	image := strings.Repeat("{{=item}}", ValueBytes/len("{{=item}}"))
	for i := 0; i < templates; i++ {
		spec.Templates = append(spec.Templates, wfv1.Template{Name: fmt.Sprintf("t%d", i), Container: Ctr(image)})
	}
	return spec
}

// HeldScopes is a chain of templates, each calling the next from fan
// steps and passing it inputs values of MaxValueBytes each: every way of
// calling a template holds its inputs' values, which the budget must count
// before they are made.
func HeldScopes(templates, fan, inputCount int) *wfv1.WorkflowSpec {
	long := strings.Repeat("v", ValueBytes)
	spec := &wfv1.WorkflowSpec{Entrypoint: "t0"}
	var ins, pass []wfv1.Parameter
	for p := 0; p < inputCount; p++ {
		name := fmt.Sprintf("i%d", p)
		ins = append(ins, Param(name, nil, nil))
		pass = append(pass, Param(name, long, nil))
	}
	for i := 0; i < templates; i++ {
		t := wfv1.Template{Name: fmt.Sprintf("t%d", i), Inputs: Inputs(ins...)}
		if i+1 < templates {
			var calls []wfv1.WorkflowStep
			for f := 0; f < fan; f++ {
				calls = append(calls, wfv1.WorkflowStep{Name: fmt.Sprintf("s%d", f), Template: fmt.Sprintf("t%d", i+1), Arguments: Args(pass...)})
			}
			t.Steps = Steps(calls...)
		} else {
			t.Container = Ctr("alpine")
		}
		spec.Templates = append(spec.Templates, t)
	}
	return spec
}

// StringifyWorkflow names the whole environment twenty times:
// string(workflow) is every workflow parameter in one string.
func StringifyWorkflow(params int) *wfv1.WorkflowSpec {
	spec := &wfv1.WorkflowSpec{}
	for p := 0; p < params; p++ {
		spec.Arguments.Parameters = append(spec.Arguments.Parameters, Param(fmt.Sprintf("p%d", p), strings.Repeat("v", 1000), nil))
	}
	spec.Templates = []wfv1.Template{{Name: "t", Container: Ctr(strings.Repeat("{{=string(workflow)}}", 20))}}
	return spec
}

// ManyDefaults is templates container templates and as many sidecars in
// templateDefaults, each with an image: every template inherits every
// sidecar. image is a format for the sidecar's number; the templates have
// an input v, so it may name {{inputs.parameters.v}}. The audit's 276 KB
// object is ManyDefaults(2000, 2000, "img%d").
func ManyDefaults(templates, defaults int, image string) *wfv1.WorkflowSpec {
	spec := &wfv1.WorkflowSpec{TemplateDefaults: &wfv1.Template{}}
	for d := 0; d < defaults; d++ {
		spec.TemplateDefaults.Sidecars = append(spec.TemplateDefaults.Sidecars, User(fmt.Sprintf("s%d", d), fmt.Sprintf(image, d)))
	}
	for i := 0; i < templates; i++ {
		spec.Templates = append(spec.Templates, wfv1.Template{Name: fmt.Sprintf("t%d", i),
			Inputs: Inputs(Param("v", nil, "1")), Container: Ctr("alpine")})
	}
	return spec
}

// LoopAtTheCap is a template calling another from a withItems list of n
// items, each a map of keys whose values are as long as are read.
func LoopAtTheCap(n, keys int) *wfv1.WorkflowSpec {
	long := strings.Repeat("v", ValueBytes)
	var items []wfv1.Item
	for i := 0; i < n; i++ {
		m := map[string]string{}
		for k := 0; k < keys; k++ {
			m[fmt.Sprintf("k%d", k)] = long
		}
		raw, _ := json.Marshal(m)
		items = append(items, wfv1.Item{Value: raw})
	}
	return &wfv1.WorkflowSpec{Entrypoint: "main", Templates: []wfv1.Template{
		{Name: "main", Steps: Steps(wfv1.WorkflowStep{Name: "s", Template: "r", WithItems: items,
			Arguments: Args(Param("i", "{{item.k0}}", nil))})},
		{Name: "r", Inputs: Inputs(Param("i", nil, nil)), Container: Ctr("{{inputs.parameters.i}}")},
	}}
}

// Param is a parameter with a value and a default, each nil for none.
func Param(name string, value, def any) wfv1.Parameter {
	p := wfv1.Parameter{Name: name}
	if value != nil {
		p.Value = wfv1.AnyStringPtr(value)
	}
	if def != nil {
		p.Default = wfv1.AnyStringPtr(def)
	}
	return p
}

// Args, Inputs, Ctr, User and Steps build the parts of a spec.
func Args(ps ...wfv1.Parameter) wfv1.Arguments { return wfv1.Arguments{Parameters: ps} }

// Inputs are a template's input parameters.
func Inputs(ps ...wfv1.Parameter) wfv1.Inputs { return wfv1.Inputs{Parameters: ps} }

// Ctr is a container of that image.
func Ctr(image string) *corev1.Container { return &corev1.Container{Image: image} }

// User is a named container (a sidecar, an init container) of that image.
func User(name, image string) wfv1.UserContainer {
	return wfv1.UserContainer{Container: corev1.Container{Name: name, Image: image}}
}

// Steps is one group of parallel steps.
func Steps(s ...wfv1.WorkflowStep) []wfv1.ParallelSteps { return []wfv1.ParallelSteps{{Steps: s}} }
