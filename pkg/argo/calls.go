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
	// items is the withItems list, read item by item as far as it is used
	// ({{item}} of withParam or withSequence is known only at run time).
	items []wfv1.Item
	// vars holds the placeholders of the items read so far.
	vars []*scope
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
	calls     map[string][]*callSite
	memo      map[string][]*scope
}

func (e *evaluator) newCallGraph(spec *wfv1.WorkflowSpec, global *scope) *callGraph {
	g := &callGraph{e: e, global: global, templates: map[string]*wfv1.Template{}, calls: map[string][]*callSite{}, memo: map[string][]*scope{}}
	add := func(callee string, c *callSite) { g.calls[callee] = append(g.calls[callee], c) }
	if spec.Entrypoint != "" {
		// A caller of its own: the workflow, whose scope is the global one.
		add(spec.Entrypoint, &callSite{step: "spec.arguments", args: spec.Arguments.Parameters})
	}
	for i := range spec.Templates {
		t := &spec.Templates[i]
		g.templates[t.Name] = t
		for _, parallel := range t.Steps {
			for _, st := range parallel.Steps {
				if st.Template != "" && st.TemplateRef == nil {
					add(st.Template, &callSite{caller: t.Name, step: st.Name, args: st.Arguments.Parameters, items: st.WithItems})
				}
			}
		}
		if t.DAG != nil {
			for _, task := range t.DAG.Tasks {
				if task.Template != "" && task.TemplateRef == nil {
					add(task.Template, &callSite{caller: t.Name, step: task.Name, args: task.Arguments.Parameters, items: task.WithItems})
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
	if s, ok := g.memo[name]; ok {
		return s, true, len(s) == g.e.b.MaxScopes
	}
	maxScopes := g.e.b.MaxScopes
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
			for i := 0; i < max(len(c.items), 1); i++ {
				if len(out) == maxScopes {
					capped = true
					break
				}
				out = append(out, g.e.called(own, callerScope, c, g.e.item(c, i)))
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

// item returns the placeholders that iteration i of c's withItems list
// defines ("item", or "item.KEY" for a map item), nil for a call that does
// not loop. Items are read as far as they are used, once each. A value longer
// than the budget's MaxValueBytes cannot be part of an image: it is left
// unknown.
func (e *evaluator) item(c *callSite, i int) *scope {
	if len(c.items) == 0 {
		return nil
	}
	for len(c.vars) <= i {
		it := c.items[len(c.vars)]
		e.step()
		// Reading an item decodes its JSON: a map, each value a copy of
		// its JSON and that decoded again.
		e.spend(8 * len(it.Value))
		vars := e.layer(nil)
		switch it.GetType() {
		case wfv1.Map:
			for k, v := range it.GetMapVal() {
				vars.declare(e, "item."+k, e.bounded(v.String()), "")
			}
		case wfv1.List:
			// {{item}} of a list item is its JSON: never an image.
		default:
			vars.declare(e, "item", e.bounded(it.String()), "")
		}
		c.vars = append(c.vars, vars)
	}
	return c.vars[i]
}

// called is the scope of a template called by c from callerScope with one
// loop iteration's item: its own scope, with each input it declares that c
// passes resolved in the caller's scope (Argo assigns declared inputs only).
func (e *evaluator) called(own, callerScope *scope, c *callSite, item *scope) *scope {
	caller := callerScope
	if item != nil {
		// The item's placeholders over the caller's scope.
		caller = e.layer(callerScope)
		caller.params, caller.maps = item.params, item.maps
	}
	sc := e.layer(own)
	sc.via = " (as the entrypoint, with spec.arguments)"
	if c.caller != "" {
		e.spend(len(c.step) + len(c.caller) + 64) // quoted short below
		sc.via = fmt.Sprintf(" (as called by step %s of template %s)", imageref.Quote(c.step), imageref.Quote(c.caller))
	}
	for _, a := range c.args {
		e.spend(len("inputs.parameters.") + len(a.Name)) // the key
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
			sc.set(e, key, nil, fmt.Sprintf("input parameter %s is passed from a source read only when the workflow runs", imageref.Quote(a.Name)))
			continue
		default:
			continue // nothing passed: the template's default stands
		}
		v, err := e.resolve(caller, passed)
		if err != nil {
			sc.set(e, key, nil, fmt.Sprintf("input parameter %s is passed as %s: %v", imageref.Quote(a.Name), imageref.Quote(passed), err))
			continue
		}
		sc.set(e, key, &v, "")
	}
	return sc
}
