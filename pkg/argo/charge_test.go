package argo

import (
	"strings"
	"testing"
)

// Every substitution is charged at least what it allocates: the charges
// are computed before Argo runs, from the string and the parameters it
// names, so this is what makes the budget a bound. The strings are the
// worst of their kind at MaxValueBytes.
func TestChargesCoverWhatReplaceAllocates(t *testing.T) {
	max := DefaultBudget().MaxValueBytes
	long := strings.Repeat("v", max)
	fill := func(unit string) string { return strings.Repeat(unit, max/len(unit)) }
	runTime := "item + retries + lastRetry.exitCode + lastRetry.status + lastRetry.duration + lastRetry.message + workflow.status + workflow.failures"
	for _, tc := range []struct {
		name  string
		image string
	}{
		{"one expression", "{{=workflow.parameters.a}}"},
		{"expressions naming one long value", fill("{{=workflow.parameters.a}}")},
		{"expressions naming distinct long values", func() string {
			var b strings.Builder
			for i := 0; b.Len() < max-30; i++ {
				b.WriteString("{{=workflow.parameters.p" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "}}")
			}
			return b.String()
		}()},
		{"a long value added to itself", "{{=" + strings.TrimSuffix(fill("item+"), "+") + "}}"},
		{"an item, looked for in the flattened environment", fill("{{=item}}")},
		{"every run-time variable", "{{=" + runTime + "}}"},
		{"run-time names in a long literal", "{{='" + fill("item retries workflow.status ")[:max-20] + "' + item}}"},
		{"parentheses, as many as are evaluated", "{{=" + strings.Repeat("(", 2*DefaultBudget().MaxExpressionNodes-1) + "item" + strings.Repeat(")", 2*DefaultBudget().MaxExpressionNodes-1) + "}}"},
		{"many simple tags", fill("{{workflow.parameters.a}}")},
		{"simple tags of values that escape", fill("{{workflow.parameters.esc}}")},
		{"nested tags", fill("{{x{{workflow.parameters.a}}")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEvaluator(Budget{MaxWork: 1 << 30})
			sc := e.layer(nil)
			esc := strings.Repeat("\u2028\x80\"", max/6)
			sc.declare(e, "workflow.parameters.a", &long, "")
			sc.declare(e, "workflow.parameters.esc", &esc, "")
			for i := 0; i < 26*26; i++ {
				sc.declare(e, "workflow.parameters.p"+string(rune('a'+i%26))+string(rune('a'+i/26)), &long, "")
			}
			items := e.layer(sc)
			items.declare(e, "item", &long, "")
			_, _ = e.replace(items, tc.image) // Argo's caches warmed
			before := e.work
			bytes := allocated(func() { _, _ = e.replace(items, tc.image) })
			charged := e.work - before
			t.Logf("%d-byte image: allocated %d bytes, charged %d", len(tc.image), bytes, charged)
			if int(bytes) > charged && !raceEnabled {
				t.Errorf("substituting it allocated %d bytes, more than the %d charged", bytes, charged)
			}
		})
	}
}
