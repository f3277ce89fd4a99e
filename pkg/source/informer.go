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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/dcherman/image-cache-daemon/pkg/problems"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
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

// Getter reads one object afresh (nil, nil: it is gone, or no longer
// matches the source's selector).
type Getter func(ctx context.Context, namespace, name string) (runtime.Object, error)

// objectSource is the one Source implementation behind every informer-backed
// kind (ConfigMaps and the Argo kinds): it parses each object once per change,
// as the object enters the informer, and keeps only the result, so Wanted is a
// cheap union and the daemon's memory grows with the images, not with the
// size of the objects it watches.
//
// What it keeps is bounded per namespace, not only per object: all the
// objects of one namespace together hold at most keep images (--max-images,
// more than the namespace could ever get cached), given out as the objects
// arrive. An object that arrives when its namespace's share is spent keeps
// what is left and is marked cut; when the namespace's objects shrink or go,
// the cut ones are read again (get) to take the room. So memory grows with
// the number of namespaces, never with what one tenant writes in its own.
type objectSource struct {
	name      string
	kind      string
	informers []cache.SharedIndexInformer
	reporter  Reporter
	parse     ParseFunc
	keep      int
	get       Getter
	// refill wakes the loop that reads cut objects again.
	refill chan struct{}

	mu sync.RWMutex
	// entries holds, by key, what each object contributes.
	entries map[string]*heldObject
	// held counts the images kept, by namespace.
	held   map[string]int
	synced []func() bool
	// watchErr is the last error of a LIST or WATCH, and when it happened:
	// the reflector retries with a back-off of at most half a minute, so an
	// error older than watchErrFresh has been overcome.
	watchErr   error
	watchErrAt time.Time
	now        func() time.Time
}

// heldObject is what the source holds for one object.
type heldObject struct {
	uid       types.UID
	version   string
	namespace string
	wants     []Want
	// unread counts the entries past the object's or its namespace's share.
	unread   int
	troubled bool
	// cut: the namespace's share left out images the object has.
	cut bool
}

// watchErrFresh is how long a LIST or WATCH error counts as current.
const watchErrFresh = 90 * time.Second

// NewInformerSource returns a Source fed by informers (one per namespace
// watched, or one for all), which must not have started: the source sets
// their transform, so that an informer's store holds for each object only
// its identity and what parse found wrong with it, problems capped at
// problems.Max. gvk is the objects' kind (for origins, "ConfigMap ns/name",
// and for Events). The objects of one namespace keep at most keep images
// together (0: all), the share of --max-images they could ever get; the rest
// are counted, not kept. get reads an object again when its namespace has
// room for images it was refused (nil: it is not read again).
func NewInformerSource(name string, gvk schema.GroupVersionKind, informers []cache.SharedIndexInformer, parse ParseFunc, keep int, get Getter, reporter Reporter) (Source, error) {
	s := newObjectSource(name, gvk.Kind, parse, keep, get, reporter)
	s.informers = informers
	for _, inf := range informers {
		if err := inf.SetTransform(s.transform(gvk)); err != nil {
			return nil, fmt.Errorf("%s informer: %w", name, err)
		}
		if err := inf.SetWatchErrorHandlerWithContext(s.watchError); err != nil {
			return nil, fmt.Errorf("%s informer: %w", name, err)
		}
	}
	return s, nil
}

func newObjectSource(name, kind string, parse ParseFunc, keep int, get Getter, reporter Reporter) *objectSource {
	return &objectSource{name: name, kind: kind, reporter: reporter, parse: parse, keep: keep, get: get,
		refill: make(chan struct{}, 1), entries: map[string]*heldObject{}, held: map[string]int{}, now: time.Now}
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

// transform replaces each object, as it enters an informer, by its
// identity and problems, and holds what parsing found.
func (s *objectSource) transform(gvk schema.GroupVersionKind) cache.TransformFunc {
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
		found, limit := s.read(o, m)
		var capped problems.List
		for _, p := range found.Problems {
			capped.Add(p)
		}
		changed := s.hold(m, found, limit)
		return &parsed{
			TypeMeta: metav1.TypeMeta{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind},
			ObjectMeta: metav1.ObjectMeta{Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUID(),
				ResourceVersion: m.GetResourceVersion()},
			Problems: capped.Errors(), Changed: changed,
		}, nil
	}
}

// read parses o, the object m, for at most as many images as its
// namespace's share has room for, and one more, which tells that it was cut:
// an object that comes when the share is spent costs next to nothing to
// read. It returns what it found and the most it read.
func (s *objectSource) read(o runtime.Object, m metav1.Object) (Found, int) {
	limit := s.keep
	if limit > 0 {
		s.mu.RLock()
		limit = min(limit, s.room(m)+1)
		s.mu.RUnlock()
	}
	found := s.parse(o, limit)
	if limit > 0 && len(found.Images) > limit {
		found.Unread += len(found.Images) - limit
		found.Images = found.Images[:limit]
	}
	return found, limit
}

// room is how many images the object m may hold: its namespace's share less
// what the namespace's other objects hold. s.mu is held.
func (s *objectSource) room(m metav1.Object) int {
	key := objectKey(m.GetNamespace(), m.GetName())
	had := 0
	if old := s.entries[key]; old != nil {
		had = len(old.wants)
	}
	return max(0, s.keep-(s.held[m.GetNamespace()]-had))
}

// hold keeps what the object m contributes, as much as its namespace's share
// has room for, and reports whether what the source wants changed. found was
// read for at most limit images.
func (s *objectSource) hold(m metav1.Object, found Found, limit int) bool {
	key := objectKey(m.GetNamespace(), m.GetName())
	origin := s.kind + " " + key
	s.mu.Lock()
	defer s.mu.Unlock()
	var had []Want
	if old := s.entries[key]; old != nil {
		had = old.wants
	}
	ns := m.GetNamespace()
	n := len(found.Images)
	if s.keep > 0 {
		n = min(n, s.room(m))
	}
	e := &heldObject{uid: m.GetUID(), version: m.GetResourceVersion(), namespace: ns,
		unread: found.Unread + len(found.Images) - n, troubled: len(found.Problems) > 0,
		cut: n < len(found.Images) || limit < s.keep && len(found.Images) == limit}
	if n > 0 {
		e.wants = make([]Want, n)
		for i, img := range found.Images[:n] {
			e.wants[i] = Want{Image: img, Origin: origin, Namespace: ns}
		}
	}
	s.entries[key] = e
	s.held[ns] += n - len(had)
	if n < len(had) {
		s.wakeRefill()
	}
	return !slices.Equal(had, e.wants)
}

// objectKey is the informers' key of an object.
func objectKey(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// wakeRefill asks the refill loop for a pass.
func (s *objectSource) wakeRefill() {
	select {
	case s.refill <- struct{}{}:
	default:
	}
}

// refillLoop reads cut objects again when their namespace has room, until
// ctx ends.
func (s *objectSource) refillLoop(ctx context.Context, onChange func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.refill:
		}
		if s.refillPass(ctx) {
			onChange()
		}
	}
}

// refillPass reads again, in key order, the cut objects of the namespaces
// that have room, and holds what they bring while the room lasts; it
// reports whether anything changed. An object whose version moved on since
// its informer saw it is left to the informer, which brings the new version.
func (s *objectSource) refillPass(ctx context.Context) bool {
	if s.get == nil {
		return false
	}
	s.mu.RLock()
	var keys []string
	for key, e := range s.entries {
		if e.cut && s.held[e.namespace] < s.keep {
			keys = append(keys, key)
		}
	}
	s.mu.RUnlock()
	sort.Strings(keys)
	changed := false
	for _, key := range keys {
		if ctx.Err() != nil {
			return changed
		}
		s.mu.RLock()
		e := s.entries[key]
		room := e != nil && e.cut && s.held[e.namespace] < s.keep
		s.mu.RUnlock()
		if !room {
			continue
		}
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		obj, err := s.get(ctx, ns, name)
		if err != nil {
			if !apierrors.IsNotFound(err) && s.reporter != nil {
				s.reporter.Problems(s.name, nil, []error{fmt.Errorf("reading %s %s again: %w", s.kind, key, err)})
			}
			continue
		}
		if obj == nil {
			continue
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			continue
		}
		s.mu.RLock()
		cur := s.entries[key]
		same := cur != nil && cur.uid == m.GetUID() && cur.version == m.GetResourceVersion()
		s.mu.RUnlock()
		if !same {
			continue
		}
		// Problems were reported when the informer brought this version.
		found, limit := s.read(obj, m)
		if s.hold(m, found, limit) {
			changed = true
		}
	}
	return changed
}

// parsed stands for a watched object in the informer's store: the identity
// that keys and Events need, and the problems parsing found; the images are
// held by the source.
type parsed struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	Problems []error
	// Changed: holding this version changed what the source wants.
	Changed bool
}

func (p *parsed) DeepCopyObject() runtime.Object {
	c := *p
	p.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	c.Problems = slices.Clone(p.Problems)
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
	wg.Go(func() { s.refillLoop(ctx, onChange) })
	wg.Go(func() { s.sweepLoop(ctx) })
	wg.Wait()
}

// sweepEvery is how often the source drops what it holds for objects that
// no informer's store has: an initial list that broke off half-way is
// listed again, and an object deleted in between never comes as deleted.
const sweepEvery = time.Minute

func (s *objectSource) sweepLoop(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.HasSynced() {
			s.sweep()
		}
	}
}

// sweep drops the entries of objects no informer's store holds.
func (s *objectSource) sweep() {
	s.mu.RLock()
	keys := make([]string, 0, len(s.entries))
	for key := range s.entries {
		keys = append(keys, key)
	}
	s.mu.RUnlock()
	for _, key := range keys {
		stored := false
		for _, inf := range s.informers {
			if _, ok, _ := inf.GetStore().GetByKey(key); ok {
				stored = true
				break
			}
		}
		if stored {
			continue
		}
		s.mu.Lock()
		if e := s.entries[key]; e != nil {
			s.drop(key, e)
		}
		s.mu.Unlock()
	}
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

func (s *objectSource) Health() wire.Health {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := wire.Health{Source: s.name, Synced: s.hasSynced(), Objects: len(s.entries)}
	for key, e := range s.entries {
		h.Unread += e.unread
		if e.troubled {
			h.Skipped++
			h.SkippedSample = append(h.SkippedSample, s.kind+" "+key)
		}
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
	keys := make([]string, 0, len(s.entries))
	for k, e := range s.entries {
		if len(e.wants) > 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []Want
	for _, k := range keys {
		out = append(out, s.entries[k].wants...)
	}
	return out
}

// update reports obj's problems, and whether holding it changed what the
// source wants (its transform held it).
func (s *objectSource) update(obj any) bool {
	p, ok := obj.(*parsed)
	if !ok {
		return false
	}
	if len(p.Problems) > 0 && s.reporter != nil {
		s.reporter.Problems(s.name, p, p.Problems)
	}
	return p.Changed
}

// remove lets go of a deleted object, unless its key is held by a newer
// object of the same name already.
func (s *objectSource) remove(obj any) bool {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return false
	}
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key]
	if e == nil || e.uid != m.GetUID() {
		return false
	}
	return s.drop(key, e)
}

// drop lets go of the entry e held under key, and reports whether it wanted
// anything. s.mu is held.
func (s *objectSource) drop(key string, e *heldObject) bool {
	delete(s.entries, key)
	s.held[e.namespace] -= len(e.wants)
	if s.held[e.namespace] <= 0 {
		delete(s.held, e.namespace)
	}
	if len(e.wants) > 0 {
		s.wakeRefill()
	}
	return len(e.wants) > 0
}

func resourceVersion(obj any) string {
	m, err := meta.Accessor(obj)
	if err != nil {
		return ""
	}
	return m.GetResourceVersion()
}
