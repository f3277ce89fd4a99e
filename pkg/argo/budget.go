package argo

import (
	"fmt"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// Budget bounds the work of reading one spec, so that no object, however
// written, costs more than a known amount of time and memory. Every figure
// is per object.
type Budget struct {
	// MaxValueBytes is the longest string a placeholder may resolve to, and
	// the longest parameter value, item or image field that is read at all.
	// No image reference is longer than about 520 bytes (a 255-byte name, a
	// 128-byte tag and a digest); a longer value is refused, not resolved.
	MaxValueBytes int
	// MaxRounds is how deep parameter values may refer to other parameters;
	// it also ends a loop of parameters that refer to each other.
	MaxRounds int
	// MaxScopes is how many ways of calling one template (call sites x the
	// caller's own ways x withItems items) are followed; the others are
	// reported.
	MaxScopes int
	// MaxSteps bounds the walk of the spec: templates visited, call sites
	// followed, withItems items and images read. Calls that form cycles
	// can make the walk exponential; the budget ends it.
	MaxSteps int
	// MaxWork bounds, in bytes, what reading the spec allocates: each
	// parameter a scope holds (key, value and the map entry), each
	// substitution (the string, every value it uses, its output), each
	// expression's evaluation (Argo's environment of the parameters it
	// names, its parsing and compiling), each image parsed, each step.
	// Every cost is charged before it is paid, at least what it allocates
	// (TestChargesCoverWhatReplaceAllocates), so memory held and allocated
	// while reading one object stay within MaxWork plus a part linear in
	// the object's size (TestWorstInputsAtTheLimits).
	MaxWork int
	// MaxExpressionBytes and MaxExpressionNodes bound a {{=expression}}
	// that is evaluated. Only a subset of the expression language is
	// evaluated (see safeExpression); others are skipped as known only when
	// the workflow runs.
	MaxExpressionBytes int
	MaxExpressionNodes int
}

// DefaultBudget is what the daemon and the plugin use: far above any
// workflow written by hand (a 300-template workflow with expressions,
// templateDefaults and 5,000 withItems takes under half of it), and small
// enough that a node's daemon reads a hostile object in tens of
// milliseconds, allocating at most 16 MiB plus 4 bytes per byte of the
// object (the worst inputs peak at under 8 MiB of heap).
func DefaultBudget() Budget {
	return Budget{
		MaxValueBytes:      1024,
		MaxRounds:          8,
		MaxScopes:          64,
		MaxSteps:           20_000,
		MaxWork:            16 << 20,
		MaxExpressionBytes: 1024,
		MaxExpressionNodes: 64,
	}
}

// TooComplexError says that a spec needs more than its Budget. None of its
// images is read: a part would depend on the order of the walk.
type TooComplexError struct {
	// What names the limit that was reached.
	What string
	// Limit is its value.
	Limit int
}

func (e *TooComplexError) Error() string {
	return fmt.Sprintf("the workflow spec is too complex to read: it needs more than %d %s; none of its images is cached (simplify its calls and parameters, or list its images in a ConfigMap)", e.Limit, e.What)
}

// evaluator carries the budget through one read of a spec.
type evaluator struct {
	b           Budget
	steps, work int
	// own memoizes each template's own scope.
	own map[*wfv1.Template]*scope
	// parsed memoizes why each resolved image is not a valid reference,
	// "" for one that is.
	parsed map[string]string
}

func newEvaluator(b Budget) *evaluator {
	d := DefaultBudget()
	// A zero field takes the default, so Budget{} is the default budget.
	for _, f := range []struct {
		v   *int
		def int
	}{
		{&b.MaxValueBytes, d.MaxValueBytes}, {&b.MaxRounds, d.MaxRounds}, {&b.MaxScopes, d.MaxScopes},
		{&b.MaxSteps, d.MaxSteps}, {&b.MaxWork, d.MaxWork},
		{&b.MaxExpressionBytes, d.MaxExpressionBytes}, {&b.MaxExpressionNodes, d.MaxExpressionNodes},
	} {
		if *f.v <= 0 {
			*f.v = f.def
		}
	}
	return &evaluator{b: b, own: map[*wfv1.Template]*scope{}, parsed: map[string]string{}}
}

// step spends one step of the walk, and the bytes a step allocates.
func (e *evaluator) step() {
	e.steps++
	if e.steps > e.b.MaxSteps {
		panic(&TooComplexError{What: "steps (templates visited, calls followed, items and images read)", Limit: e.b.MaxSteps})
	}
	e.spend(stepBytes)
}

// stepBytes is what one step allocates besides what it charges itself, at
// most: a slot in a list of images or scopes, a name for a field.
const stepBytes = 128

// spend charges n bytes, before they are allocated: a parameter held, a
// substitution, an expression's evaluation.
func (e *evaluator) spend(n int) {
	e.work += n
	if e.work > e.b.MaxWork {
		panic(&TooComplexError{What: "bytes of work (parameters held, substitutions and expressions evaluated)", Limit: e.b.MaxWork})
	}
}

// recover turns a budget panic into *err. The walk is deeply recursive;
// unwinding it at once is simpler and cheaper than an error at every level.
// Any other panic is not ours and goes on.
func (e *evaluator) recover(err *error) {
	r := recover()
	if r == nil {
		return
	}
	tc, ok := r.(*TooComplexError)
	if !ok {
		panic(r)
	}
	*err = tc
}
