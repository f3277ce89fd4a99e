package wanted

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/dcherman/image-cache-daemon/pkg/source"
)

// SourceName is the name of the node's only source: the planner's set.
const SourceName = "planner"

// Planner is the name of the planner's Deployment and of the Lease its
// replicas elect their leader with, in the install namespace.
const Planner = "image-cache-daemon-planner"

// Reader is a node daemon's source: the wanted set the planner published,
// watched as one ConfigMap of the install namespace (a watch on one name,
// which RBAC can grant by name). A set that does not decode is reported and
// the last good one kept; until a first set is read, the reader is not
// synced, so the node keeps what its pods hold and deletes nothing.
type Reader struct {
	informer  cache.SharedIndexInformer
	namespace string

	mu      sync.RWMutex
	set     *Set
	index   map[string]int // set.Index()
	problem string
	synced  []func() bool
}

// NewReader returns the reader of the set published in namespace.
func NewReader(client kubernetes.Interface, namespace string) *Reader {
	inf := coreinformers.NewFilteredConfigMapInformer(client, namespace, 0, cache.Indexers{}, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", ConfigMap).String()
	})
	return &Reader{informer: inf, namespace: namespace}
}

// Name is the source's name, as status shows it.
func (r *Reader) Name() string { return SourceName }

// Run watches the set until ctx ends.
func (r *Reader) Run(ctx context.Context, onChange func()) {
	reg, err := r.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.read(obj, onChange) },
		UpdateFunc: func(_, obj any) { r.read(obj, onChange) },
		// A deleted set (an uninstall under way): keep the last one.
	})
	if err != nil {
		return
	}
	r.mu.Lock()
	r.synced = append(r.synced, reg.HasSynced)
	r.mu.Unlock()
	r.informer.RunWithContext(ctx)
}

func (r *Reader) read(obj any, onChange func()) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return
	}
	s, err := Decode(cm.BinaryData[Key])
	r.mu.Lock()
	if err != nil {
		r.problem = fmt.Sprintf("configmap/%s -n %s: %v; the last good set is kept", ConfigMap, r.namespace, err)
	} else {
		r.set, r.index, r.problem = s, s.Index(), ""
	}
	r.mu.Unlock()
	if err == nil {
		onChange()
	}
}

// HasSynced reports whether a set was read that the planner made from
// every source.
func (r *Reader) HasSynced() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.set != nil && !r.set.Partial
}

// Wanted is the set's images, in rank order (see Set.Wants).
func (r *Reader) Wanted() []source.Want {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.set == nil {
		return nil
	}
	return r.set.Wants()
}

// Health says whether a set was read, and counts as unread the images the
// planner left out and does not name (PlannedOver names the others).
func (r *Reader) Health() source.Health {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h := source.Health{Source: SourceName, Synced: r.set != nil && !r.set.Partial, Problem: r.problem}
	switch {
	case r.set != nil:
		h.Objects = len(r.set.Images)
		h.Unread = max(0, r.set.Over-len(r.set.OverSample))
	case h.Problem == "":
		informerSynced := len(r.synced) > 0 && r.synced[0]()
		if informerSynced {
			h.Problem = fmt.Sprintf("configmap/%s -n %s does not exist: the planner has published no wanted set yet (kubectl -n %s get deployment %s)",
				ConfigMap, r.namespace, r.namespace, Planner)
		}
	}
	return h
}

// Current is the digest the set gives for img, and since when; "" when it
// gives none (see Set.Current).
func (r *Reader) Current(img string) (string, time.Time) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.set == nil {
		return "", time.Time{}
	}
	i, ok := r.index[img]
	if !ok {
		i = -1
	}
	return r.set.current(i)
}

// Pending reports whether the set names img with its check still to come
// (see Set.Pending).
func (r *Reader) Pending(img string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.set == nil {
		return false
	}
	i, ok := r.index[img]
	return ok && r.set.pending(i)
}

// Relayed is the health of the planner's sources, as it published them.
func (r *Reader) Relayed() []source.Health {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.set == nil {
		return nil
	}
	return r.set.Sources
}

// PlannedOver names the first few images the planner left out, with what
// wants them.
func (r *Reader) PlannedOver() []source.Image {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.set == nil {
		return nil
	}
	return r.set.OverSample
}
