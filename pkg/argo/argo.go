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
	e := newEvaluator(b)
	defer e.recover(&err)
	defer func() {
		if err != nil {
			images, skipped = nil, nil
		}
	}()
	global := e.newScope()
	e.addParams(global, "workflow.parameters.", spec.Arguments.Parameters)
	set := imageref.Set{}
	// inherited records the templateDefaults images some template took, so
	// that one unresolvable there is reported by those templates, not twice.
	inherited := map[string]bool{}
	// reported keeps one skip per template, field, image and reason, however
	// many calls lead to it: the first call names itself in the reason.
	reported := map[Skipped]bool{}
	var visit func(name string, t *wfv1.Template, scopes []*scope, capped bool)
	visit = func(name string, t *wfv1.Template, scopes []*scope, capped bool) {
		e.step()
		ats := templateImages(t, spec.TemplateDefaults)
		for _, sc := range scopes {
			for _, at := range ats {
				if at.inherited {
					inherited[at.image] = true
				}
				if reason := e.collect(set, sc, at.image); reason != "" {
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
		sc := &scope{params: global.params, late: global.late, defaults: true}
		for _, at := range templateImages(d, nil) {
			if reason := e.collect(set, sc, at.image); reason != "" && !inherited[at.image] {
				skipped = append(skipped, Skipped{Template: defaultsName, Field: at.field, Image: at.image, Reason: reason})
			}
		}
	}
	return set.Sorted(), skipped, nil
}

// collect resolves image in sc and adds it to set; it returns why not, or "".
func (e *evaluator) collect(set imageref.Set, sc *scope, image string) string {
	resolved, err := e.resolve(sc, image)
	if err != nil {
		return err.Error()
	}
	if err := set.Add(resolved); err != nil {
		reason := err.Error()
		var invalid *imageref.Error
		if errors.As(err, &invalid) {
			reason = invalid.Reason
		}
		if resolved != image {
			return fmt.Sprintf("it resolves to %s, which is not a valid image reference: %s", imageref.Quote(resolved), reason)
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
