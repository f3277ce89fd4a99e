package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/dcherman/image-cache-daemon/pkg/metrics"
	"github.com/dcherman/image-cache-daemon/pkg/options"
	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/version"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/warm"
)

// Run runs the daemon until ctx ends (SIGTERM), then shuts its servers down.
// o must have passed Validate.
func Run(ctx context.Context, o *options.Options) error {
	logger := klog.FromContext(ctx)
	c, err := connect(ctx, o, "image-cache-daemon")
	if err != nil {
		return err
	}
	kube, dyn, self := c.kube, c.dyn, c.self
	meta, err := metadata.NewForConfig(c.config)
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
	recorder, stop := c.recorder(ctx, corev1.EventSource{Component: "image-cache-daemon", Host: o.NodeName})
	defer stop()
	// Without a planner, the daemons elect the one that reports objects'
	// problems and sweeps; with one, the planner does both, and a node
	// daemon holds no Lease (its reads do not grow with the nodes).
	var election *election
	reporter := &reporter{self: self, logger: logger, recorder: recorder, metrics: m}
	if !o.FromPlanner {
		if election, err = newElection(kube, o.PodNamespace, ReporterLease, o.PodName); err != nil {
			return fmt.Errorf("reporter election: %w", err)
		}
		reporter.leading = election.leading
	}

	sources, err := nodeSources(o, kube, dyn, reporter)
	if err != nil {
		return err
	}

	podInformer := newPodInformer(kube, o.PodNamespace, o.NodeName)
	statuses := newImageReport(kube, o.PodNamespace, o.PodName)
	ctrl, err := NewController(kube, podInformer, sources, ControllerConfig{
		Prefetch: pcfg, Resync: o.ResyncPeriod, MaxImages: o.MaxImages, MaxPods: o.MaxPrefetchPods,
		Self: self, Recorder: recorder, Metrics: m, WarmTimeout: o.WarmTimeout,
		Pacer: prefetch.NewPacer(o.RegistryPullQPS, o.RegistryBurst), Report: statuses.set,
		Warm: warm.NewNode(kube, warm.NodeConfig{Name: o.NodeName, TaintKey: o.StartupTaint, Recorder: recorder, FieldManager: FieldManager}),
	})
	if err != nil {
		return err
	}

	h := &health{own: statuses.own, sources: sources, overLimit: ctrl.OverLimit, warmth: ctrl.Warmth, metrics: m}

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { podInformer.RunWithContext(ctx); return nil })
	if election != nil {
		g.Go(func() error { election.run(ctx); return nil })
	}
	g.Go(func() error {
		// The first read reports every object's problems: let the
		// election settle who sends them as Events first.
		if election != nil {
			election.wait(ctx, 15*time.Second)
		}
		sources.Start(ctx, ctrl.Enqueue)
		sources.Wait()
		return nil
	})
	gc := newNodeGC(kube, meta, pcfg, recorder, o.NodeSweepInterval)
	g.Go(func() error {
		err := ctrl.Run(ctx)
		// After the worker stopped, so that no prefetch pod is created
		// behind the cleanup's back.
		if gc != nil {
			gc.atExit(ctx, self)
		}
		return err
	})
	if gc != nil && election != nil {
		g.Go(func() error { gc.runSweeps(ctx, election.leading); return nil })
	}
	g.Go(func() error { h.run(ctx); return nil })
	g.Go(func() error { statuses.run(ctx); return nil })
	serveEndpoints(ctx, g, o, m, func() error {
		if err := h.ready(); err != nil {
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

// clients are what a daemon, node or planner, talks to the API server with.
type clients struct {
	config *rest.Config
	kube   kubernetes.Interface
	dyn    dynamic.Interface
	// self is the daemon's own pod (--pod-namespace, --pod-name).
	self *corev1.Pod
}

// connect builds the clients, as agent, and reads the daemon's own pod.
func connect(ctx context.Context, o *options.Options, agent string) (*clients, error) {
	cfg, err := restConfig(o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = agent + "/" + version.String()
	c := &clients{config: cfg}
	if c.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	if c.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("creating the dynamic client: %w", err)
	}
	if c.self, err = c.kube.CoreV1().Pods(o.PodNamespace).Get(ctx, o.PodName, metav1.GetOptions{}); err != nil {
		return nil, fmt.Errorf("reading this daemon's own pod %s/%s (--pod-namespace, --pod-name): %w", o.PodNamespace, o.PodName, err)
	}
	return c, nil
}

// recorder records Events as from; stop flushes and stops it.
func (c *clients) recorder(ctx context.Context, from corev1.EventSource) (record.EventRecorder, func()) {
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.kube.CoreV1().Events("")})
	return broadcaster.NewRecorder(eventScheme(), from), broadcaster.Shutdown
}

// serveEndpoints serves /metrics on --metrics-bind-address, and /healthz and
// /readyz (ready: nil when ready) on --health-bind-address, in g.
func serveEndpoints(ctx context.Context, g *errgroup.Group, o *options.Options, m *metrics.Metrics, ready func() error) {
	if o.MetricsAddress != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
		serve(ctx, g, "metrics", o.MetricsAddress, mux)
	}
	if o.HealthAddress != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			if err := ready(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok"))
		})
		serve(ctx, g, "health", o.HealthAddress, mux)
	}
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

func (p *plannedSet) PlannedOver() []source.Image { return p.reader.PlannedOver() }

func (p *plannedSet) Current(img string) (string, time.Time) { return p.reader.Current(img) }

func (p *plannedSet) Pending(img string) bool { return p.reader.Pending(img) }

// serve runs an HTTP server in g and shuts it down gracefully when ctx ends.
func serve(ctx context.Context, g *errgroup.Group, name, addr string, h http.Handler) {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	g.Go(func() error {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("%s server on %s: %w", name, addr, err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	})
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster config (outside a pod, pass --kubeconfig): %w", err)
	}
	return cfg, nil
}
