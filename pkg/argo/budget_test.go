package argo

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"github.com/dcherman/image-cache-daemon/pkg/argo/argotest"
)

// allocated returns the bytes f allocates: a bound a test can assert on
// without timing anything.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// chain is n templates where each calls the next from fanout steps, passing
// arg; the last runs image.
func chain(n, fanout int, arg, image string, cycle bool) *wfv1.WorkflowSpec {
	spec := &wfv1.WorkflowSpec{Entrypoint: "t0", Arguments: args(param("x", "alpine", nil))}
	for i := 0; i < n; i++ {
		t := wfv1.Template{Name: fmt.Sprintf("t%d", i), Inputs: inputs(param("x", nil, nil))}
		next := i + 1
		if next == n && cycle {
			next = 0
		}
		if next < n {
			var calls []wfv1.WorkflowStep
			for f := 0; f < fanout; f++ {
				calls = append(calls, wfv1.WorkflowStep{Name: fmt.Sprintf("s%d", f), Template: fmt.Sprintf("t%d", next),
					Arguments: args(param("x", arg, nil))})
			}
			t.Steps = steps(calls...)
		} else {
			t.Container = ctr(image)
		}
		spec.Templates = append(spec.Templates, t)
	}
	if cycle {
		spec.Templates[n-1].Container = ctr(image)
	}
	return spec
}

// Hostile specs found by a platform team finish within the budget: they
// are read or refused as too complex, with memory bounded whatever they
// would expand to.
func TestHostileSpecsStayWithinTheBudget(t *testing.T) {
	selfRef := "{{workflow.parameters.a}}{{workflow.parameters.a}}{{workflow.parameters.a}}{{workflow.parameters.a}}{{workflow.parameters.a}}{{workflow.parameters.a}}{{workflow.parameters.a}}"
	for _, tc := range []struct {
		name        string
		spec        *wfv1.WorkflowSpec
		tooComplex  bool
		want        []string
		skippedSays string
	}{
		{name: "a parameter that names itself 7 times (175 bytes, hundreds of MiB if expanded)",
			spec: &wfv1.WorkflowSpec{Arguments: args(param("a", nil, selfRef)),
				Templates: []wfv1.Template{{Name: "t", Container: ctr("{{workflow.parameters.a}}")}, {Name: "good", Container: ctr("alpine")}}},
			want: []string{hub("alpine")}, skippedSays: "bytes"},
		{name: "arguments doubled down a chain of 22 templates (a 2 MiB image if expanded)",
			spec:        chain(22, 1, "{{inputs.parameters.x}}{{inputs.parameters.x}}", "{{inputs.parameters.x}}", false),
			skippedSays: "bytes"},
		{name: "a 24-template cycle, each calling the next from two steps (exponential if walked)",
			spec: chain(24, 2, "{{inputs.parameters.x}}", "{{inputs.parameters.x}}", true), tooComplex: true},
		{name: "a long chain called from two steps each: 2^40 ways, capped",
			spec: chain(40, 2, "{{inputs.parameters.x}}", "{{inputs.parameters.x}}", false),
			want: []string{hub("alpine")}, skippedSays: "called in more than 64 ways"},
		{name: "a 1 MiB image literal", spec: &wfv1.WorkflowSpec{Templates: []wfv1.Template{
			{Name: "t", Container: ctr(strings.Repeat("a", 1<<20))}}}, skippedSays: "longer than any image reference"},
		{name: "a 1 MiB parameter placed 200 times", spec: &wfv1.WorkflowSpec{
			Arguments: args(param("big", strings.Repeat("b", 1<<20), nil)),
			Templates: []wfv1.Template{{Name: "t", Container: ctr(strings.Repeat("{{workflow.parameters.big}}", 37))}}},
			skippedSays: "bytes long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var images []string
			var skipped []Skipped
			var err error
			bytes := allocated(func() { images, skipped, err = Images(tc.spec, DefaultBudget()) })
			if bytes > 64<<20 {
				t.Errorf("reading it allocated %d MiB, want a bounded amount (< 64 MiB)", bytes>>20)
			}
			var tc2 *TooComplexError
			if tc.tooComplex {
				if !errors.As(err, &tc2) {
					t.Fatalf("err = %v, want *TooComplexError", err)
				}
				if images != nil || skipped != nil {
					t.Errorf("a spec too complex to read still gave images %q, skipped %v", images, skipped)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if strings.Join(images, ",") != strings.Join(tc.want, ",") {
				t.Errorf("images = %q, want %q", images, tc.want)
			}
			found := false
			for _, s := range skipped {
				found = found || strings.Contains(s.Reason, tc.skippedSays)
				if len(s.String()) > 2048 {
					t.Errorf("a skip reads %d bytes; values must be quoted short", len(s.String()))
				}
			}
			if !found {
				t.Errorf("no skip says %q: %v", tc.skippedSays, skipped)
			}
		})
	}
}

// Expressions are Argo's: evaluated when their values are known, within a
// subset that cannot take time or memory out of proportion to its size.
func TestExpressions(t *testing.T) {
	for _, tc := range []struct {
		image, want, says string
	}{
		{image: "{{=inputs.parameters.env == 'prod' ? 'nginx:1.27' : 'nginx:latest'}}", want: hub("nginx:1.27")},
		{image: "{{=lower(inputs.parameters.name)}}:{{=inputs.parameters.env}}", want: hub("app:prod")},
		{image: "{{=workflow.parameters.registry + '/tool:v1'}}", want: "ghcr.io/org/tool:v1"},
		{image: "{{=sprig.repeat(2000000000, 'a')}}", says: "not evaluated before the workflow runs: it uses sprig"},
		{image: "{{=toJson(1..100000000)}}", says: "not evaluated"},
		{image: "{{=map(1..1000000, {# * 2})}}", says: "not evaluated"},
		{image: "{{=inputs.parameters.unknown}}", says: "expression over values known only when the workflow runs"},
		{image: "{{=" + strings.Repeat("a+", 600) + "a}}", says: "bytes long"},
	} {
		t.Run(tc.image[:min(len(tc.image), 40)], func(t *testing.T) {
			spec := &wfv1.WorkflowSpec{
				Arguments: args(param("registry", "ghcr.io/org", nil)),
				Templates: []wfv1.Template{{Name: "t", Inputs: inputs(param("env", nil, "prod"), param("name", nil, "APP")), Container: ctr(tc.image)}},
			}
			var images []string
			var skipped []Skipped
			bytes := allocated(func() { images, skipped = imagesOf(t, spec) })
			if bytes > 64<<20 {
				t.Errorf("allocated %d MiB", bytes>>20)
			}
			if tc.want != "" {
				if len(images) != 1 || images[0] != tc.want || len(skipped) != 0 {
					t.Fatalf("images %q, skipped %v; want %s", images, skipped, tc.want)
				}
				return
			}
			if len(images) != 0 || len(skipped) != 1 || !strings.Contains(skipped[0].Reason, tc.says) {
				t.Fatalf("images %q, skipped %v; want one skip saying %q", images, skipped, tc.says)
			}
		})
	}
}

func imagesOf(t *testing.T, spec *wfv1.WorkflowSpec) ([]string, []Skipped) {
	t.Helper()
	return readSpec(t, spec)
}

// A zero Budget is the default one, so callers can leave it out.
func TestZeroBudgetIsTheDefault(t *testing.T) {
	if e := newEvaluator(Budget{}); e.b != DefaultBudget() {
		t.Fatalf("zero budget became %+v", e.b)
	}
}

// argotest builds its worst inputs at the default budget's value limit.
func TestArgotestValueBytes(t *testing.T) {
	if argotest.ValueBytes != DefaultBudget().MaxValueBytes {
		t.Fatalf("argotest.ValueBytes = %d, DefaultBudget().MaxValueBytes = %d", argotest.ValueBytes, DefaultBudget().MaxValueBytes)
	}
}
