package argo

import (
	"fmt"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// BenchmarkImages prints the time and memory one object costs the daemon:
// a large ordinary template and the hostile ones, each bounded by the
// budget (go test -bench Images -benchmem ./pkg/argo/).
func BenchmarkImages(b *testing.B) {
	ordinary := &wfv1.WorkflowSpec{Entrypoint: "main", Arguments: args(param("registry", "ghcr.io/org", nil))}
	var calls []wfv1.WorkflowStep
	for i := 0; i < 200; i++ {
		name := fmt.Sprintf("step-%d", i)
		ordinary.Templates = append(ordinary.Templates, wfv1.Template{Name: name, Inputs: inputs(param("tag", nil, "v1")),
			Container: ctr("{{workflow.parameters.registry}}/" + name + ":{{inputs.parameters.tag}}")})
		calls = append(calls, wfv1.WorkflowStep{Name: name, Template: name, Arguments: args(param("tag", fmt.Sprintf("v%d", i), nil))})
	}
	ordinary.Templates = append(ordinary.Templates, wfv1.Template{Name: "main", Steps: steps(calls...)})
	for _, bc := range []struct {
		name string
		spec *wfv1.WorkflowSpec
	}{
		{"ordinary-200-templates", ordinary},
		{"self-reference-x7", &wfv1.WorkflowSpec{
			Arguments: args(param("a", nil, "{{workflow.parameters.a}}{{workflow.parameters.a}}{{workflow.parameters.a}}{{workflow.parameters.a}}{{workflow.parameters.a}}{{workflow.parameters.a}}{{workflow.parameters.a}}")),
			Templates: []wfv1.Template{{Name: "t", Container: ctr("{{workflow.parameters.a}}")}}}},
		{"doubling-chain-22", chain(22, 1, "{{inputs.parameters.x}}{{inputs.parameters.x}}", "{{inputs.parameters.x}}", false)},
		{"cycle-24x2", chain(24, 2, "{{inputs.parameters.x}}", "{{inputs.parameters.x}}", true)},
		{"chain-40x2", chain(40, 2, "{{inputs.parameters.x}}", "{{inputs.parameters.x}}", false)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _, _ = Images(bc.spec, DefaultBudget())
			}
		})
	}
}
