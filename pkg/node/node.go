// Package node is the node daemon (image-cache-daemon, a DaemonSet): it
// reads what the cluster wants, from the sources or from the planner's set
// (--from-planner), and keeps prefetch pods on its node that pull it
// (Controller); it reports the node's images and health on its own pod.
package node

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/klog/v2"

	"github.com/dcherman/image-cache-daemon/pkg/daemon"
	"github.com/dcherman/image-cache-daemon/pkg/metrics"
	"github.com/dcherman/image-cache-daemon/pkg/options"
	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/sweep"
	"github.com/dcherman/image-cache-daemon/pkg/version"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/warden"
	"github.com/dcherman/image-cache-daemon/pkg/warm"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// ReporterLease is the Lease, in the daemon's namespace, held by the one
// daemon that reports problems found in watched objects as Events. Every
// daemon reads every object, so without it each problem would be reported
// once per node: a thousand Events for one typo on a thousand nodes.
const ReporterLease = "image-cache-daemon-reporter"

// ReasonImageLimitExceeded is the reason of the Event, on the daemon's pod,
// that says the sources want more images than this node caches
// (--max-images, --max-prefetch-pods, the node's pods); fixed so that
// alerts and `kubectl get events --field-selector reason=...` can rely on
// it.
const ReasonImageLimitExceeded = "ImageLimitExceeded"

// Run runs the node daemon until ctx ends (SIGTERM), then shuts its servers
// down.
// o must have passed Validate.
func Run(ctx context.Context, o *options.Options) error {
	logger := klog.FromContext(ctx)
	c, err := daemon.Connect(ctx, o, "image-cache-daemon")
	if err != nil {
		return err
	}
	kube, dyn, self := c.Kube, c.Dyn, c.Self
	meta, err := metadata.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("creating the metadata client: %w", err)
	}
	pcfg, err := prefetchConfig(o, self)
	if err != nil {
		return err
	}
	useWardenConfigMap(ctx, kube, &pcfg)
	logger.Info("Starting", "version", version.String(), "node", o.NodeName, "wardenImage", pcfg.WardenImage,
		"owner", pcfg.Owner.Kind+"/"+pcfg.Owner.Name, "resyncPeriod", o.ResyncPeriod,
		"maxImages", o.MaxImages, "maxPrefetchPods", o.MaxPrefetchPods)

	m := metrics.New()
	recorder, stop := c.Recorder(ctx, corev1.EventSource{Component: "image-cache-daemon", Host: o.NodeName})
	defer stop()
	// Without a planner, the daemons elect the one that reports objects'
	// problems and sweeps; with one, the planner does both, and a node
	// daemon holds no Lease (its reads do not grow with the nodes).
	var election *daemon.Election
	reporter := &daemon.Reporter{Self: self, Logger: logger, Recorder: recorder, Metrics: m}
	if !o.FromPlanner {
		if election, err = daemon.NewElection(kube, o.PodNamespace, ReporterLease, o.PodName); err != nil {
			return fmt.Errorf("reporter election: %w", err)
		}
		reporter.Leading = election.Leading
	}

	sources, err := nodeSources(o, kube, dyn, reporter)
	if err != nil {
		return err
	}

	podInformer := newPodInformer(kube, o.PodNamespace, o.NodeName)
	pub := newPublisher(kube, o.PodNamespace, o.PodName, sources, m)
	ctrl, err := NewController(kube, podInformer, sources, ControllerConfig{
		Prefetch: pcfg, Resync: o.ResyncPeriod, MaxImages: o.MaxImages, MaxPods: o.MaxPrefetchPods,
		Self: self, Recorder: recorder, Metrics: m, WarmTimeout: o.WarmTimeout,
		Pacer: prefetch.NewPacer(o.RegistryPullQPS, o.RegistryBurst), Report: pub.set,
		Warm: warm.NewNode(kube, warm.NodeConfig{Name: o.NodeName, TaintKey: o.StartupTaint, Recorder: recorder, FieldManager: FieldManager}),
	})
	if err != nil {
		return err
	}

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { podInformer.RunWithContext(ctx); return nil })
	if election != nil {
		g.Go(func() error { election.Run(ctx); return nil })
	}
	g.Go(func() error {
		// The first read reports every object's problems: let the
		// election settle who sends them as Events first.
		if election != nil {
			election.Wait(ctx, 15*time.Second)
		}
		sources.Start(ctx, ctrl.Enqueue)
		sources.Wait()
		return nil
	})
	gc := sweep.NewForNode(kube, meta, pcfg, recorder, o.NodeSweepInterval)
	g.Go(func() error {
		err := ctrl.Run(ctx)
		// After the worker stopped, so that no prefetch pod is created
		// behind the cleanup's back.
		if gc != nil {
			gc.AtExit(ctx, self)
		}
		return err
	})
	if gc != nil && election != nil {
		g.Go(func() error { gc.Run(ctx, election.Leading); return nil })
	}
	g.Go(func() error { pub.run(ctx); return nil })
	daemon.ServeEndpoints(ctx, g, o, m, func() error {
		if err := sourcesReady(sources); err != nil {
			return err
		}
		if !ctrl.Ready() {
			return errors.New("waiting for the prefetch pods to sync")
		}
		return nil
	})
	err = g.Wait()
	logger.Info("Stopped")
	return err
}

// nodeSources are what a node daemon caches: the planner's published set
// (--from-planner), else the sources it reads itself.
func nodeSources(o *options.Options, kube kubernetes.Interface, dyn dynamic.Interface, reporter source.Reporter) (Sources, error) {
	if o.FromPlanner {
		r := wanted.NewReader(kube, o.PodNamespace)
		return &plannedSet{Set: source.NewSetOf(r), reader: r}, nil
	}
	scfg, err := o.SourceConfig()
	if err != nil {
		return nil, err
	}
	return source.NewSet(scfg, source.Clients{Kube: kube, Dynamic: dyn, Discovery: kube.Discovery()}, reporter)
}

// Sources are the node daemon's: started once, read by the controller and
// the health report.
type Sources interface {
	Wants
	Start(ctx context.Context, onChange func())
	Wait()
}

// plannedSet is the planner's set as a node daemon's Sources.
type plannedSet struct {
	*source.Set
	reader *wanted.Reader
}

func (p *plannedSet) PlannedOver() []wire.Image { return p.reader.PlannedOver() }

func (p *plannedSet) Current(img string) (string, time.Time) { return p.reader.Current(img) }

func (p *plannedSet) Pending(img string) bool { return p.reader.Pending(img) }

// prefetchConfig derives the prefetch pod settings from the options and from
// the daemon's own pod: the pods are owned by the DaemonSet (so a daemon
// restart or upgrade keeps them, and uninstalling removes them), the warden
// comes from the daemon's own image (already on the node), and tolerations
// and pull secrets default to the daemon's.
func prefetchConfig(o *options.Options, self *corev1.Pod) (prefetch.Config, error) {
	owner := metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: self.Name, UID: self.UID}
	if ref := metav1.GetControllerOf(self); ref != nil && ref.Kind == "DaemonSet" {
		owner = metav1.OwnerReference{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, UID: ref.UID}
	}
	warden := o.WardenImage
	if warden == "" {
		warden = ownImage(self)
	}
	tolerations, err := o.Tolerations()
	if err != nil {
		return prefetch.Config{}, fmt.Errorf("--prefetch-tolerations: %w", err)
	}
	if tolerations == nil {
		tolerations = self.Spec.Tolerations
	}
	secrets := append([]string(nil), o.ImagePullSecrets...)
	for _, s := range self.Spec.ImagePullSecrets {
		secrets = appendUnique(secrets, s.Name)
	}
	return prefetch.Config{
		Namespace:         o.PodNamespace,
		NodeName:          o.NodeName,
		WardenImage:       warden,
		Owner:             &owner,
		Tolerations:       tolerations,
		PriorityClassName: o.PrefetchPriorityClass,
		ImagePullSecrets:  secrets,
		BatchSize:         o.BatchSize,
	}, nil
}

// useWardenConfigMap makes prefetch pods mount the warden executable for
// this node's architecture from the installer's ConfigMap, with that
// ConfigMap as their controller: then they have no emptyDir and a
// controller, and a plain `kubectl drain` evicts them even while they pull.
// Without the ConfigMap (an installation by an older version), the pods
// keep the init container and emptyDir; the reason is logged once.
func useWardenConfigMap(ctx context.Context, client kubernetes.Interface, cfg *prefetch.Config) {
	logger := klog.FromContext(ctx)
	cm, err := client.CoreV1().ConfigMaps(cfg.Namespace).Get(ctx, warden.ConfigMap, metav1.GetOptions{})
	if err != nil {
		logger.Info("Prefetch pods copy the warden with an init container into an emptyDir, which keeps a plain kubectl drain from evicting them while they pull; run kubectl imagecache install again to fix",
			"configMap", klog.KRef(cfg.Namespace, warden.ConfigMap), "err", err)
		return
	}
	if _, ok := cm.BinaryData[goruntime.GOARCH]; !ok {
		logger.Info("The warden ConfigMap has no executable for this node's architecture; prefetch pods copy the warden with an init container",
			"configMap", klog.KObj(cm), "architecture", goruntime.GOARCH)
		return
	}
	cfg.Warden = &prefetch.WardenSource{ConfigMap: cm.Name, Key: goruntime.GOARCH}
	cfg.Controller = &metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: cm.Name, UID: cm.UID}
}

// ownImage is the image of the daemon's container (the one running the
// daemon binary), else the release image of this version.
func ownImage(self *corev1.Pod) string {
	for _, c := range self.Spec.Containers {
		if len(c.Command) == 0 || strings.HasSuffix(c.Command[0], "image-cache-daemon") {
			return c.Image
		}
	}
	return version.Image(version.String())
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
