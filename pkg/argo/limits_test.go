package argo

import (
	"errors"
	"fmt"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"github.com/dcherman/image-cache-daemon/pkg/argo/argotest"
)

// specFactor bounds what reading an object allocates outside the budget,
// per byte of its JSON: the index of its calls and templateDefaults.
const specFactor = 4

// The worst inputs of issue 16 (items 2, 3 and 4), each grown until the
// default budget refuses it: just under the limit it is read, just over it
// is refused, and either way what the read allocated, which bounds both
// its time and the memory it held at its peak, is within MaxWork plus
// specFactor bytes per byte of the object.
func TestWorstInputsAtTheLimits(t *testing.T) {
	b := DefaultBudget()
	for _, tc := range []struct {
		name  string
		build func(n int) *wfv1.WorkflowSpec
	}{
		{"2: n nested templates called 8 ways each, 4000 workflow parameters", func(n int) *wfv1.WorkflowSpec { return argotest.NestedCalls(4000, n, 8) }},
		{"2: n nested templates called 8 ways each, passed 4 values of 1 KB", func(n int) *wfv1.WorkflowSpec { return argotest.HeldScopes(n, 8, 4) }},
		{"2: a cycle of n templates calling the next from 2 steps", func(n int) *wfv1.WorkflowSpec {
			return chain(n, 2, "{{inputs.parameters.x}}", "{{inputs.parameters.x}}", true)
		}},
		{"2: withItems of 100 items of n values of 1 KB", func(n int) *wfv1.WorkflowSpec { return argotest.LoopAtTheCap(100, n) }},
		{"3: n templates of 37 expressions over 1000 parameters", func(n int) *wfv1.WorkflowSpec { return argotest.Expressions(1000, n) }},
		{"3: n templates of 113 expressions looking for item", argotest.Flattening},
		{"3: string(workflow) twenty times over n parameters of 1 KB", argotest.StringifyWorkflow},
		{"4: n templates x n literal templateDefaults", func(n int) *wfv1.WorkflowSpec { return argotest.ManyDefaults(n, n, "img%d") }},
		{"4: n templates x n templateDefaults with placeholders", func(n int) *wfv1.WorkflowSpec {
			return argotest.ManyDefaults(n, n, "img%d:{{inputs.parameters.v}}")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refused := func(n int) bool {
				_, _, err := Images(tc.build(n), b)
				return err != nil
			}
			// The first n refused: doubled up to, then halved down to.
			hi := 1
			for ; hi < 1<<14 && !refused(hi); hi *= 2 {
			}
			lo := hi / 2
			for lo+1 < hi {
				if mid := (lo + hi) / 2; refused(mid) {
					hi = mid
				} else {
					lo = mid
				}
			}
			for _, n := range []int{lo, hi} {
				spec := tc.build(n)
				e := newEvaluator(b)
				var err error
				bytes := allocated(func() { _, _, err = e.images(spec) })
				size := specBytes(spec)
				t.Logf("n=%d (%d KB): err=%v; allocated %d KB, charged %d KB, %d steps", n, size>>10, err != nil, bytes>>10, e.work>>10, e.steps)
				var tooComplex *TooComplexError
				switch {
				case n == lo && n > 0 && err != nil:
					t.Errorf("n=%d: %v, want it read (n=%d is refused)", n, err, hi)
				case n == hi && refused(hi) && !errors.As(err, &tooComplex):
					t.Errorf("n=%d: err = %v, want *TooComplexError", n, err)
				}
				if err == nil && (e.work > b.MaxWork || e.steps > b.MaxSteps) {
					t.Errorf("n=%d read with %d bytes charged and %d steps, over the budget", n, e.work, e.steps)
				}
				if limit := uint64(b.MaxWork + specFactor*size); bytes > limit && !raceEnabled {
					t.Errorf("n=%d: reading %d KB allocated %d KB, over the bound of %d KB", n, size>>10, bytes>>10, limit>>10)
				}
			}
		})
	}
}

// The default budget is generous for workflows written by hand: hundreds of
// templates called with arguments, expressions, templateDefaults and a
// withItems list of thousands are read whole, within a fraction of it.
func TestDefaultBudgetReadsLargeWorkflows(t *testing.T) {
	spec := &wfv1.WorkflowSpec{Entrypoint: "main", Arguments: args(param("registry", "ghcr.io/org", nil), param("env", "prod", nil)),
		TemplateDefaults: &wfv1.Template{Sidecars: []wfv1.UserContainer{user("log", "fluent-bit:3"), user("proxy", "envoy:{{inputs.parameters.tag}}")}}}
	var calls []wfv1.WorkflowStep
	for i := 0; i < 300; i++ {
		name := fmt.Sprintf("step-%d", i)
		image := "{{workflow.parameters.registry}}/" + name + ":{{inputs.parameters.tag}}"
		if i%5 == 0 {
			image = "{{=workflow.parameters.env == 'prod' ? 'nginx:' + inputs.parameters.tag : 'nginx:latest'}}"
		}
		spec.Templates = append(spec.Templates, wfv1.Template{Name: name,
			Inputs:    inputs(param("tag", nil, "v1"), param("replicas", nil, "3"), param("mode", nil, "fast")),
			Container: ctr(image)})
		calls = append(calls, wfv1.WorkflowStep{Name: name, Template: name, Arguments: args(param("tag", fmt.Sprintf("v%d", i), nil))})
	}
	items := make([]wfv1.Item, 5000)
	for i := range items {
		items[i] = wfv1.Item{Value: []byte(fmt.Sprintf(`"v%d"`, i))}
	}
	calls = append(calls, wfv1.WorkflowStep{Name: "fan", Template: "step-1", WithItems: items, Arguments: args(param("tag", "{{item}}", nil))})
	spec.Templates = append(spec.Templates, wfv1.Template{Name: "main", Steps: steps(calls...)})
	b := DefaultBudget()
	e := newEvaluator(b)
	images, _, err := e.images(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d KB read: %d images, %d KB charged, %d steps", specBytes(spec)>>10, len(images), e.work>>10, e.steps)
	if len(images) < 300 {
		t.Errorf("%d images, want at least 300", len(images))
	}
	if e.work > b.MaxWork/2 || e.steps > b.MaxSteps/2 {
		t.Errorf("it took %d bytes and %d steps of a budget of %d and %d, want less than half", e.work, e.steps, b.MaxWork, b.MaxSteps)
	}
}
