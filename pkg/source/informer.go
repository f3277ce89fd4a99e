package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"time"

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

// ParseFunc extracts the images one object wants, and what is wrong with it:
// at most keep images (0: all), in the order the object's share of
// --max-images takes them; the others are counted as Unread, and need not
// be read at all.
type ParseFunc func(obj runtime.Object, keep int) Found

// Found is what parsing one object found.
type Found struct {
	Images   []string
	Unread   int
	Problems []error
}

// objectSource is the one Source implementation behind every informer-backed
// kind (ConfigMaps and the Argo kinds): it parses each object once per change,
// as the object enters the informer, and keeps only the result, so Wanted is a
// cheap union and the daemon's memory grows with the images, not with the
// size of the objects it watches.
type objectSource struct {
	name      string
	kind      string
	informers []cache.SharedIndexInformer
	reporter  Reporter

	mu     sync.RWMutex
	byKey  map[string][]Want
	synced []func() bool
	// troubled holds the keys of objects with problems.
	troubled map[string]bool
	// objects counts the objects read.
	objects map[string]bool
	// unread counts, by object, the entries past its share, not read.
	unread map[string]int
	// watchErr is the last error of a LIST or WATCH, and when it happened:
	// the reflector retries with a back-off of at most half a minute, so an
	// error older than watchErrFresh has been overcome.
	watchErr   error
	watchErrAt time.Time
	now        func() time.Time
}

// watchErrFresh is how long a LIST or WATCH error counts as current.
const watchErrFresh = 90 * time.Second

// NewInformerSource returns a Source fed by informers (one per namespace
// watched, or one for all), which must not have started: the source sets
// their transform, so that an informer's store holds for each object only
// its identity and what parse found in it, problems capped at MaxProblems.
// gvk is the objects' kind (for origins, "ConfigMap ns/name", and for
// Events). Each object keeps at most keep images (0: all), the share of
// --max-images it could ever get; the rest are counted, not kept.
func NewInformerSource(name string, gvk schema.GroupVersionKind, informers []cache.SharedIndexInformer, parse ParseFunc, keep int, reporter Reporter) (Source, error) {
	s := &objectSource{name: name, kind: gvk.Kind, informers: informers, reporter: reporter,
		byKey: map[string][]Want{}, troubled: map[string]bool{}, objects: map[string]bool{}, unread: map[string]int{}, now: time.Now}
	for _, inf := range informers {
		if err := inf.SetTransform(parseTransform(gvk, parse, keep)); err != nil {
			return nil, fmt.Errorf("%s informer: %w", name, err)
		}
		if err := inf.SetWatchErrorHandlerWithContext(s.watchError); err != nil {
			return nil, fmt.Errorf("%s informer: %w", name, err)
		}
	}
	return s, nil
}

// watchError keeps a failed LIST or WATCH for Health, and reports it when it
// differs from the last one: the reflector retries every few seconds, and
// the same error on every retry would drown every other log line.
func (s *objectSource) watchError(_ context.Context, _ *cache.Reflector, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return // a watch closed by the server: the reflector just watches again
	}
	s.mu.Lock()
	repeated := s.watchErr != nil && s.watchErr.Error() == err.Error()
	s.watchErr, s.watchErrAt = err, s.now()
	s.mu.Unlock()
	if !repeated && s.reporter != nil {
		s.reporter.Problems(s.name, nil, []error{fmt.Errorf("reading %s: %w", s.kind+"s", err)})
	}
}

// parseTransform replaces each object, as it enters an informer, by what
// parse finds in it.
func parseTransform(gvk schema.GroupVersionKind, parse ParseFunc, keep int) cache.TransformFunc {
	return func(obj any) (any, error) {
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
		found := parse(o, keep)
		if keep > 0 && len(found.Images) > keep {
			found.Unread += len(found.Images) - keep
			found.Images = slices.Clone(found.Images[:keep])
		}
		var problems Problems
		for _, p := range found.Problems {
			problems.Add(p)
		}
		return &parsed{
			TypeMeta: metav1.TypeMeta{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind},
			ObjectMeta: metav1.ObjectMeta{Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUID(),
				ResourceVersion: m.GetResourceVersion()},
			Images: found.Images, Unread: found.Unread, Problems: problems.Errors(),
		}, nil
	}
}

// parsed stands for a watched object in the informer's store: the identity
// that keys and Events need, and the result of parsing it.
type parsed struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	Images   []string
	Unread   int
	Problems []error
}

func (p *parsed) DeepCopyObject() runtime.Object {
	c := *p
	p.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	c.Images, c.Problems = slices.Clone(p.Images), slices.Clone(p.Problems)
	return &c
}

func (s *objectSource) Name() string { return s.name }

func (s *objectSource) Run(ctx context.Context, onChange func()) {
	var wg sync.WaitGroup
	for _, inf := range s.informers {
		if s.watch(inf, onChange) {
			wg.Go(func() { inf.RunWithContext(ctx) })
		}
	}
	wg.Wait()
}

// watch registers the handlers on informer; false once it has stopped.
func (s *objectSource) watch(informer cache.SharedIndexInformer, onChange func()) bool {
	reg, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
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
		return false
	}
	s.mu.Lock()
	s.synced = append(s.synced, reg.HasSynced)
	s.mu.Unlock()
	return true
}

func (s *objectSource) HasSynced() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.hasSynced()
}

func (s *objectSource) hasSynced() bool {
	if len(s.synced) < len(s.informers) {
		return false
	}
	for _, synced := range s.synced {
		if !synced() {
			return false
		}
	}
	return true
}

func (s *objectSource) Health() Health {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := Health{Source: s.name, Synced: s.hasSynced(), Objects: len(s.objects), Skipped: len(s.troubled)}
	for _, n := range s.unread {
		h.Unread += n
	}
	for key := range s.troubled {
		h.SkippedSample = append(h.SkippedSample, s.kind+" "+key)
	}
	sort.Strings(h.SkippedSample)
	if len(h.SkippedSample) > maxSkippedSample {
		h.SkippedSample = h.SkippedSample[:maxSkippedSample]
	}
	if s.watchErr != nil && s.now().Sub(s.watchErrAt) < watchErrFresh {
		h.Problem = s.watchErr.Error()
	}
	return h
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
		wants = append(wants, Want{Image: img, Origin: origin, Namespace: p.Namespace})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objects[key] = true
	if p.Unread > 0 {
		s.unread[key] = p.Unread
	} else {
		delete(s.unread, key)
	}
	if len(p.Problems) > 0 {
		s.troubled[key] = true
	} else {
		delete(s.troubled, key)
	}
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
	delete(s.objects, key)
	delete(s.troubled, key)
	delete(s.unread, key)
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
