package argo

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	jsonutil "github.com/argoproj/argo-workflows/v3/util/json"
	"github.com/argoproj/argo-workflows/v3/util/template"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/parser/lexer"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
)

// scope is what the placeholders of one template resolve from: expression
// ("inputs.parameters.x") to value, nil for a declared parameter whose value
// is not known before the workflow runs.
//
// A scope is a layer over its parent (template inputs over the workflow's
// parameters, a caller's arguments over the inputs' defaults, a loop item
// over the caller's scope), so that making one costs only what it adds,
// never a copy of what it sees. Layers are at most four deep.
type scope struct {
	parent *scope
	params map[string]*string
	// late says, for a parameter without value here, why it has none
	// (passed by the caller only at run time, too long to be read...).
	late map[string]string
	// maps holds every proper dotted prefix of this layer's keys
	// ("inputs", "inputs.parameters"): the names that Argo's expression
	// environment holds as maps of parameters, not as values.
	maps map[string]bool
	// defaults marks the scope of templateDefaults itself, which has no
	// inputs of its own.
	defaults bool
	// via names the call this scope is for, appended to a skip's reason.
	via string
}

// What a scope costs the budget, in bytes, beyond the bytes of its keys and
// values: a map entry (its slot, a string header, a pointer, the map's
// growth) and a layer (the struct, its map and the map's first group of
// slots). Both are above what Go allocates, so that the budget bounds the
// memory held.
const (
	entryBytes = 64
	layerBytes = 512
)

// layer returns an empty scope over parent, charged before it is made.
func (e *evaluator) layer(parent *scope) *scope {
	e.spend(layerBytes)
	return &scope{parent: parent, params: map[string]*string{}}
}

// lookup returns the value of key in sc, and whether some layer declares it.
func (sc *scope) lookup(key string) (v *string, declared bool) {
	for l := sc; l != nil; l = l.parent {
		if v, ok := l.params[key]; ok {
			return v, true
		}
	}
	return nil, false
}

// lateReason is why the layer that declares key has no value for it, or "".
func (sc *scope) lateReason(key string) string {
	for l := sc; l != nil; l = l.parent {
		if _, ok := l.params[key]; ok {
			return l.late[key]
		}
	}
	return ""
}

// isMap reports whether key names a map of parameters in sc.
func (sc *scope) isMap(key string) bool {
	for l := sc; l != nil; l = l.parent {
		if l.maps[key] {
			return true
		}
	}
	return false
}

// declare adds key to sc with value v (nil for unknown, then reason says
// why, if it can), charged before it is added, and records the maps its
// dotted prefixes form.
func (sc *scope) declare(e *evaluator, key string, v *string, reason string) {
	sc.set(e, key, v, reason)
	for i := strings.IndexByte(key, '.'); i >= 0; {
		prefix := key[:i]
		if !sc.maps[prefix] {
			e.spend(entryBytes + len(prefix))
			if sc.maps == nil {
				sc.maps = map[string]bool{}
			}
			sc.maps[prefix] = true
		}
		next := strings.IndexByte(key[i+1:], '.')
		if next < 0 {
			break
		}
		i += 1 + next
	}
}

// set gives key, already declared by a parent layer, value v in sc (nil
// for unknown, for reason), charged before it is added.
func (sc *scope) set(e *evaluator, key string, v *string, reason string) {
	n := entryBytes + len(key) + len(reason)
	if v != nil {
		n += len(*v)
	}
	e.spend(n)
	sc.params[key] = v
	if reason != "" {
		if sc.late == nil {
			e.spend(layerBytes / 2)
			sc.late = map[string]string{}
		}
		sc.late[key] = reason
	}
}

// bounded returns v, or nil when it is too long to be read.
func (e *evaluator) bounded(v string) *string {
	if len(v) > e.b.MaxValueBytes {
		return nil
	}
	return &v
}

// addParams declares each parameter as prefix+name: its value, else its
// default, else unknown (declared, but only known at run time).
func (e *evaluator) addParams(sc *scope, prefix string, params []wfv1.Parameter) {
	for _, p := range params {
		var v *wfv1.AnyString
		switch {
		case p.Value != nil:
			v = p.Value
		case p.Default != nil:
			v = p.Default
		}
		e.spend(len(prefix) + len(p.Name)) // the key, made below
		key := prefix + p.Name
		if v == nil {
			sc.declare(e, key, nil, "")
			continue
		}
		if s := e.bounded(v.String()); s != nil {
			sc.declare(e, key, s, "")
			continue
		}
		sc.declare(e, key, nil, fmt.Sprintf("the value of %s is %d bytes long, longer than any image reference (at most %d are read)",
			imageref.Shorten(key), len(v.String()), e.b.MaxValueBytes))
	}
}

// ownScope is what a template's placeholders resolve from when no caller in
// the spec passes its inputs: the workflow parameters and its inputs' own
// values and defaults. It is made once per template.
func (e *evaluator) ownScope(global *scope, t *wfv1.Template) *scope {
	if sc, ok := e.own[t]; ok {
		return sc
	}
	sc := e.layer(global)
	if t != nil {
		e.addParams(sc, "inputs.parameters.", t.Inputs.Parameters)
	}
	e.own[t] = sc
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
		v, declared := sc.lookup(expr)
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
// one. Argo's substitution is given only the parameters that s names, so
// that its cost, charged before it runs, is that of what s reads: each
// {{=expression}} builds its environment from every parameter it is given,
// and a whole map of parameters would be a string of any size. Expressions
// are checked first: only those within the subset that safeExpression
// allows reach Argo's evaluator.
func (e *evaluator) replace(sc *scope, s string) (string, error) {
	e.spend(6*len(s) + 2) // JSON escapes a byte in at most 6
	quoted, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	env := map[string]string{}
	// envKeys is what env's entries cost apart from their values, which
	// Argo does not copy; useBytes what the uses of values cost.
	envKeys, useBytes := 0, 0
	var sources []exprSource
	// use puts key in env if it has a value in sc. Each use of a value
	// costs up to useFactor bytes for one: Argo quotes it (at most 4 bytes
	// for one) into a buffer that doubles as it grows, checks the result
	// as JSON, and the result is decoded.
	use := func(key string) {
		v, _ := sc.lookup(key)
		if v == nil {
			return
		}
		useBytes += useFactor * len(*v)
		if _, ok := env[key]; !ok {
			envKeys += entryBytes + len(key)
			env[key] = *v
		}
	}
	for _, tag := range tags(string(quoted)) {
		src, isExpr := strings.CutPrefix(tag, "=")
		if !isExpr {
			use(strings.TrimSpace(tag))
			// Argo also reads the last {{ inside a tag as a tag of its own.
			if i := strings.LastIndex(tag, "{{"); i > 0 {
				use(tag[i+2:])
			}
			continue
		}
		// As Argo reads it: JSON escapes undone.
		var unescaped string
		if err := json.Unmarshal([]byte(`"`+jsonutil.Fix(src)+`"`), &unescaped); err == nil {
			src = unescaped
		}
		reads, tokens, err := e.safeExpression(src)
		sources = append(sources, exprSource{src, tokens})
		if err != nil {
			return "", fmt.Errorf("{{=%s}} is not evaluated before the workflow runs: %w", imageref.Shorten(src), err)
		}
		for _, chain := range reads {
			if sc.isMap(chain) {
				return "", fmt.Errorf("{{=%s}} is not evaluated before the workflow runs: %s is a map of parameters, not one value; name one parameter", imageref.Shorten(src), imageref.Quote(chain))
			}
			// Each dotted prefix too, so that Argo sees a value where
			// the expression reads into one, as it would.
			for i := 0; i < len(chain); i++ {
				if chain[i] == '.' {
					e.spend(len(chain[:i]))
					use(chain[:i])
				}
			}
			e.spend(len(chain))
			use(chain)
		}
	}
	// Argo copies env once, and for each expression expands it into nested
	// maps, looks for run-time variables in it and compiles the expression
	// against it.
	exprBytes := 0
	for _, x := range sources {
		exprBytes += exprCost(x, envKeys)
	}
	e.spend(replaceBase + useFactor*len(quoted) + 2*envKeys + useBytes + exprBytes)
	out, err := template.Replace(string(quoted), env, true)
	if err != nil {
		return "", fmt.Errorf("substituting its placeholders: %w", err)
	}
	var next string
	if err := json.Unmarshal([]byte(out), &next); err != nil {
		return "", fmt.Errorf("substituting its placeholders: %w", err)
	}
	return next, nil
}

// exprSource is an expression and the number of its tokens.
type exprSource struct {
	src    string
	tokens int
}

// exprCost is what Argo allocates to evaluate x with an environment whose
// entries cost envKeys apart from their values (whose uses replace
// charges; TestChargesCoverWhatReplaceAllocates checks both on the worst
// strings of the subset): the environment's functions and the environment
// expanded into nested maps (exprBase and envKeys), parsing and compiling
// the expression (tokenBytes a token), and for each variable known only at
// run time whose name it holds, lexing it again; when one is found, Argo
// looks for it and the next in the whole environment flattened, sprig's
// functions included (flattenBytes).
func exprCost(x exprSource, envKeys int) int {
	n := exprBase + 4*envKeys + tokenBytes*x.tokens
	found := false
	for _, v := range runTimeVariables {
		if strings.Contains(x.src, v) {
			found = true
			n += lexBytes * (x.tokens + len(v))
		}
	}
	if found {
		n += 2 * (flattenBytes + 2*envKeys)
	}
	return n
}

// What Argo's substitution allocates, at most, measured with Argo v3.7:
// for one string (its template parsed, the result checked and decoded), per
// byte of the string or of a value used, and besides the parts of an expression's evaluation
// that grow with the expression and its environment.
const (
	replaceBase  = 2 << 10
	useFactor    = 32
	exprBase     = 16 << 10
	tokenBytes   = 512
	lexBytes     = 64
	flattenBytes = 48 << 10
)

// runTimeVariables are the variables that Argo's expression templates
// leave unresolved when the environment lacks them (util/template's
// variablesToCheck).
var runTimeVariables = []string{"item", "retries", "lastRetry.exitCode", "lastRetry.status", "lastRetry.duration",
	"lastRetry.message", "workflow.status", "workflow.failures"}

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
	// unsafeNames are environment entries outside the subset: $env is the
	// whole environment.
	unsafeNames = map[string]bool{"sprig": true, "jsonpath": true, "toJson": true, "$env": true}
)

// safeExpression checks that src stays within the subset above and the
// budget's size limits, so that evaluating it takes time and memory linear
// in its size, and returns the parameters it reads ("inputs.parameters.x")
// and its number of tokens. An expression that does not parse is left to
// Argo, which leaves it unresolved.
func (e *evaluator) safeExpression(src string) (reads []string, tokens int, err error) {
	if len(src) > e.b.MaxExpressionBytes {
		return nil, 0, fmt.Errorf("it is %d bytes long (at most %d are evaluated)", len(src), e.b.MaxExpressionBytes)
	}
	e.spend(parseBytes * len(src))
	toks, err := lexer.Lex(file.NewSource(src))
	if err != nil {
		return nil, 0, nil
	}
	// Parentheses are tokens, not terms: a term nested in many costs
	// Argo's parser and compiler in proportion to them.
	if max := 4 * e.b.MaxExpressionNodes; len(toks) > max {
		return nil, 0, fmt.Errorf("it has more than %d tokens", max)
	}
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, 0, nil
	}
	c := &exprCheck{max: e.b.MaxExpressionNodes}
	c.walk(tree.Node)
	return c.reads, len(toks), c.err
}

// parseBytes is what lexing and parsing an expression allocates per byte of
// it, at most (a token and a node of under 64 bytes each per byte).
const parseBytes = 128

// exprCheck walks an expression's syntax tree, keeps the first reason it
// is outside the subset and collects the parameters it reads.
type exprCheck struct {
	nodes, max int
	reads      []string
	err        error
}

func (c *exprCheck) walk(node ast.Node) {
	if c.err != nil {
		return
	}
	c.nodes++
	if c.nodes > c.max {
		c.err = fmt.Errorf("it has more than %d terms", c.max)
		return
	}
	switch n := node.(type) {
	case *ast.NilNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.StringNode, *ast.ConstantNode:
	case *ast.IdentifierNode, *ast.MemberNode:
		if chain, ok := chainOf(node); ok {
			if base, _, _ := strings.Cut(chain, "."); unsafeNames[base] {
				c.err = fmt.Errorf("it uses %s", base)
				return
			}
			c.nodes += strings.Count(chain, ".")
			if c.nodes > c.max {
				c.err = fmt.Errorf("it has more than %d terms", c.max)
				return
			}
			c.reads = append(c.reads, chain)
			return
		}
		// An index computed at run time: of a value or of a map, either
		// way of something this subset does not read.
		c.err = errors.New("it indexes with a value computed when it runs")
	case *ast.ChainNode:
		c.walk(n.Node)
	case *ast.ConditionalNode:
		c.walk(n.Cond)
		c.walk(n.Exp1)
		c.walk(n.Exp2)
	case *ast.UnaryNode:
		if !safeUnary[n.Operator] {
			c.err = fmt.Errorf("it uses the operator %s", n.Operator)
			return
		}
		c.walk(n.Node)
	case *ast.BinaryNode:
		if !safeBinary[n.Operator] {
			c.err = fmt.Errorf("it uses the operator %s", n.Operator)
			return
		}
		c.walk(n.Left)
		c.walk(n.Right)
	case *ast.CallNode:
		if callee, ok := chainOf(n.Callee); ok {
			if base, _, _ := strings.Cut(callee, "."); unsafeNames[base] {
				c.err = fmt.Errorf("it uses %s", base)
				return
			}
		}
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || !safeCalls[id.Value] {
			c.err = errors.New("it calls a function outside lower, upper, trim, trimPrefix, trimSuffix, string, int and float")
			return
		}
		for _, a := range n.Arguments {
			c.walk(a)
		}
	case *ast.BuiltinNode:
		if !safeCalls[n.Name] {
			c.err = fmt.Errorf("it calls %s", n.Name)
			return
		}
		for _, a := range n.Arguments {
			c.walk(a)
		}
	default:
		c.err = fmt.Errorf("it uses %T, outside the subset evaluated here", n)
	}
}

// chainOf returns the dotted name that node reads, "inputs.parameters.x"
// for inputs.parameters.x or inputs.parameters['x'], or false when a part
// of it is computed when the expression runs.
func chainOf(node ast.Node) (string, bool) {
	switch n := node.(type) {
	case *ast.IdentifierNode:
		return n.Value, true
	case *ast.MemberNode:
		prop, ok := n.Property.(*ast.StringNode)
		if !ok {
			return "", false
		}
		base, ok := chainOf(n.Node)
		return base + "." + prop.Value, ok
	case *ast.ChainNode:
		return chainOf(n.Node)
	}
	return "", false
}

// why says, for a user, why {{expr}} has no value before the workflow runs.
func (sc *scope) why(expr string, declared bool) string {
	if reason := sc.lateReason(expr); reason != "" {
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
