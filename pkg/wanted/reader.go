package wanted

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// SourceName is the name of the node's only source: the planner's set.
const SourceName = "planner"

// Planner is the name of the planner's Deployment and of the Lease its
// replicas elect their leader with, in the install namespace.
const Planner = "image-cache-daemon-planner"

// Reader is a node daemon's source: the wanted set the planner published,
// its head watched as one ConfigMap of the install namespace (a watch on
// one name, which RBAC can grant by name), and the parts it names read
// when the head changes, those whose hash changed only. A set that does
// not decode is reported and the last good one kept; until a first set is
// read, the reader is not synced, so the node keeps what its pods hold and
// deletes nothing.
type Reader struct {
	client    kubernetes.Interface
	informer  cache.SharedIndexInformer
	namespace string

	reading sync.Mutex // one read at a time
	// parts are the images of the parts of the last good set, by hash;
	// again is when a set met half written is read again (1 s, doubling
	// to 2 min; reset by a good read); retrying: a read again is due.
	parts    map[string][]Image
	again    wait.Backoff
	retrying bool

	mu      sync.RWMutex
	set     *Set
	index   map[string]int // set.Index()
	problem string
	// down says the planner is down (PlannerDown), as its Lease said when
	// read last.
	down   string
	synced []func() bool
	// leaseEvery is LeaseCheckEvery (shorter in tests).
	leaseEvery time.Duration
	now        func() time.Time
}

// halfWritten paces the reads again of a set met half written.
var halfWritten = wait.Backoff{Duration: time.Second, Factor: 2, Steps: math.MaxInt32, Cap: 2 * time.Minute}

// LeaseCheckEvery is how often a node daemon reads the planner's Lease (one
// GET, from the API server's cache) to tell whether a planner leads: at
// 1,000 nodes, 33 small reads a second, where a watch of the Lease would
// be 500 events a second (it is renewed every RenewEvery).
const LeaseCheckEvery = 30 * time.Second

// NewReader returns the reader of the set published in namespace.
func NewReader(client kubernetes.Interface, namespace string) *Reader {
	inf := coreinformers.NewFilteredConfigMapInformer(client, namespace, 0, cache.Indexers{}, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", ConfigMap).String()
	})
	return &Reader{client: client, informer: inf, namespace: namespace, again: halfWritten,
		leaseEvery: LeaseCheckEvery, now: time.Now}
}

// Name is the source's name, as status shows it.
func (r *Reader) Name() string { return SourceName }

// Run watches the set until ctx ends.
func (r *Reader) Run(ctx context.Context, onChange func()) {
	reg, err := r.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.read(ctx, obj, onChange) },
		UpdateFunc: func(_, obj any) { r.read(ctx, obj, onChange) },
		// A deleted set (an uninstall under way): keep the last one.
	})
	if err != nil {
		return
	}
	r.mu.Lock()
	r.synced = append(r.synced, reg.HasSynced)
	r.mu.Unlock()
	go wait.JitterUntilWithContext(ctx, r.checkPlanner, r.leaseEvery, 0.1, true)
	r.informer.RunWithContext(ctx)
}

// checkPlanner reads the planner's Lease: a node whose planner is down is
// not ready, and says why (it keeps caching the last set meanwhile).
func (r *Reader) checkPlanner(ctx context.Context) {
	lease, err := r.client.CoordinationV1().Leases(r.namespace).Get(ctx, Planner, metav1.GetOptions{ResourceVersion: "0"})
	if err != nil && !apierrors.IsNotFound(err) {
		return // unknown: say what was known
	}
	if err != nil {
		lease = nil
	}
	var msg string
	// The message names when, not how long ago, so that it changes only
	// when the planner's state does (it is written on the daemon's pod).
	if down, renewed := PlannerDown(lease, r.now()); down {
		if renewed.IsZero() {
			msg = fmt.Sprintf("no planner has led yet (lease/%s -n %s)", Planner, r.namespace)
		} else {
			msg = fmt.Sprintf("the planner is down: no leader has renewed lease/%s -n %s since %s (kubectl -n %s get deployment %s); this node keeps caching the last wanted set",
				Planner, r.namespace, renewed.UTC().Format(time.RFC3339), r.namespace, Planner)
		}
	}
	r.mu.Lock()
	r.down = msg
	r.mu.Unlock()
}

func (r *Reader) read(ctx context.Context, obj any, onChange func()) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok || ctx.Err() != nil {
		return
	}
	r.reading.Lock()
	defer r.reading.Unlock()
	s, err := Decode(cm.BinaryData[Key], partGetter(ctx, r.client, r.namespace, r.parts))
	if err == nil {
		r.parts = s.PartImages()
		r.again = halfWritten
	} else if errors.Is(err, ErrPartMoved) && !r.retrying {
		// Half written: read the head there is then again, a little later
		// each time, so a head naming parts that never come costs little.
		r.retrying = true
		time.AfterFunc(r.again.Step(), func() {
			r.reading.Lock()
			r.retrying = false
			r.reading.Unlock()
			if latest, ok, _ := r.informer.GetStore().GetByKey(r.namespace + "/" + ConfigMap); ok {
				r.read(ctx, latest, onChange)
			}
		})
	}
	r.mu.Lock()
	if err != nil {
		r.problem = fmt.Sprintf("configmap/%s -n %s: %v; the last good set is kept", ConfigMap, r.namespace, err)
	} else {
		r.set, r.index, r.problem = s, s.Index(), ""
	}
	down := r.down != ""
	r.mu.Unlock()
	if err == nil && down {
		// A set written is a planner at work: read its Lease now, not at
		// the next round (a node that started with its planner, at an
		// install, is ready as soon as the planner leads).
		r.checkPlanner(ctx)
	}
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
func (r *Reader) Health() wire.Health {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h := wire.Health{Source: SourceName, Synced: r.set != nil && !r.set.Partial, Problem: r.problem}
	if r.down != "" && r.set != nil {
		h.Problem = strings.TrimPrefix(h.Problem+"; "+r.down, "; ")
	}
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
func (r *Reader) Relayed() []wire.Health {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.set == nil {
		return nil
	}
	return r.set.Sources
}

// PlannedOver names the first few images the planner left out, with what
// wants them.
func (r *Reader) PlannedOver() []wire.Image {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.set == nil {
		return nil
	}
	return r.set.OverSample
}

// Get reads the set published in namespace: its head and its parts (one
// GET each), with the head's ConfigMap (for when it was written).
func Get(ctx context.Context, client kubernetes.Interface, namespace string) (*Set, *corev1.ConfigMap, error) {
	cm, err := client.CoreV1().ConfigMaps(namespace).Get(ctx, ConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	s, err := Decode(cm.BinaryData[Key], partGetter(ctx, client, namespace, nil))
	if err != nil {
		return nil, cm, fmt.Errorf("configmap/%s -n %s: %w", ConfigMap, namespace, err)
	}
	return s, cm, nil
}

// partGetter GETs a set's parts, but those known (by hash) already.
func partGetter(ctx context.Context, client kubernetes.Interface, namespace string, known map[string][]Image) PartSource {
	return func(name, sha string) ([]Image, []byte, error) {
		if images, ok := known[sha]; ok {
			return images, nil, nil
		}
		cm, err := client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, err
		}
		return nil, cm.BinaryData[Key], nil
	}
}
