package argo

import (
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"github.com/dcherman/image-cache-daemon/pkg/argo/argotest"
)

// BenchmarkWorstCase prints what the audit's worst inputs cost one read
// with the default budget: time, bytes allocated, and the heap's peak above
// where it started (go test -run=- -bench WorstCase -benchmem ./pkg/argo/).
func BenchmarkWorstCase(b *testing.B) {
	for _, bc := range []struct {
		name string
		spec *wfv1.WorkflowSpec
	}{
		{"nested-calls-4000p-100t-8fan", argotest.NestedCalls(4000, 100, 8)},
		{"expressions-1000p-30t", argotest.Expressions(1000, 30)},
		{"string-workflow-x20-200p", argotest.StringifyWorkflow(200)},
		{"defaults-2000t-2000d", argotest.ManyDefaults(2000, 2000, "img%d")},
		{"flattening-item-x113-100t", argotest.Flattening(100)},
		{"held-scopes-20t-8fan-4x1KB", argotest.HeldScopes(20, 8, 4)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var err error
			c := measure(func() { _, _, err = Images(bc.spec, DefaultBudget()) })
			b.ReportAllocs()
			for b.Loop() {
				_, _, _ = Images(bc.spec, DefaultBudget())
			}
			b.ReportMetric(float64(specBytes(bc.spec))/1024, "spec-KB")
			b.ReportMetric(float64(c.peak)/(1<<20), "peak-MB")
			refused := 0.0
			if err != nil {
				refused = 1
			}
			b.ReportMetric(refused, "refused")
		})
	}
}
