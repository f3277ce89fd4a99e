package argo

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// The worst inputs of issue 16, built at a given size so that tests can
// place them just under and just over a limit, and the benchmark can print
// what each costs at the sizes the audit used.

// nestedCalls is many workflow parameters and a chain of templates, each
// calling the next from fan steps: from the third link on, every template
// runs in MaxScopes ways, and each way is a scope that sees every workflow
// parameter. The audit's 250 KB object is about nestedCalls(4000, 100, 8).
func nestedCalls(params, templates, fan int) *wfv1.WorkflowSpec {
	spec := &wfv1.WorkflowSpec{Entrypoint: "t0"}
	for p := 0; p < params; p++ {
		spec.Arguments.Parameters = append(spec.Arguments.Parameters, param(fmt.Sprintf("p%04d", p), "v", nil))
	}
	spec.Arguments.Parameters = append(spec.Arguments.Parameters, param("x", "alpine", nil))
	for i := 0; i < templates; i++ {
		t := wfv1.Template{Name: fmt.Sprintf("t%d", i), Inputs: inputs(param("x", nil, nil))}
		if i+1 < templates {
			var calls []wfv1.WorkflowStep
			for f := 0; f < fan; f++ {
				calls = append(calls, wfv1.WorkflowStep{Name: fmt.Sprintf("s%d", f), Template: fmt.Sprintf("t%d", i+1),
					Arguments: args(param("x", "{{inputs.parameters.x}}", nil))})
			}
			t.Steps = steps(calls...)
		} else {
			t.Container = ctr("{{inputs.parameters.x}}")
		}
		spec.Templates = append(spec.Templates, t)
	}
	return spec
}

// expressions is many workflow parameters and templates whose image is as
// many {{=...}} as fit in an image, each naming one parameter: Argo builds
// the expression's environment for each. The audit's 58 KB object is
// about expressions(1000, 30).
func expressions(params, templates int) *wfv1.WorkflowSpec {
	spec := &wfv1.WorkflowSpec{}
	for p := 0; p < params; p++ {
		spec.Arguments.Parameters = append(spec.Arguments.Parameters, param(fmt.Sprintf("p%d", p), "v", nil))
	}
	image := strings.Repeat("{{=workflow.parameters.p1}}", DefaultBudget().MaxValueBytes/len("{{=workflow.parameters.p1}}"))
	for i := 0; i < templates; i++ {
		spec.Templates = append(spec.Templates, wfv1.Template{Name: fmt.Sprintf("t%d", i), Container: ctr(image)})
	}
	return spec
}

// stringifyWorkflow names the whole environment twenty times:
// string(workflow) is every workflow parameter in one string.
func stringifyWorkflow(params int) *wfv1.WorkflowSpec {
	spec := &wfv1.WorkflowSpec{}
	for p := 0; p < params; p++ {
		spec.Arguments.Parameters = append(spec.Arguments.Parameters, param(fmt.Sprintf("p%d", p), strings.Repeat("v", 1000), nil))
	}
	spec.Templates = []wfv1.Template{{Name: "t", Container: ctr(strings.Repeat("{{=string(workflow)}}", 20))}}
	return spec
}

// manyDefaults is templates container templates and as many sidecars in
// templateDefaults, each with a literal image: every template inherits
// every sidecar. The audit's 276 KB object is manyDefaults(2000, 2000).
func manyDefaults(templates, defaults int) *wfv1.WorkflowSpec {
	spec := &wfv1.WorkflowSpec{TemplateDefaults: &wfv1.Template{}}
	for d := 0; d < defaults; d++ {
		spec.TemplateDefaults.Sidecars = append(spec.TemplateDefaults.Sidecars, user(fmt.Sprintf("s%d", d), fmt.Sprintf("img%d", d)))
	}
	for i := 0; i < templates; i++ {
		spec.Templates = append(spec.Templates, wfv1.Template{Name: fmt.Sprintf("t%d", i), Container: ctr("alpine")})
	}
	return spec
}

// specBytes is the size of spec as the API server would store it.
func specBytes(spec *wfv1.WorkflowSpec) int {
	raw, err := json.Marshal(spec)
	if err != nil {
		panic(err)
	}
	return len(raw)
}

// cost is what one read of a spec costs: bytes allocated in all, and the
// highest the heap rose above where it started.
type cost struct{ allocated, peak uint64 }

// measure runs f once and returns its cost. The peak is sampled every
// 100µs, so it is a lower bound of the true peak, close at these sizes.
func measure(f func()) cost {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	heap := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	var before, after runtime.MemStats
	base := heap()
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Microsecond)
		defer tick.Stop()
		for {
			peak = max(peak, heap())
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	close(done)
	wg.Wait()
	peak = max(peak, heap())
	return cost{allocated: after.TotalAlloc - before.TotalAlloc, peak: peak - min(peak, base)}
}
