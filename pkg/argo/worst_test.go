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

// flattening is templates whose image is as many {{=item}} as fit: Argo
// looks for item in the whole expression environment flattened, sprig's
// functions included, for each.
func flattening(templates int) *wfv1.WorkflowSpec {
	spec := &wfv1.WorkflowSpec{}
	image := strings.Repeat("{{=item}}", DefaultBudget().MaxValueBytes/len("{{=item}}"))
	for i := 0; i < templates; i++ {
		spec.Templates = append(spec.Templates, wfv1.Template{Name: fmt.Sprintf("t%d", i), Container: ctr(image)})
	}
	return spec
}

// heldScopes is a chain of templates, each calling the next from fan
// steps and passing it inputs values of MaxValueBytes each: every way of
// calling a template holds its inputs' values, which the budget must count
// before they are made.
func heldScopes(templates, fan, inputCount int) *wfv1.WorkflowSpec {
	long := strings.Repeat("v", DefaultBudget().MaxValueBytes)
	spec := &wfv1.WorkflowSpec{Entrypoint: "t0"}
	var ins, pass []wfv1.Parameter
	for p := 0; p < inputCount; p++ {
		name := fmt.Sprintf("i%d", p)
		ins = append(ins, param(name, nil, nil))
		pass = append(pass, param(name, long, nil))
	}
	for i := 0; i < templates; i++ {
		t := wfv1.Template{Name: fmt.Sprintf("t%d", i), Inputs: inputs(ins...)}
		if i+1 < templates {
			var calls []wfv1.WorkflowStep
			for f := 0; f < fan; f++ {
				calls = append(calls, wfv1.WorkflowStep{Name: fmt.Sprintf("s%d", f), Template: fmt.Sprintf("t%d", i+1), Arguments: args(pass...)})
			}
			t.Steps = steps(calls...)
		} else {
			t.Container = ctr("alpine")
		}
		spec.Templates = append(spec.Templates, t)
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
// templateDefaults, each with an image: every template inherits every
// sidecar. image is a format for the sidecar's number; the templates have
// an input v, so it may name {{inputs.parameters.v}}. The audit's 276 KB
// object is manyDefaults(2000, 2000, "img%d").
func manyDefaults(templates, defaults int, image string) *wfv1.WorkflowSpec {
	spec := &wfv1.WorkflowSpec{TemplateDefaults: &wfv1.Template{}}
	for d := 0; d < defaults; d++ {
		spec.TemplateDefaults.Sidecars = append(spec.TemplateDefaults.Sidecars, user(fmt.Sprintf("s%d", d), fmt.Sprintf(image, d)))
	}
	for i := 0; i < templates; i++ {
		spec.Templates = append(spec.Templates, wfv1.Template{Name: fmt.Sprintf("t%d", i),
			Inputs: inputs(param("v", nil, "1")), Container: ctr("alpine")})
	}
	return spec
}

// loopAtTheCap is a template calling another from a withItems list of n
// items, each a map of keys whose values are as long as are read.
func loopAtTheCap(n, keys int) *wfv1.WorkflowSpec {
	long := strings.Repeat("v", DefaultBudget().MaxValueBytes)
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
		{Name: "main", Steps: steps(wfv1.WorkflowStep{Name: "s", Template: "r", WithItems: items,
			Arguments: args(param("i", "{{item.k0}}", nil))})},
		{Name: "r", Inputs: inputs(param("i", nil, nil)), Container: ctr("{{inputs.parameters.i}}")},
	}}
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
