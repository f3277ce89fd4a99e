package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/dcherman/image-cache-daemon/pkg/argo"
	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/listformat"
)

// Config chooses the sources and how they look.
type Config struct {
	// Static are the --image images, normalised.
	Static []string
	// ConfigMaps turns the ConfigMap source on; Selector picks the ConfigMaps.
	ConfigMaps bool
	Selector   string
	// The Argo sources.
	WorkflowTemplates        bool
	ClusterWorkflowTemplates bool
	CronWorkflows            bool
	// CRDCheckInterval is how often a missing Argo CRD is looked for again.
	CRDCheckInterval time.Duration
	// Namespaces limits the namespaced sources (ConfigMaps, WorkflowTemplates,
	// CronWorkflows) to these namespaces; empty means every namespace.
	Namespaces []string
	// Budget bounds the reading of one Argo object; zero fields take
	// argo.DefaultBudget's.
	Budget argo.Budget
	// MaxImages is the most images one object keeps (--max-images, the
	// most it could ever get cached; 0: all): entries past it are counted,
	// not kept, and an image list's are not even read.
	MaxImages int
}

// Clients are the API clients the sources read with. The Argo kinds are
// read through the dynamic client and decoded one object at a time: a typed
// informer fails its whole LIST when one stored object does not decode, and
// the Argo CRDs let anyone store such an object.
type Clients struct {
	Kube      kubernetes.Interface
	Dynamic   dynamic.Interface
	Discovery discovery.DiscoveryInterface
}

// MaxObjectBytes is the largest Argo object that is read (as JSON); a
// larger one is skipped and reported. The API server stores objects of up to
// about 1.5 MiB; no workflow written by hand comes near this.
const MaxObjectBytes = 1 << 20

// namespaces returns the namespaces to watch: every one, or those listed.
func (c Config) namespaces() []string {
	if len(c.Namespaces) == 0 {
		return []string{metav1.NamespaceAll}
	}
	return c.Namespaces
}

// newSources builds the sources that cfg turns on. Nothing runs until Start.
func newSources(cfg Config, c Clients, reporter Reporter) ([]Source, error) {
	sources := []Source{NewStatic(cfg.Static)}
	if cfg.ConfigMaps {
		sel, err := labels.Parse(cfg.Selector)
		if err != nil {
			return nil, fmt.Errorf("ConfigMap selector %q: %w", cfg.Selector, err)
		}
		var infs []cache.SharedIndexInformer
		for _, ns := range cfg.namespaces() {
			infs = append(infs, coreinformers.NewFilteredConfigMapInformer(c.Kube, ns, 0, cache.Indexers{},
				func(o *metav1.ListOptions) { o.LabelSelector = sel.String() }))
		}
		get := func(ctx context.Context, ns, name string) (runtime.Object, error) {
			cm, err := c.Kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil || !sel.Matches(labels.Set(cm.Labels)) {
				return nil, err
			}
			return cm, nil
		}
		src, err := NewInformerSource("configmaps", corev1.SchemeGroupVersion.WithKind("ConfigMap"), infs, parseConfigMap, cfg.MaxImages, get, reporter)
		if err != nil {
			return nil, err
		}
		sources = append(sources, src)
	}
	interval := cfg.CRDCheckInterval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	parse := workflowParser(cfg.Budget)
	for _, a := range []struct {
		on       bool
		name     string
		kind     string
		resource string
		cluster  bool
	}{
		{cfg.WorkflowTemplates, "workflowtemplates", "WorkflowTemplate", "workflowtemplates", false},
		{cfg.ClusterWorkflowTemplates, "clusterworkflowtemplates", "ClusterWorkflowTemplate", "clusterworkflowtemplates", true},
		{cfg.CronWorkflows, "cronworkflows", "CronWorkflow", "cronworkflows", false},
	} {
		if !a.on {
			continue
		}
		gvr := wfv1.SchemeGroupVersion.WithResource(a.resource)
		nss := cfg.namespaces()
		if a.cluster {
			nss = []string{metav1.NamespaceAll}
		}
		sources = append(sources, WhenServed(a.name, gvr, c.Discovery, interval, reporter, func() (Source, error) {
			var infs []cache.SharedIndexInformer
			for _, ns := range nss {
				infs = append(infs, dynamicinformer.NewFilteredDynamicInformer(c.Dynamic, gvr, ns, 0, cache.Indexers{}, nil).Informer())
			}
			get := func(ctx context.Context, ns, name string) (runtime.Object, error) {
				u, err := c.Dynamic.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return nil, err
				}
				return u, nil
			}
			return NewInformerSource(a.name, wfv1.SchemeGroupVersion.WithKind(a.kind), infs, parse, cfg.MaxImages, get, reporter)
		}))
	}
	return sources, nil
}

// parseConfigMap reads a ConfigMap's list in its own order, at most keep
// images and, past twice that many entries (duplicates, invalid ones), no
// more: the rest is counted.
func parseConfigMap(obj runtime.Object, keep int) Found {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return Found{Problems: []error{fmt.Errorf("expected a ConfigMap, got %T", obj)}}
	}
	return readConfigMap(cm, listformat.Limits{Keep: keep, Read: 2 * keep})
}

// workflowParser reads the workflow spec of any of the three Argo kinds,
// each object decoded on its own: an object that does not decode, or is
// too large, is reported and wants nothing, and no other object is affected.
func workflowParser(b argo.Budget) ParseFunc {
	return func(obj runtime.Object, _ int) Found {
		spec, err := decodeWorkflowSpec(obj)
		if err != nil {
			return Found{Problems: []error{err}}
		}
		images, skipped, err := argo.Images(spec, b)
		if err != nil {
			return Found{Problems: []error{err}}
		}
		problems := make([]error, len(skipped))
		for i, s := range skipped {
			problems[i] = s
		}
		return Found{Images: images, Problems: problems}
	}
}

// decodeWorkflowSpec decodes the workflow spec of an Argo object as the
// dynamic client delivers it (typed objects are accepted too, for tests).
func decodeWorkflowSpec(obj runtime.Object) (*wfv1.WorkflowSpec, error) {
	switch o := obj.(type) {
	case *wfv1.WorkflowTemplate:
		return &o.Spec, nil
	case *wfv1.ClusterWorkflowTemplate:
		return &o.Spec, nil
	case *wfv1.CronWorkflow:
		return &o.Spec.WorkflowSpec, nil
	case *unstructured.Unstructured:
		raw, err := o.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("reading the %s: %w", o.GetKind(), err)
		}
		if len(raw) > MaxObjectBytes {
			return nil, fmt.Errorf("the %s is %d bytes long; objects over %d bytes are not read, and none of its images is cached", o.GetKind(), len(raw), MaxObjectBytes)
		}
		switch o.GetKind() {
		case "WorkflowTemplate":
			var t wfv1.WorkflowTemplate
			return &t.Spec, decodeJSON(raw, &t)
		case "ClusterWorkflowTemplate":
			var t wfv1.ClusterWorkflowTemplate
			return &t.Spec, decodeJSON(raw, &t)
		case "CronWorkflow":
			var t wfv1.CronWorkflow
			return &t.Spec.WorkflowSpec, decodeJSON(raw, &t)
		}
		return nil, fmt.Errorf("expected an Argo template, got kind %s", imageref.Quote(o.GetKind()))
	}
	return nil, fmt.Errorf("expected an Argo template, got %T", obj)
}

// decodeJSON decodes raw into v and says, for a user, which field did not
// decode; the Argo controller would refuse the object for the same reason.
func decodeJSON(raw []byte, v any) error {
	err := json.Unmarshal(raw, v)
	if err == nil {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Errorf("the object does not decode: field %s holds a JSON %s where Argo expects %s; none of its images is cached until it is fixed",
			imageref.Quote(typeErr.Field), typeErr.Value, typeErr.Type)
	}
	msg := err.Error()
	if len(msg) > 256 {
		msg = msg[:256] + "…"
	}
	return fmt.Errorf("the object does not decode (%s); none of its images is cached until it is fixed", msg)
}
