package argo

import (
	"fmt"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
)

// callSite is a step or DAG task that calls a template of the spec by name,
// or the workflow itself calling its entrypoint with spec.arguments.
type callSite struct {
	caller, step string
	args         []wfv1.Parameter
	// items: one map of loop placeholders per iteration of withItems
	// ({{item}} of withParam or withSequence is known only at run time).
	items []map[string]*string
}

// callGraph resolves input parameters as the workflow would: the entrypoint
// gets spec.arguments, a template called by steps or DAG tasks gets the
// arguments they pass, resolved in the caller's own scopes (which may come
// from its callers in turn), once per withItems item. So a parameterised
// template used with three literal images wants those three.
type callGraph struct {
	e         *evaluator
	global    *scope
	templates map[string]*wfv1.Template
	calls     map[string][]callSite
	memo      map[string][]*scope
}

func (e *evaluator) newCallGraph(spec *wfv1.WorkflowSpec, global *scope) *callGraph {
	g := &callGraph{e: e, global: global, templates: map[string]*wfv1.Template{}, calls: map[string][]callSite{}, memo: map[string][]*scope{}}
	add := func(callee string, c callSite) { g.calls[callee] = append(g.calls[callee], c) }
	if spec.Entrypoint != "" {
		// A caller of its own: the workflow, whose scope is the global one.
		add(spec.Entrypoint, callSite{step: "spec.arguments", args: spec.Arguments.Parameters, items: noLoop})
	}
	for i := range spec.Templates {
		t := &spec.Templates[i]
		g.templates[t.Name] = t
		for _, parallel := range t.Steps {
			for _, st := range parallel.Steps {
				if st.Template != "" && st.TemplateRef == nil {
					add(st.Template, callSite{caller: t.Name, step: st.Name, args: st.Arguments.Parameters, items: e.loopItems(st.WithItems)})
				}
			}
		}
		if t.DAG != nil {
			for _, task := range t.DAG.Tasks {
				if task.Template != "" && task.TemplateRef == nil {
					add(task.Template, callSite{caller: t.Name, step: task.Name, args: task.Arguments.Parameters, items: e.loopItems(task.WithItems)})
				}
			}
		}
	}
	return g
}

// scopesOf returns the scopes template name runs in, and whether there were
// more ways of calling it than the budget's MaxScopes.
func (g *callGraph) scopesOf(name string) ([]*scope, bool) {
	out, _, capped := g.scopes(name, map[string]bool{})
	if len(out) == 0 {
		// Only a recursion calls it, which must be entered from outside
		// the spec: its own values and defaults.
		out = []*scope{g.e.ownScope(g.global, g.templates[name])}
	}
	return out, capped
}

// scopes returns the scopes template name runs in: one per way it is called,
// or its own scope when nothing calls it (a template that other workflows
// reference). stack holds the templates whose scopes are being worked out:
// a call from one of them adds nothing (the values that go round a
// recursion come from where it was entered), and a result that left such a
// call out is not memoized, since it depends on where the walk started.
// complete reports that nothing was left out. Each call is a step of the
// budget: calls in cycles are walked again from each start, and the budget
// ends a walk that would take exponential time.
func (g *callGraph) scopes(name string, stack map[string]bool) (out []*scope, complete, capped bool) {
	g.e.step()
	max := g.e.b.MaxScopes
	if s, ok := g.memo[name]; ok {
		return s, true, len(s) == max
	}
	t := g.templates[name]
	own := g.e.ownScope(g.global, t)
	stack[name] = true
	defer delete(stack, name)
	complete = true
	for _, c := range g.calls[name] {
		callerScopes := []*scope{g.global} // the workflow's
		if c.caller != "" {
			if stack[c.caller] {
				complete = false
				continue
			}
			var done, full bool
			callerScopes, done, full = g.scopes(c.caller, stack)
			complete = complete && done
			capped = capped || full
		}
		for _, callerScope := range callerScopes {
			for _, item := range c.items {
				if len(out) == max {
					capped = true
					break
				}
				out = append(out, g.e.called(own, callerScope, c, item))
			}
		}
	}
	if len(out) == 0 && complete {
		out = []*scope{own} // nothing calls it
	}
	if complete {
		g.memo[name] = out
	}
	return out, complete, capped
}

// noLoop is the items of a call that does not loop: one iteration, no
// placeholders.
var noLoop = []map[string]*string{{}}

// loopItems returns the placeholders each iteration of a withItems list
// defines ("item", or "item.KEY" for a map item). A value longer than the
// budget's MaxValueBytes cannot be part of an image: it is left unknown.
func (e *evaluator) loopItems(items []wfv1.Item) []map[string]*string {
	if len(items) == 0 {
		return noLoop
	}
	var out []map[string]*string
	for _, it := range items {
		e.step()
		vars := map[string]*string{}
		switch it.GetType() {
		case wfv1.Map:
			for k, v := range it.GetMapVal() {
				vars["item."+k] = e.bounded(v.String())
			}
		case wfv1.List:
			// {{item}} of a list item is its JSON: never an image.
		default:
			vars["item"] = e.bounded(it.String())
		}
		out = append(out, vars)
	}
	return out
}

// called is the scope of a template called by c from callerScope with one
// loop iteration's item: its own scope, with each input it declares that c
// passes resolved in the caller's scope (Argo assigns declared inputs only).
func (e *evaluator) called(own, callerScope *scope, c callSite, item map[string]*string) *scope {
	caller := callerScope.with(e, item)
	via := fmt.Sprintf(" (as called by step %s of template %s)", imageref.Quote(c.step), imageref.Quote(c.caller))
	if c.caller == "" {
		via = " (as the entrypoint, with spec.arguments)"
	}
	sc := own.clone(e)
	sc.via = via
	for _, a := range c.args {
		key := "inputs.parameters." + a.Name
		if _, declared := own.params[key]; !declared {
			continue
		}
		var passed string
		switch {
		case a.Value != nil:
			passed = a.Value.String()
		case a.Default != nil: // spec.arguments: the default is the value
			passed = a.Default.String()
		case a.ValueFrom != nil:
			sc.unknown(key, fmt.Sprintf("input parameter %s is passed from a source read only when the workflow runs", imageref.Quote(a.Name)))
			continue
		default:
			continue // nothing passed: the template's default stands
		}
		v, err := e.resolve(caller, passed)
		if err != nil {
			sc.unknown(key, fmt.Sprintf("input parameter %s is passed as %s: %v", imageref.Quote(a.Name), imageref.Quote(passed), err))
			continue
		}
		sc.params[key] = &v
	}
	return sc
}
