package argo

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	jsonutil "github.com/argoproj/argo-workflows/v3/util/json"
	"github.com/argoproj/argo-workflows/v3/util/template"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
)

// scope is what the placeholders of one template resolve from: expression
// ("inputs.parameters.x") to value, nil for a declared parameter whose value
// is not known before the workflow runs.
type scope struct {
	params map[string]*string
	// late says, for a parameter without value here, why it has none
	// (passed by the caller only at run time, too long to be read...).
	late map[string]string
	// defaults marks the scope of templateDefaults itself, which has no
	// inputs of its own.
	defaults bool
	// via names the call this scope is for, appended to a skip's reason.
	via string
	// known is params without the unknown ones, as Argo's substitution
	// takes them; made on first use.
	known map[string]string
}

func (e *evaluator) newScope() *scope { return &scope{params: map[string]*string{}} }

// clone copies sc's parameters, at a cost to the budget: copies are what
// many ways of calling many templates multiply.
func (sc *scope) clone(e *evaluator) *scope {
	e.spend(len(sc.params) + len(sc.late))
	return &scope{params: maps.Clone(sc.params), late: maps.Clone(sc.late), defaults: sc.defaults}
}

// with returns sc with vars (a loop iteration's items) added.
func (sc *scope) with(e *evaluator, vars map[string]*string) *scope {
	if len(vars) == 0 {
		return sc
	}
	c := sc.clone(e)
	e.spend(len(vars))
	maps.Copy(c.params, vars)
	return c
}

// unknown declares key without a value, for reason.
func (sc *scope) unknown(key, reason string) {
	sc.params[key] = nil
	if sc.late == nil {
		sc.late = map[string]string{}
	}
	sc.late[key] = reason
}

// knownValues returns the parameters with a value, for Argo's substitution.
func (sc *scope) knownValues(e *evaluator) map[string]string {
	if sc.known == nil {
		e.spend(len(sc.params))
		sc.known = make(map[string]string, len(sc.params))
		for k, v := range sc.params {
			if v != nil {
				sc.known[k] = *v
			}
		}
	}
	return sc.known
}

// bounded returns v, or nil when it is too long to be read.
func (e *evaluator) bounded(v string) *string {
	if len(v) > e.b.MaxValueBytes {
		return nil
	}
	return &v
}

// addParams adds each parameter as prefix+name: its value, else its
// default, else unknown (declared, but only known at run time).
func (e *evaluator) addParams(sc *scope, prefix string, params []wfv1.Parameter) {
	e.spend(len(params))
	for _, p := range params {
		var v *wfv1.AnyString
		switch {
		case p.Value != nil:
			v = p.Value
		case p.Default != nil:
			v = p.Default
		}
		key := prefix + p.Name
		if v == nil {
			sc.params[key] = nil
			continue
		}
		if s := e.bounded(v.String()); s != nil {
			sc.params[key] = s
			continue
		}
		sc.unknown(key, fmt.Sprintf("the value of %s is %d bytes long, longer than any image reference (at most %d are read)",
			key, len(v.String()), e.b.MaxValueBytes))
	}
}

// ownScope is what a template's placeholders resolve from when no caller in
// the spec passes its inputs: the workflow parameters and its inputs' own
// values and defaults.
func (e *evaluator) ownScope(global *scope, t *wfv1.Template) *scope {
	sc := global.clone(e)
	if t != nil {
		e.addParams(sc, "inputs.parameters.", t.Inputs.Parameters)
	}
	return sc
}

// resolve replaces every placeholder of s in sc, as Argo would, or says
// why it cannot. A value may hold placeholders in turn, up to the budget's
// MaxRounds deep.
func (e *evaluator) resolve(sc *scope, s string) (string, error) {
	if len(s) > e.b.MaxValueBytes {
		return "", fmt.Errorf("it is %d bytes long, longer than any image reference (at most %d are read)", len(s), e.b.MaxValueBytes)
	}
	for round := 0; len(tags(s)) > 0; round++ {
		if round == e.b.MaxRounds {
			return "", fmt.Errorf("its parameters refer to each other in a loop, or more than %d deep", e.b.MaxRounds)
		}
		next, err := e.replace(sc, s)
		if err != nil {
			return "", err
		}
		if next == s {
			break
		}
		if len(next) > e.b.MaxValueBytes {
			return "", fmt.Errorf("it resolves to more than %d bytes, longer than any image reference", e.b.MaxValueBytes)
		}
		s = next
	}
	if left := tags(s); len(left) > 0 {
		expr := strings.TrimSpace(left[0])
		v, declared := sc.params[expr]
		if v != nil {
			// Argo substitutes into the template's JSON, where a tab or a
			// line break is an escape that its blank-trimming keeps.
			return "", fmt.Errorf("{{%s}} has a value, but Argo does not substitute it as written: remove the tabs or line breaks inside the braces", imageref.Shorten(expr))
		}
		return "", errors.New(sc.why(expr, declared))
	}
	return s, nil
}

// replace is one pass of Argo's substitution over s. Argo substitutes into
// the JSON of a template, so s goes in as a JSON string and comes out as
// one. Expressions are checked first: only those within the subset that
// safeExpression allows reach Argo's evaluator.
func (e *evaluator) replace(sc *scope, s string) (string, error) {
	quoted, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	expressions := false
	for _, tag := range tags(string(quoted)) {
		src, isExpr := strings.CutPrefix(tag, "=")
		if !isExpr {
			continue
		}
		expressions = true
		// As Argo reads it: JSON escapes undone.
		var unescaped string
		if err := json.Unmarshal([]byte(`"`+jsonutil.Fix(src)+`"`), &unescaped); err == nil {
			src = unescaped
		}
		if err := e.safeExpression(src); err != nil {
			return "", fmt.Errorf("{{=%s}} is not evaluated before the workflow runs: %w", imageref.Shorten(src), err)
		}
	}
	known := sc.knownValues(e)
	if expressions {
		e.spend(len(known)) // Argo builds the expression's environment from them
	}
	out, err := template.Replace(string(quoted), known, true)
	e.spend(len(quoted) + len(out))
	if err != nil {
		return "", fmt.Errorf("substituting its placeholders: %w", err)
	}
	var next string
	if err := json.Unmarshal([]byte(out), &next); err != nil {
		return "", fmt.Errorf("substituting its placeholders: %w", err)
	}
	return next, nil
}

// tags returns what stands between each "{{" and the next "}}", the way
// Argo's template engine reads it.
func tags(s string) []string {
	var out []string
	for {
		open := strings.Index(s, "{{")
		if open < 0 {
			return out
		}
		s = s[open+2:]
		end := strings.Index(s, "}}")
		if end < 0 {
			return out
		}
		out = append(out, s[:end])
		s = s[end+2:]
	}
}

// The subset of the expression language that is evaluated: literals,
// parameters, comparisons, logic, arithmetic, string concatenation and
// tests, the ternary and ?? operators, and a few string functions. Nothing
// that loops, builds collections or calls into sprig, whose functions (repeat,
// until, ...) take memory or time in proportion to an argument.
var (
	safeUnary  = map[string]bool{"!": true, "not": true, "-": true, "+": true}
	safeBinary = map[string]bool{
		"==": true, "!=": true, "<": true, ">": true, "<=": true, ">=": true,
		"&&": true, "||": true, "and": true, "or": true, "??": true,
		"+": true, "-": true, "*": true, "/": true, "%": true,
		"in": true, "not in": true, "contains": true, "startsWith": true, "endsWith": true,
	}
	safeCalls = map[string]bool{
		"lower": true, "upper": true, "trim": true, "trimPrefix": true, "trimSuffix": true,
		"string": true, "int": true, "float": true, "asInt": true, "asFloat": true,
	}
	// unsafeNames are environment entries outside the subset.
	unsafeNames = map[string]bool{"sprig": true, "jsonpath": true, "toJson": true}
)

// safeExpression checks that src stays within the subset above and the
// budget's size limits, so that evaluating it takes time and memory linear
// in its size. An expression that does not parse is left to Argo, which
// leaves it unresolved.
func (e *evaluator) safeExpression(src string) error {
	if len(src) > e.b.MaxExpressionBytes {
		return fmt.Errorf("it is %d bytes long (at most %d are evaluated)", len(src), e.b.MaxExpressionBytes)
	}
	e.spend(len(src))
	tree, err := parser.Parse(src)
	if err != nil {
		return nil
	}
	c := &exprCheck{max: e.b.MaxExpressionNodes}
	ast.Walk(&tree.Node, c)
	return c.err
}

// exprCheck visits an expression's syntax tree and keeps the first reason
// it is outside the subset.
type exprCheck struct {
	nodes, max int
	err        error
}

func (c *exprCheck) Visit(node *ast.Node) {
	if c.err != nil {
		return
	}
	c.nodes++
	if c.nodes > c.max {
		c.err = fmt.Errorf("it has more than %d terms", c.max)
		return
	}
	switch n := (*node).(type) {
	case *ast.NilNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.StringNode,
		*ast.ConstantNode, *ast.ConditionalNode, *ast.ChainNode, *ast.MemberNode:
	case *ast.IdentifierNode:
		if unsafeNames[n.Value] {
			c.err = fmt.Errorf("it uses %s", n.Value)
		}
	case *ast.UnaryNode:
		if !safeUnary[n.Operator] {
			c.err = fmt.Errorf("it uses the operator %s", n.Operator)
		}
	case *ast.BinaryNode:
		if !safeBinary[n.Operator] {
			c.err = fmt.Errorf("it uses the operator %s", n.Operator)
		}
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || !safeCalls[id.Value] {
			c.err = errors.New("it calls a function outside lower, upper, trim, trimPrefix, trimSuffix, string, int and float")
		}
	case *ast.BuiltinNode:
		if !safeCalls[n.Name] {
			c.err = fmt.Errorf("it calls %s", n.Name)
		}
	default:
		c.err = fmt.Errorf("it uses %T, outside the subset evaluated here", n)
	}
}

// why says, for a user, why {{expr}} has no value before the workflow runs.
func (sc *scope) why(expr string, declared bool) string {
	if reason := sc.late[expr]; reason != "" {
		return reason
	}
	q := "{{" + imageref.Shorten(expr) + "}}"
	switch {
	case strings.HasPrefix(expr, "="):
		return fmt.Sprintf("%s is an expression over values known only when the workflow runs", q)
	case expr == "item" || strings.HasPrefix(expr, "item."):
		return fmt.Sprintf("%s is a loop item (withItems, withParam, withSequence), known only when the workflow runs", q)
	case strings.HasPrefix(expr, "steps.") || strings.HasPrefix(expr, "tasks."):
		return fmt.Sprintf("%s is the output of another step, known only when the workflow runs", q)
	case strings.HasPrefix(expr, "inputs.parameters."):
		name := imageref.Shorten(strings.TrimPrefix(expr, "inputs.parameters."))
		switch {
		case sc.defaults:
			return fmt.Sprintf("templateDefaults has no inputs; %s there is resolved in each template that inherits the image, and none does", q)
		case declared:
			return fmt.Sprintf("input parameter %q has neither a value nor a default; its value comes from the caller when the workflow runs", name)
		}
		return fmt.Sprintf("the template has no input parameter %q", name)
	case strings.HasPrefix(expr, "workflow.parameters."):
		name := imageref.Shorten(strings.TrimPrefix(expr, "workflow.parameters."))
		if declared {
			return fmt.Sprintf("workflow parameter %q has neither a value nor a default in spec.arguments; its value is given when the workflow is submitted", name)
		}
		return fmt.Sprintf("spec.arguments has no parameter %q", name)
	}
	return fmt.Sprintf("%s is known only when the workflow runs", q)
}
