package source

import (
	"context"
	"slices"
	"sort"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
)

// Reporter is told about problems a source finds: in an object (a malformed
// image list, an invalid reference, an image template that cannot be
// resolved) or, with a nil obj, in the source itself (a missing CRD). The
// daemon turns them into an Event on the object, a log line and a metric;
// nothing else is lost.
type Reporter interface {
	Problems(source string, obj runtime.Object, problems []error)
}

// ParseFunc extracts the images one object wants, and what is wrong with it.
type ParseFunc func(obj runtime.Object) (images []string, problems []error)

// objectSource is the one Source implementation behind every informer-backed
// kind (ConfigMaps and the Argo kinds): it parses each object once per change
// and keeps only the result, so Wanted is a cheap union.
type objectSource struct {
	name     string
	kind     string
	informer cache.SharedIndexInformer
	parse    ParseFunc
	reporter Reporter

	mu     sync.RWMutex
	byKey  map[string][]Want
	synced func() bool
}

// NewInformerSource returns a Source fed by informer. kind names the
// objects in origins ("ConfigMap ns/name").
func NewInformerSource(name, kind string, informer cache.SharedIndexInformer, parse ParseFunc, reporter Reporter) Source {
	return &objectSource{name: name, kind: kind, informer: informer, parse: parse, reporter: reporter, byKey: map[string][]Want{}}
}

func (s *objectSource) Name() string { return s.name }

func (s *objectSource) Start(ctx context.Context, onChange func()) {
	reg, err := s.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if s.update(obj) {
				onChange()
			}
		},
		UpdateFunc: func(old, obj any) {
			// A periodic informer resync delivers the same version again:
			// nothing changed, and its problems were reported already.
			if resourceVersion(old) == resourceVersion(obj) {
				return
			}
			if s.update(obj) {
				onChange()
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if s.remove(obj) {
				onChange()
			}
		},
	})
	if err != nil {
		// Only possible once the informer has stopped, that is when ctx ended.
		return
	}
	s.mu.Lock()
	s.synced = reg.HasSynced
	s.mu.Unlock()
	go s.informer.RunWithContext(ctx)
}

func (s *objectSource) HasSynced() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.synced != nil && s.synced()
}

func (s *objectSource) Wanted() []Want {
	s.mu.RLock()
	defer s.mu.RUnlock()
	keys := make([]string, 0, len(s.byKey))
	for k := range s.byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Want
	for _, k := range keys {
		out = append(out, s.byKey[k]...)
	}
	return out
}

// update parses obj and stores its wants; it reports whether they changed.
func (s *objectSource) update(obj any) bool {
	o, ok := obj.(runtime.Object)
	if !ok {
		return false
	}
	key, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		return false
	}
	images, problems := s.parse(o)
	if len(problems) > 0 && s.reporter != nil {
		s.reporter.Problems(s.name, o, problems)
	}
	origin := s.kind + " " + key
	wants := make([]Want, 0, len(images))
	for _, img := range images {
		wants = append(wants, Want{Image: img, Origin: origin})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Equal(s.byKey[key], wants) {
		return false
	}
	if len(wants) == 0 {
		delete(s.byKey, key)
	} else {
		s.byKey[key] = wants
	}
	return true
}

func (s *objectSource) remove(obj any) bool {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byKey[key]; !ok {
		return false
	}
	delete(s.byKey, key)
	return true
}

func resourceVersion(obj any) string {
	m, err := meta.Accessor(obj)
	if err != nil {
		return ""
	}
	return m.GetResourceVersion()
}
