package source

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
// kind (ConfigMaps and the Argo kinds): it parses each object once per change,
// as the object enters the informer, and keeps only the result, so Wanted is a
// cheap union and the daemon's memory grows with the images, not with the
// size of the objects it watches.
type objectSource struct {
	name     string
	kind     string
	informer cache.SharedIndexInformer
	reporter Reporter

	mu     sync.RWMutex
	byKey  map[string][]Want
	synced func() bool
}

// NewInformerSource returns a Source fed by informer, which must not have
// started: the source sets its transform, so that the informer's store holds
// for each object only its identity and what parse found in it. gvk is the
// objects' kind (for origins, "ConfigMap ns/name", and for Events).
func NewInformerSource(name string, gvk schema.GroupVersionKind, informer cache.SharedIndexInformer, parse ParseFunc, reporter Reporter) (Source, error) {
	err := informer.SetTransform(func(obj any) (any, error) {
		o, ok := obj.(runtime.Object)
		if !ok {
			return obj, nil
		}
		// Already parsed: with streaming lists the reflector's temporary
		// store transforms an object, then the informer's queue again.
		if _, done := o.(*parsed); done {
			return o, nil
		}
		m, err := meta.Accessor(o)
		if err != nil {
			return nil, err
		}
		images, problems := parse(o)
		return &parsed{
			TypeMeta: metav1.TypeMeta{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind},
			ObjectMeta: metav1.ObjectMeta{Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUID(),
				ResourceVersion: m.GetResourceVersion()},
			Images: images, Problems: problems,
		}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s informer: %w", name, err)
	}
	return &objectSource{name: name, kind: gvk.Kind, informer: informer, reporter: reporter, byKey: map[string][]Want{}}, nil
}

// parsed stands for a watched object in the informer's store: the identity
// that keys and Events need, and the result of parsing it.
type parsed struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	Images   []string
	Problems []error
}

func (p *parsed) DeepCopyObject() runtime.Object {
	c := *p
	p.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	c.Images, c.Problems = slices.Clone(p.Images), slices.Clone(p.Problems)
	return &c
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
	p, ok := obj.(*parsed)
	if !ok {
		return false
	}
	key, err := cache.MetaNamespaceKeyFunc(p)
	if err != nil {
		return false
	}
	if len(p.Problems) > 0 && s.reporter != nil {
		s.reporter.Problems(s.name, p, p.Problems)
	}
	origin := s.kind + " " + key
	wants := make([]Want, 0, len(p.Images))
	for _, img := range p.Images {
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
