// Package argo reads the images that an Argo Workflows spec runs, the spec
// of a WorkflowTemplate, ClusterWorkflowTemplate or CronWorkflow, as the
// workflow controller would resolve them.
//
// Any namespace may write these objects, so evaluation runs within a Budget
// per object: time and memory are linear in the object's size whatever it
// holds, and a spec that needs more is refused as too complex (a
// *TooComplexError) instead of being read in part.
package argo

import (
	"errors"
	"fmt"
	"slices"
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

// String reads as one sentence: template, place, image and reason. Values
// written by the spec's author are quoted short.
func (s Skipped) String() string {
	return fmt.Sprintf("template %s %s: image %s skipped: %s", imageref.Quote(s.Template), s.Field, imageref.Quote(s.Image), s.Reason)
}

// Error makes a Skipped a problem the sources report like any other.
func (s Skipped) Error() string { return s.String() }

// Images returns the normalised, distinct, sorted images of
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
// ({{=...}}) over such values or one outside the subset read here (see
// Budget), or a result that is not a valid reference make the image
// Skipped. Placeholders are replaced by Argo's own substitution
// (util/template), expressions included, so what is read is what Argo runs.
//
// A spec that exceeds b is not read at all: err is a *TooComplexError, and
// images and skipped are nil.
func Images(spec *wfv1.WorkflowSpec, b Budget) (images []string, skipped []Skipped, err error) {
	if spec == nil {
		return nil, nil, nil
	}
	return newEvaluator(b).images(spec)
}

// images is Images within e's budget.
func (e *evaluator) images(spec *wfv1.WorkflowSpec) (images []string, skipped []Skipped, err error) {
	defer e.recover(&err)
	defer func() {
		if err != nil {
			images, skipped = nil, nil
		}
	}()
	global := e.layer(nil)
	e.addParams(global, "workflow.parameters.", spec.Arguments.Parameters)
	set := imageref.Set{}
	// inherited records the templateDefaults images some template took, so
	// that one unresolvable there is reported by those templates, not twice.
	inherited := map[string]bool{}
	// reported keeps one skip per template, field, image and reason, however
	// many calls lead to it: the first call names itself in the reason.
	reported := map[Skipped]bool{}
	defaults := e.indexDefaults(spec.TemplateDefaults)
	// report keeps s, charged by its size, unless an equal one is kept.
	report := func(s Skipped, via string) {
		if reported[s] {
			return
		}
		e.spend(2 * (entryBytes + len(s.Template) + len(s.Field) + len(s.Image) + len(s.Reason) + len(via)))
		reported[s] = true
		s.Reason += via
		skipped = append(skipped, s)
	}
	var visit func(name string, t *wfv1.Template, scopes []*scope, capped bool)
	visit = func(name string, t *wfv1.Template, scopes []*scope, capped bool) {
		e.step()
		ats := e.templateImages(t, defaults)
		for _, at := range ats {
			if !strings.Contains(at.image, "{{") {
				// A literal reads the same in every scope: once.
				e.step()
				if reason := e.collect(set, scopes[0], at.image); reason != "" {
					report(Skipped{Template: name, Field: at.field, Image: at.image, Reason: reason}, "")
				}
				continue
			}
			if at.inherited {
				inherited[at.image] = true
			}
			for _, sc := range scopes {
				e.step()
				if reason := e.collect(set, sc, at.image); reason != "" {
					report(Skipped{Template: name, Field: at.field, Image: at.image, Reason: reason}, sc.via)
				}
			}
		}
		if capped {
			for _, at := range ats {
				if strings.Contains(at.image, "{{") {
					skipped = append(skipped, Skipped{Template: name, Field: at.field, Image: at.image,
						Reason: fmt.Sprintf("the template is called in more than %d ways; the images of the others are not read", e.b.MaxScopes)})
				}
			}
		}
		for _, inline := range inlineTemplates(t) {
			visit(name+"/"+inline.name, inline.template, []*scope{e.ownScope(global, inline.template)}, false)
		}
	}
	calls := e.newCallGraph(spec, global)
	for i := range spec.Templates {
		name := spec.Templates[i].Name
		scopes, capped := calls.scopesOf(name)
		visit(name, &spec.Templates[i], scopes, capped)
	}
	if d := spec.TemplateDefaults; d != nil {
		sc := &scope{parent: global, defaults: true}
		for _, at := range e.templateImages(d, nil) {
			if reason := e.collect(set, sc, at.image); reason != "" && !inherited[at.image] {
				skipped = append(skipped, Skipped{Template: defaultsName, Field: at.field, Image: at.image, Reason: reason})
			}
		}
	}
	return set.Sorted(), skipped, nil
}

// collect resolves image in sc and adds it to set; it returns why not, or "".
// Each distinct result is parsed once, charged before.
func (e *evaluator) collect(set imageref.Set, sc *scope, image string) string {
	resolved, err := e.resolve(sc, image)
	if err != nil {
		return err.Error()
	}
	reason, seen := e.parsed[resolved]
	if !seen {
		e.spend(entryBytes + parseImageBytes*(1+len(resolved)))
		if err := set.Add(resolved); err != nil {
			reason = err.Error()
			var invalid *imageref.Error
			if errors.As(err, &invalid) {
				reason = invalid.Reason
			}
		}
		e.parsed[resolved] = reason
	}
	switch {
	case reason == "":
		return ""
	case resolved != image:
		return fmt.Sprintf("it resolves to %s, which is not a valid image reference: %s", imageref.Quote(resolved), reason)
	}
	return "it is not a valid image reference: " + reason
}

// parseImageBytes is what parsing an image reference allocates per byte,
// at most, its regular expressions' backtracking included.
const parseImageBytes = 32

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

// defaultsIndex is spec.templateDefaults as templates inherit it, indexed
// once so that applying it to each template costs what that template
// inherits, not the size of templateDefaults. An image of templateDefaults
// without placeholders is read once, as templateDefaults' own (see Images),
// so only those with placeholders are applied to each template.
type defaultsIndex struct {
	// container and script are the images a container or script template
	// without one inherits, if they hold placeholders.
	container, script string
	// lists are initContainers and sidecars, which Argo merges by name.
	lists [2]defaultsList
}

// defaultsList is one list of containers of templateDefaults.
type defaultsList struct {
	entries []wfv1.UserContainer
	// last is the position of the last entry of each name, which a
	// template's entry of that name without an image inherits.
	last map[string]int
	// positions lists the positions of the entries of each name.
	positions map[string][]int
	// templated lists the positions of entries whose image has
	// placeholders.
	templated []int
}

// indexDefaults indexes d (nil for none), a step for each entry.
func (e *evaluator) indexDefaults(d *wfv1.Template) *defaultsIndex {
	x := &defaultsIndex{}
	if d == nil {
		return x
	}
	templated := func(image string) string {
		if strings.Contains(image, "{{") {
			return image
		}
		return ""
	}
	if d.Container != nil {
		x.container = templated(d.Container.Image)
	}
	if d.Script != nil {
		x.script = templated(d.Script.Image)
	}
	for i, list := range [][]wfv1.UserContainer{d.InitContainers, d.Sidecars} {
		l := &x.lists[i]
		l.entries = list
		l.last, l.positions = map[string]int{}, map[string][]int{}
		for pos, c := range list {
			e.step()
			l.last[c.Name] = pos
			l.positions[c.Name] = append(l.positions[c.Name], pos)
			if templated(c.Image) != "" {
				l.templated = append(l.templated, pos)
			}
		}
	}
	return x
}

// templateImages lists the images of t, with the images with placeholders
// it inherits from defaults (nil for none) as the doc of Images describes,
// a step for each one inherited. Argo drops the type-specific parts of
// templateDefaults that do not match the template's type, so only a
// container template inherits the default container and only a script
// template the default script; a containerSet's list of containers is
// replaced, not merged, so nothing of it is inherited.
func (e *evaluator) templateImages(t *wfv1.Template, defaults *defaultsIndex) []imageAt {
	d := defaults
	if d == nil {
		d = &defaultsIndex{}
	}
	var out []imageAt
	add := func(field, own, fallback string) {
		switch {
		case own != "":
			out = append(out, imageAt{field: field, image: own})
		case fallback != "":
			e.step()
			out = append(out, imageAt{field: field + " (from templateDefaults)", image: fallback, inherited: true})
		}
	}
	// A template with a container is a container template, one with a
	// script a script template: the type the default must match.
	if t.Container != nil {
		add("container", t.Container.Image, d.container)
	}
	if t.Script != nil {
		add("script", t.Script.Image, d.script)
	}
	if t.ContainerSet != nil {
		for i := range t.ContainerSet.Containers {
			c := &t.ContainerSet.Containers[i].Container
			add(listField("containerSet.containers", i, c.Name), c.Image, "")
		}
	}
	merge := podTemplates[t.GetType()]
	for i, own := range [][]wfv1.UserContainer{t.InitContainers, t.Sidecars} {
		l := &d.lists[i]
		field := [...]string{"initContainers", "sidecars"}[i]
		// named lists the positions of the defaults that t's own entries
		// name: Argo merges those into t's entries and appends the others.
		var named []int
		seen := map[string]bool{}
		for j, c := range own {
			var fallback string
			if pos, ok := l.last[c.Name]; merge && ok {
				fallback = l.entries[pos].Image
				if !strings.Contains(fallback, "{{") {
					fallback = "" // read once, as templateDefaults' own
				}
				if !seen[c.Name] {
					seen[c.Name] = true
					named = append(named, l.positions[c.Name]...)
				}
			}
			add(listField(field, j, c.Name), c.Image, fallback)
		}
		if !merge {
			continue
		}
		slices.Sort(named)
		for _, pos := range l.templated {
			if _, found := slices.BinarySearch(named, pos); found {
				continue
			}
			// Its place in the merged list: after t's own entries, among
			// the defaults that t does not name.
			before, _ := slices.BinarySearch(named, pos)
			c := l.entries[pos]
			add(listField(field, len(own)+pos-before, c.Name), "", c.Image)
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
