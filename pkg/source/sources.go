package source

import (
	"fmt"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	argoinformers "github.com/argoproj/argo-workflows/v3/pkg/client/informers/externalversions/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
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
}

// Clients are the API clients the sources read with.
type Clients struct {
	Kube      kubernetes.Interface
	Argo      argoclient.Interface
	Discovery discovery.DiscoveryInterface
}

// New builds the sources that cfg turns on. Nothing runs until Start.
func New(cfg Config, c Clients, reporter Reporter) ([]Source, error) {
	sources := []Source{NewStatic(cfg.Static)}
	if cfg.ConfigMaps {
		sel, err := labels.Parse(cfg.Selector)
		if err != nil {
			return nil, fmt.Errorf("ConfigMap selector %q: %w", cfg.Selector, err)
		}
		inf := coreinformers.NewFilteredConfigMapInformer(c.Kube, metav1.NamespaceAll, 0, cache.Indexers{},
			func(o *metav1.ListOptions) { o.LabelSelector = sel.String() })
		src, err := NewInformerSource("configmaps", corev1.SchemeGroupVersion.WithKind("ConfigMap"), inf, parseConfigMap, reporter)
		if err != nil {
			return nil, err
		}
		sources = append(sources, src)
	}
	interval := cfg.CRDCheckInterval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	argo := []struct {
		on       bool
		name     string
		kind     string
		resource string
		informer func() cache.SharedIndexInformer
	}{
		{cfg.WorkflowTemplates, "workflowtemplates", "WorkflowTemplate", "workflowtemplates", func() cache.SharedIndexInformer {
			return argoinformers.NewWorkflowTemplateInformer(c.Argo, metav1.NamespaceAll, 0, cache.Indexers{})
		}},
		{cfg.ClusterWorkflowTemplates, "clusterworkflowtemplates", "ClusterWorkflowTemplate", "clusterworkflowtemplates", func() cache.SharedIndexInformer {
			return argoinformers.NewClusterWorkflowTemplateInformer(c.Argo, 0, cache.Indexers{})
		}},
		{cfg.CronWorkflows, "cronworkflows", "CronWorkflow", "cronworkflows", func() cache.SharedIndexInformer {
			return argoinformers.NewCronWorkflowInformer(c.Argo, metav1.NamespaceAll, 0, cache.Indexers{})
		}},
	}
	for _, a := range argo {
		if !a.on {
			continue
		}
		gvr := wfv1.SchemeGroupVersion.WithResource(a.resource)
		sources = append(sources, WhenServed(a.name, gvr, c.Discovery, interval, reporter, func() (Source, error) {
			return NewInformerSource(a.name, wfv1.SchemeGroupVersion.WithKind(a.kind), a.informer(), parseWorkflowObject, reporter)
		}))
	}
	return sources, nil
}

func parseConfigMap(obj runtime.Object) ([]string, []error) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return nil, []error{fmt.Errorf("expected a ConfigMap, got %T", obj)}
	}
	return ImagesFromConfigMap(cm)
}

// parseWorkflowObject reads the workflow spec of any of the three Argo kinds.
func parseWorkflowObject(obj runtime.Object) ([]string, []error) {
	var spec *wfv1.WorkflowSpec
	switch o := obj.(type) {
	case *wfv1.WorkflowTemplate:
		spec = &o.Spec
	case *wfv1.ClusterWorkflowTemplate:
		spec = &o.Spec
	case *wfv1.CronWorkflow:
		spec = &o.Spec.WorkflowSpec
	default:
		return nil, []error{fmt.Errorf("expected an Argo template, got %T", obj)}
	}
	images, skipped := ImagesFromWorkflowSpec(spec)
	var problems []error
	for _, s := range skipped {
		problems = append(problems, s)
	}
	return images, problems
}
