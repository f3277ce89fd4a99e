package source

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
)

// defaultsName is the Template of a Skipped found in spec.templateDefaults.
const defaultsName = "templateDefaults"

// Skipped is an image written in an Argo workflow spec that is not cached,
// and why. It is reported to the user, never turned into a prefetch pod,
// because a pod for an image that is not known until the workflow runs can
// only fail.
type Skipped struct {
	// Template is the template's name: "templateDefaults" for
	// spec.templateDefaults, "parent/step" for an inline template.
	Template string
	// Field is where in the template the image is written, e.g. "container",
	// "sidecars[log]"; an image inherited from templateDefaults says so.
	Field string
	// Image is the image as written, placeholders included.
	Image string
	// Reason says why it cannot be cached.
	Reason string
}

// String reads as one sentence: template, place, image and reason.
func (s Skipped) String() string {
	return fmt.Sprintf("template %q %s: image %q skipped: %s", s.Template, s.Field, s.Image, s.Reason)
}

// Error makes a Skipped a problem the sources report like any other.
func (s Skipped) Error() string { return s.String() }

// ImagesFromWorkflowSpec returns the normalised, distinct, sorted images of
// an Argo workflow spec (the spec of a WorkflowTemplate or
// ClusterWorkflowTemplate, or CronWorkflow.Spec.WorkflowSpec), and the
// images it had to skip, in spec order (spec.templates, inline templates
// after their parent, then templateDefaults).
//
// Images are read from each template's container, script,
// containerSet.containers, initContainers and sidecars, and from the inline
// templates of its steps and DAG tasks.
//
// spec.templateDefaults is applied as Argo (v3.7) applies it, by a
// strategic merge into each template: a container template whose container
// has no image takes templateDefaults.container's image, a script template
// likewise from templateDefaults.script, and a template that runs a pod
// (container, containerSet, script, resource, data) gets the init
// containers and sidecars of templateDefaults, same-named ones filling in a
// missing image. An inherited image is resolved in the inheriting template,
// so {{inputs.parameters.X}} in templateDefaults works. Besides, every image
// written in templateDefaults that resolves without a template's inputs is
// wanted even if no template inherits it: templateDefaults is written to be
// used, and one extra pull is cheaper than a cold start.
//
// Placeholders are resolved from what the spec itself says:
// {{workflow.parameters.X}} from spec.arguments.parameters and
// {{inputs.parameters.X}} from the template's inputs.parameters, each from
// its value, else its default; blanks inside the braces are allowed, and a
// value may itself hold placeholders. A template that steps or DAG tasks of
// the spec call by name takes its inputs from their arguments instead,
// resolved in the caller's scope (itself possibly called), once per item of
// a withItems list: one image per way it is called. A value given at
// submission is not known here, so a parameter without value or default, a
// withParam or withSequence item, another step's output, an expression
// ({{=...}}) or a result that is not a valid reference make the image
// Skipped.
func ImagesFromWorkflowSpec(spec *wfv1.WorkflowSpec) (images []string, skipped []Skipped) {
	if spec == nil {
		return nil, nil
	}
	global := map[string]*string{}
	addParams(global, "workflow.parameters.", spec.Arguments.Parameters)
	set := imageSet{}
	// inherited records the templateDefaults images some template took, so
	// that one unresolvable there is reported by those templates, not twice.
	inherited := map[string]bool{}
	// reported keeps one skip per template, field, image and reason, however
	// many calls lead to it: the first call names itself in the reason.
	reported := map[Skipped]bool{}
	var visit func(name string, t *wfv1.Template, scopes []scope, capped bool)
	visit = func(name string, t *wfv1.Template, scopes []scope, capped bool) {
		for _, sc := range scopes {
			for _, at := range templateImages(t, spec.TemplateDefaults) {
				if at.inherited {
					inherited[at.image] = true
				}
				if reason := collect(set, sc, at.image); reason != "" {
					s := Skipped{Template: name, Field: at.field, Image: at.image, Reason: reason}
					if !reported[s] {
						reported[s] = true
						s.Reason += sc.via
						skipped = append(skipped, s)
					}
				}
			}
		}
		if capped {
			for _, at := range templateImages(t, spec.TemplateDefaults) {
				if strings.Contains(at.image, "{{") {
					skipped = append(skipped, Skipped{Template: name, Field: at.field, Image: at.image,
						Reason: fmt.Sprintf("the template is called in more than %d ways; the images of the others are not read", maxScopes)})
				}
			}
		}
		for _, inline := range inlineTemplates(t) {
			visit(name+"/"+inline.name, inline.template, []scope{ownScope(global, inline.template)}, false)
		}
	}
	calls := newCallGraph(spec, global)
	for i := range spec.Templates {
		name := spec.Templates[i].Name
		scopes, capped := calls.scopesOf(name)
		visit(name, &spec.Templates[i], scopes, capped)
	}
	if d := spec.TemplateDefaults; d != nil {
		sc := scope{params: global, defaults: true}
		for _, at := range templateImages(d, nil) {
			if reason := collect(set, sc, at.image); reason != "" && !inherited[at.image] {
				skipped = append(skipped, Skipped{Template: defaultsName, Field: at.field, Image: at.image, Reason: reason})
			}
		}
	}
	return set.sorted(), skipped
}

// collect resolves image in sc and adds it to set; it returns why not, or "".
func collect(set imageSet, sc scope, image string) string {
	resolved, err := sc.resolve(image)
	if err != nil {
		return err.Error()
	}
	if err := set.add(resolved); err != nil {
		reason := err.Error()
		var invalid *imageref.Error
		if errors.As(err, &invalid) {
			reason = invalid.Reason
		}
		if resolved != image {
			return fmt.Sprintf("it resolves to %q, which is not a valid image reference: %s", resolved, reason)
		}
		return "it is not a valid image reference: " + reason
	}
	return ""
}

// imageAt is one image of a template and where it is written.
type imageAt struct {
	field     string
	image     string
	inherited bool
}

// podTemplates are the template types that run a pod, and so the ones the
// init containers and sidecars of templateDefaults reach.
var podTemplates = map[wfv1.TemplateType]bool{
	wfv1.TemplateTypeContainer:    true,
	wfv1.TemplateTypeContainerSet: true,
	wfv1.TemplateTypeScript:       true,
	wfv1.TemplateTypeResource:     true,
	wfv1.TemplateTypeData:         true,
}

// templateImages lists the images of t, with the images it inherits from
// defaults (nil for none) as the doc of ImagesFromWorkflowSpec describes.
// Argo drops the type-specific parts of templateDefaults that do not match
// the template's type, so only a container template inherits the default
// container and only a script template the default script; a
// containerSet's list of containers is replaced, not merged, so nothing of
// it is inherited.
func templateImages(t, defaults *wfv1.Template) []imageAt {
	var d wfv1.Template
	if defaults != nil {
		d = *defaults
	}
	var out []imageAt
	add := func(field, own, fallback string) {
		switch {
		case own != "":
			out = append(out, imageAt{field: field, image: own})
		case fallback != "":
			out = append(out, imageAt{field: field + " (from templateDefaults)", image: fallback, inherited: true})
		}
	}
	// A template with a container is a container template, one with a
	// script a script template: the type the default must match.
	if t.Container != nil {
		var fallback string
		if d.Container != nil {
			fallback = d.Container.Image
		}
		add("container", t.Container.Image, fallback)
	}
	if t.Script != nil {
		var fallback string
		if d.Script != nil {
			fallback = d.Script.Image
		}
		add("script", t.Script.Image, fallback)
	}
	if t.ContainerSet != nil {
		for i := range t.ContainerSet.Containers {
			c := &t.ContainerSet.Containers[i].Container
			add(listField("containerSet.containers", i, c.Name), c.Image, "")
		}
	}
	merge := podTemplates[t.GetType()]
	for _, list := range []struct {
		field         string
		own, defaults []wfv1.UserContainer
	}{
		{"initContainers", t.InitContainers, d.InitContainers},
		{"sidecars", t.Sidecars, d.Sidecars},
	} {
		byName := map[string]string{}
		if merge {
			for _, c := range list.defaults {
				byName[c.Name] = c.Image
			}
		}
		for i, c := range list.own {
			add(listField(list.field, i, c.Name), c.Image, byName[c.Name])
			delete(byName, c.Name)
		}
		// Argo appends the defaults no template entry named, in their order.
		n := len(list.own)
		for _, c := range list.defaults {
			if _, left := byName[c.Name]; left {
				add(listField(list.field, n, c.Name), "", c.Image)
				n++
			}
		}
	}
	return out
}

// listField names an entry of a container list by its name, else its index.
func listField(list string, i int, name string) string {
	if name == "" {
		name = strconv.Itoa(i)
	}
	return list + "[" + name + "]"
}

// namedTemplate is an inline template with the name of its step or task.
type namedTemplate struct {
	name     string
	template *wfv1.Template
}

// inlineTemplates returns the templates written inline in t's steps and
// DAG tasks, which hold images like any other template.
func inlineTemplates(t *wfv1.Template) []namedTemplate {
	var out []namedTemplate
	for _, parallel := range t.Steps {
		for i := range parallel.Steps {
			if s := &parallel.Steps[i]; s.Inline != nil {
				out = append(out, namedTemplate{s.Name, s.Inline})
			}
		}
	}
	if t.DAG != nil {
		for i := range t.DAG.Tasks {
			if task := &t.DAG.Tasks[i]; task.Inline != nil {
				out = append(out, namedTemplate{task.Name, task.Inline})
			}
		}
	}
	return out
}

// addParams adds each parameter as prefix+name: its value, else its
// default, else nil (declared, but only known at run time).
func addParams(into map[string]*string, prefix string, params []wfv1.Parameter) {
	for _, p := range params {
		var v *string
		switch {
		case p.Value != nil:
			s := p.Value.String()
			v = &s
		case p.Default != nil:
			s := p.Default.String()
			v = &s
		}
		into[prefix+p.Name] = v
	}
}

// ownScope is what a template's placeholders resolve from when no caller in
// the spec passes its inputs: the workflow parameters and its inputs' own
// values and defaults.
func ownScope(global map[string]*string, t *wfv1.Template) scope {
	sc := scope{params: maps.Clone(global)}
	addParams(sc.params, "inputs.parameters.", t.Inputs.Parameters)
	return sc
}

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
	global    map[string]*string
	templates map[string]*wfv1.Template
	calls     map[string][]callSite
	memo      map[string][]scope
}

// maxScopes bounds the ways of calling one template that are followed (call
// sites x caller scopes x loop items).
const maxScopes = 64

func newCallGraph(spec *wfv1.WorkflowSpec, global map[string]*string) *callGraph {
	g := &callGraph{global: global, templates: map[string]*wfv1.Template{}, calls: map[string][]callSite{}, memo: map[string][]scope{}}
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
					add(st.Template, callSite{caller: t.Name, step: st.Name, args: st.Arguments.Parameters, items: loopItems(st.WithItems)})
				}
			}
		}
		if t.DAG != nil {
			for _, task := range t.DAG.Tasks {
				if task.Template != "" && task.TemplateRef == nil {
					add(task.Template, callSite{caller: t.Name, step: task.Name, args: task.Arguments.Parameters, items: loopItems(task.WithItems)})
				}
			}
		}
	}
	return g
}

// scopesOf returns the scopes template name runs in, and whether there were
// more ways of calling it than maxScopes.
func (g *callGraph) scopesOf(name string) ([]scope, bool) {
	out, _, capped := g.scopes(name, map[string]bool{})
	if len(out) == 0 {
		// Only a recursion calls it, which must be entered from outside
		// the spec: its own values and defaults.
		out = []scope{ownScope(g.global, g.templates[name])}
	}
	return out, capped
}

// scopes returns the scopes template name runs in: one per way it is called,
// or its own scope when nothing calls it (a template that other workflows
// reference). stack holds the templates whose
// scopes are being worked out: a call from one of them adds nothing (the
// values that go round a recursion come from where it was entered), and a
// result that left such a call out is not memoized, since it depends on
// where the walk started. complete reports that nothing was left out.
func (g *callGraph) scopes(name string, stack map[string]bool) (out []scope, complete, capped bool) {
	if s, ok := g.memo[name]; ok {
		return s, true, len(s) == maxScopes
	}
	t := g.templates[name]
	own := ownScope(g.global, t)
	stack[name] = true
	defer delete(stack, name)
	complete = true
	for _, c := range g.calls[name] {
		callerScopes := []scope{{params: g.global}} // the workflow's
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
				if len(out) == maxScopes {
					capped = true
					break
				}
				out = append(out, called(own, callerScope, c, item))
			}
		}
	}
	if len(out) == 0 && complete {
		out = []scope{own} // nothing calls it
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
// defines ("item", or "item.KEY" for a map item).
func loopItems(items []wfv1.Item) []map[string]*string {
	if len(items) == 0 {
		return noLoop
	}
	var out []map[string]*string
	for _, it := range items {
		vars := map[string]*string{}
		switch it.GetType() {
		case wfv1.Map:
			for k, v := range it.GetMapVal() {
				s := v.String()
				vars["item."+k] = &s
			}
		case wfv1.List:
			// {{item}} of a list item is its JSON: never an image.
		default:
			s := it.String()
			vars["item"] = &s
		}
		out = append(out, vars)
	}
	return out
}

// called is the scope of a template called by c from callerScope with one
// loop iteration's item: its own scope, with each input it declares that c
// passes resolved in the caller's scope (Argo assigns declared inputs only).
func called(own, callerScope scope, c callSite, item map[string]*string) scope {
	caller := scope{params: maps.Clone(callerScope.params), late: callerScope.late}
	maps.Copy(caller.params, item)
	via := fmt.Sprintf(" (as called by step %q of template %q)", c.step, c.caller)
	if c.caller == "" {
		via = " (as the entrypoint, with spec.arguments)"
	}
	sc := scope{params: maps.Clone(own.params), via: via}
	unknown := func(key, reason string) {
		sc.params[key] = nil
		if sc.late == nil {
			sc.late = map[string]string{}
		}
		sc.late[key] = reason
	}
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
			unknown(key, fmt.Sprintf("input parameter %q is passed from a source read only when the workflow runs", a.Name))
			continue
		default:
			continue // nothing passed: the template's default stands
		}
		v, err := caller.resolve(passed)
		if err != nil {
			unknown(key, fmt.Sprintf("input parameter %q is passed as %q: %v", a.Name, passed, err))
			continue
		}
		sc.params[key] = &v
	}
	return sc
}

// placeholder matches one {{ expression }}, blanks allowed inside.
var placeholder = regexp.MustCompile(`{{\s*([^{}]*?)\s*}}`)

// maxRounds bounds how deep parameter values may refer to other parameters;
// it also ends a loop of parameters that refer to each other.
const maxRounds = 8

// scope is what the placeholders of one template resolve from: expression
// ("inputs.parameters.x") to value, nil for a declared parameter that has
// neither value nor default.
type scope struct {
	params map[string]*string
	// defaults marks the scope of templateDefaults itself, which has no
	// inputs of its own.
	defaults bool
	// late says, for a parameter without value here, why its caller's
	// value is known only when the workflow runs.
	late map[string]string
	// via names the call this scope is for, appended to a skip's reason.
	via string
}

// resolve replaces every placeholder of s, or says which one it cannot.
func (sc scope) resolve(s string) (string, error) {
	for round := 0; strings.Contains(s, "{{"); round++ {
		if round == maxRounds {
			return "", errors.New("its parameters refer to each other in a loop")
		}
		var unresolved error
		next := placeholder.ReplaceAllStringFunc(s, func(m string) string {
			expr := placeholder.FindStringSubmatch(m)[1]
			v, declared := sc.params[expr]
			if v != nil {
				return *v
			}
			if unresolved == nil {
				unresolved = errors.New(sc.why(expr, declared))
			}
			return m
		})
		if unresolved != nil {
			return "", unresolved
		}
		if next == s {
			// A "{{" that opens no placeholder: left for the reference
			// check to refuse.
			break
		}
		s = next
	}
	return s, nil
}

// why says, for a user, why {{expr}} has no value before the workflow runs.
func (sc scope) why(expr string, declared bool) string {
	if reason := sc.late[expr]; reason != "" {
		return reason
	}
	switch {
	case strings.HasPrefix(expr, "="):
		return fmt.Sprintf("{{%s}} is an expression, evaluated only when the workflow runs", expr)
	case expr == "item" || strings.HasPrefix(expr, "item."):
		return fmt.Sprintf("{{%s}} is a loop item (withItems, withParam, withSequence), known only when the workflow runs", expr)
	case strings.HasPrefix(expr, "steps.") || strings.HasPrefix(expr, "tasks."):
		return fmt.Sprintf("{{%s}} is the output of another step, known only when the workflow runs", expr)
	case strings.HasPrefix(expr, "inputs.parameters."):
		name := strings.TrimPrefix(expr, "inputs.parameters.")
		switch {
		case sc.defaults:
			return fmt.Sprintf("templateDefaults has no inputs; {{%s}} there is resolved in each template that inherits the image, and none does", expr)
		case declared:
			return fmt.Sprintf("input parameter %q has neither a value nor a default; its value comes from the caller when the workflow runs", name)
		}
		return fmt.Sprintf("the template has no input parameter %q", name)
	case strings.HasPrefix(expr, "workflow.parameters."):
		name := strings.TrimPrefix(expr, "workflow.parameters.")
		if declared {
			return fmt.Sprintf("workflow parameter %q has neither a value nor a default in spec.arguments; its value is given when the workflow is submitted", name)
		}
		return fmt.Sprintf("spec.arguments has no parameter %q", name)
	}
	return fmt.Sprintf("{{%s}} is known only when the workflow runs", expr)
}
