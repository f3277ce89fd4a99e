// Package planner is the planner (image-cache-daemon planner): it reads the
// sources once for the cluster and publishes the wanted set (pkg/wanted)
// that the node daemons (pkg/node, --from-planner) cache.
package planner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/klog/v2"

	"github.com/dcherman/image-cache-daemon/pkg/daemon"
	"github.com/dcherman/image-cache-daemon/pkg/metrics"
	"github.com/dcherman/image-cache-daemon/pkg/options"
	"github.com/dcherman/image-cache-daemon/pkg/resolve"
	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/sweep"
	"github.com/dcherman/image-cache-daemon/pkg/version"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// publishEvery is the least time between two writes of the wanted set: a
// burst of edits is one write. refreshEvery is how often the set is built
// again though no source said it changed (a source's health moves on its
// own: a watch that fails, then recovers).
const (
	publishEvery = 2 * time.Second
	refreshEvery = 30 * time.Second
)

// Run runs the planner until ctx ends: it reads the sources once for
// the cluster, ranks their images within --max-images, reports the problems
// of objects as Events, and publishes the wanted set (pkg/wanted) for the
// node daemons. Its replicas elect one leader, which alone writes and
// reports; the others read too, to take over at once.
func Run(ctx context.Context, o *options.Options) error {
	logger := klog.FromContext(ctx)
	c, err := daemon.Connect(ctx, o, wanted.Planner)
	if err != nil {
		return err
	}
	kube := c.Kube
	logger.Info("Starting the planner", "version", version.String(), "maxImages", o.MaxImages)

	m := metrics.New()
	recorder, stop := c.Recorder(ctx, corev1.EventSource{Component: wanted.Planner})
	defer stop()
	election, err := daemon.NewElection(kube, o.PodNamespace, wanted.Planner, o.PodName)
	if err != nil {
		return fmt.Errorf("planner election: %w", err)
	}
	reporter := &daemon.Reporter{Self: c.Self, Logger: logger, Recorder: recorder, Metrics: m, Leading: election.Leading}
	scfg, err := o.SourceConfig()
	if err != nil {
		return err
	}
	sources, err := source.NewSet(scfg, source.Clients{Kube: kube, Dynamic: c.Dyn, Discovery: kube.Discovery()}, reporter)
	if err != nil {
		return err
	}
	writer := newSetWriter(kube, o.PodNamespace)
	tags := &resolve.Resolver{Every: o.ResyncPeriod, Keychain: resolve.PullSecrets(kube, o.PodNamespace, o.ImagePullSecrets), Active: election.Leading}
	p := &planner{sources: sources, maxImages: o.MaxImages, leading: election.Leading, grace: daemon.SourceGrace,
		publish: writer.write, published: writer.read, tags: tags, changed: make(chan struct{}, 1), metrics: m}

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { election.Run(ctx); return nil })
	g.Go(func() error {
		election.Wait(ctx, 15*time.Second)
		sources.Start(ctx, p.enqueue)
		sources.Wait()
		return nil
	})
	g.Go(func() error { p.run(ctx); return nil })
	g.Go(func() error { tags.Run(ctx, p.enqueue); return nil })
	// The sweep of the prefetch pods of nodes the DaemonSet left, by the
	// leader.
	meta, err := metadata.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("creating the metadata client: %w", err)
	}
	gc := sweep.NewForPlanner(kube, meta, o.PodNamespace, recorder, o.NodeSweepInterval)
	g.Go(func() error { gc.Run(ctx, election.Leading); return nil })
	daemon.ServeEndpoints(ctx, g, o, m, func() error {
		if !sources.HasSynced() {
			return errors.New("waiting for the sources to sync")
		}
		return nil
	})
	err = g.Wait()
	logger.Info("Stopped")
	return err
}

// planner publishes the wanted set its sources make, while it leads.
type planner struct {
	sources interface {
		HasSynced() bool
		Wants() []source.Want
		Health() []wire.Health
	}
	maxImages int
	leading   func() bool
	// grace is how long after its start the planner waits for every source
	// before it publishes a partial set (which nodes do not delete on).
	grace time.Duration
	// publish writes the set, and says whether it wrote (it differed);
	// published reads the set there is (nil when none).
	publish   func(ctx context.Context, e *wanted.Encoded) (bool, error)
	published func(ctx context.Context) *wanted.Set
	// tags resolves the wanted tags to digests. seeded: it has been given
	// what the set there was says, once this replica leads.
	tags    *resolve.Resolver
	seeded  bool
	changed chan struct{}
	metrics *metrics.Metrics
}

// record sets the planner's metrics (none in tests).
func (p *planner) record(health []wire.Health, set *wanted.Set, enc *wanted.Encoded, wrote bool) {
	if p.metrics == nil {
		return
	}
	p.metrics.SetSourceHealth(health)
	p.metrics.WantedImages.Set(float64(len(set.Images) - (enc.Over - set.Over)))
	p.metrics.ImagesOverLimit.Set(float64(enc.Over))
	p.metrics.WantedSetBytes.Set(float64(enc.Size()))
	unchecked := 0
	for _, im := range set.Images {
		if im.Unchecked != "" {
			unchecked++
		}
	}
	p.metrics.UncheckedImages.Set(float64(unchecked))
	if wrote {
		p.metrics.WantedSetWrites.Inc()
	}
}

// enqueue says the sources may have changed.
func (p *planner) enqueue() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// run publishes until ctx ends: when the sources change, at most every
// publishEvery, and every refreshEvery.
func (p *planner) run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	started := time.Now()
	refresh := time.NewTicker(refreshEvery)
	defer refresh.Stop()
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.changed:
		case <-refresh.C:
		case <-retry.C:
		}
		synced := p.sources.HasSynced()
		if !p.leading() || !synced && time.Since(started) < p.grace {
			retry.Reset(publishEvery)
			continue
		}
		if !p.seeded {
			p.seed(ctx)
		}
		health := p.sources.Health()
		set := wanted.Build(p.sources.Wants(), p.maxImages, health)
		set.Partial = !synced
		p.addDigests(set)
		enc, err := wanted.Encode(set)
		if err == nil {
			var wrote bool
			wrote, err = p.publish(ctx, enc)
			p.record(health, set, enc, wrote)
		}
		if err != nil {
			logger.Error(err, "Publishing the wanted set; retrying")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(publishEvery):
		}
		if !synced || err != nil {
			retry.Reset(0)
		}
	}
}

// seed gives the resolver the digests of the set the last leader
// published, so that taking over keeps them (and their Since): no node
// pulls again because the leader changed.
func (p *planner) seed(ctx context.Context) {
	p.seeded = true
	if p.tags == nil || p.published == nil {
		return
	}
	if old := p.published(ctx); old != nil {
		for _, im := range old.Images {
			if im.Digest != "" {
				p.tags.Seed(im.Image, im.Digest, time.Unix(im.Since, 0))
			}
		}
	}
}

// addDigests tells the resolver which tags the set wants, and gives each
// image of the set the digest it has read, or why it has none.
func (p *planner) addDigests(set *wanted.Set) {
	if p.tags == nil {
		return
	}
	images := make([]string, len(set.Images))
	for i, im := range set.Images {
		images[i] = im.Image
	}
	p.tags.Want(images)
	for i := range set.Images {
		im := &set.Images[i]
		r := p.tags.Lookup(im.Image)
		im.Digest, im.Unchecked = r.Digest, r.Reason
		if r.Digest != "" && !r.Since.IsZero() {
			im.Since = r.Since.Unix()
		}
	}
}

// setWriter writes the wanted set into its ConfigMaps, each only when it
// differs from what is there (read first: another replica may have led
// meanwhile): the parts first, then the head that names them, then the
// parts it no longer names.
type setWriter struct {
	client    kubernetes.Interface
	namespace string
	// leaseOwned: the planner's Lease has an owner (ownLease). parts is
	// how many parts there may be (-1: not known, as at the start).
	leaseOwned bool
	parts      int
}

func newSetWriter(client kubernetes.Interface, namespace string) *setWriter {
	return &setWriter{client: client, namespace: namespace, parts: -1}
}

func (w *setWriter) write(ctx context.Context, e *wanted.Encoded) (bool, error) {
	if !w.leaseOwned {
		w.leaseOwned = w.ownLease(ctx)
	}
	wrote := false
	for i, data := range append(e.Parts, e.Head) {
		name := wanted.ConfigMap
		if i < len(e.Parts) {
			name = wanted.PartName(i + 1)
		}
		changed, err := w.put(ctx, name, data)
		if err != nil {
			return wrote, err
		}
		wrote = wrote || changed
	}
	last := w.parts
	if last < 0 {
		last = wanted.MaxParts
	}
	for i := len(e.Parts) + 1; i <= last; i++ {
		err := w.client.CoreV1().ConfigMaps(w.namespace).Delete(ctx, wanted.PartName(i), metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return wrote, fmt.Errorf("deleting configmap/%s, a part the set no longer names: %w", wanted.PartName(i), err)
		}
		wrote = wrote || err == nil
	}
	w.parts = len(e.Parts)
	return wrote, nil
}

// put writes data into the ConfigMap name, and says whether it wrote.
func (w *setWriter) put(ctx context.Context, name string, data []byte) (bool, error) {
	cms := w.client.CoreV1().ConfigMaps(w.namespace)
	cm, err := cms.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: w.namespace, Labels: map[string]string{
			wire.LabelName: wire.PartOf, wire.LabelComponent: wire.ComponentWanted,
		}, OwnerReferences: w.owner(ctx)}, BinaryData: map[string][]byte{wanted.Key: data}}
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: wanted.Planner})
	case err != nil:
	default:
		owners := cm.OwnerReferences
		if len(owners) == 0 {
			// A set the previous version wrote, or written while the
			// DaemonSet could not be read.
			owners = w.owner(ctx)
		}
		if bytes.Equal(cm.BinaryData[wanted.Key], data) && len(owners) == len(cm.OwnerReferences) {
			return false, nil
		}
		cm.OwnerReferences = owners
		cm.BinaryData = map[string][]byte{wanted.Key: data}
		cm.Data = nil
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: wanted.Planner})
	}
	if err != nil {
		return false, fmt.Errorf("writing configmap/%s: %w", name, err)
	}
	return true, nil
}

// read returns the set there is, nil when there is none or it does not
// decode.
func (w *setWriter) read(ctx context.Context) *wanted.Set {
	s, _, err := wanted.Get(ctx, w.client, w.namespace)
	if err != nil {
		return nil
	}
	return s
}

// ownLease gives the planner's Lease, which the leader (the only caller of
// write) holds, the DaemonSet as its owner, as the wanted set has: the chart
// makes the Lease, but Argo CD neither creates nor prunes Leases (it
// excludes the kind), and the leader election makes it then. It says
// whether the Lease has an owner; the elector's next renewal may meet a
// conflict and retry, well within its deadline.
func (w *setWriter) ownLease(ctx context.Context) bool {
	leases := w.client.CoordinationV1().Leases(w.namespace)
	lease, err := leases.Get(ctx, wanted.Planner, metav1.GetOptions{})
	if err != nil {
		return false
	}
	if len(lease.OwnerReferences) > 0 {
		return true
	}
	owners := w.owner(ctx)
	if owners == nil {
		return false
	}
	lease.OwnerReferences = owners
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{FieldManager: wanted.Planner})
	return err == nil
}

// owner is the wanted set's owner, the node daemons' DaemonSet, which the
// set is for: whoever removes the DaemonSet (helm uninstall, kubectl
// imagecache uninstall) removes the set with it, through the garbage
// collector. None while the DaemonSet cannot be read; the next write tries
// again.
func (w *setWriter) owner(ctx context.Context) []metav1.OwnerReference {
	ds, err := w.client.AppsV1().DaemonSets(w.namespace).Get(ctx, wire.DaemonSet, metav1.GetOptions{})
	if err != nil {
		klog.FromContext(ctx).V(2).Info("The wanted set has no owner yet", "err", err)
		return nil
	}
	return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID}}
}
