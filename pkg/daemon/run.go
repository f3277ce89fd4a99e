// Package daemon is the process plumbing shared by the node daemon
// (pkg/node) and the planner (pkg/planner): the API clients and the daemon's
// own pod (Connect), the Event recorder, the Reporter of objects' problems,
// the /metrics, /healthz and /readyz endpoints (ServeEndpoints) and the
// Lease election (Election).
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
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/dcherman/image-cache-daemon/pkg/metrics"
	"github.com/dcherman/image-cache-daemon/pkg/options"
	"github.com/dcherman/image-cache-daemon/pkg/version"
)

// SourceGrace is how long a daemon, node or planner, waits for every source
// before it works with those that have synced.
const SourceGrace = time.Minute

// Clients are what a daemon, node or planner, talks to the API server with.
type Clients struct {
	Config *rest.Config
	Kube   kubernetes.Interface
	Dyn    dynamic.Interface
	// Self is the daemon's own pod (--pod-namespace, --pod-name).
	Self *corev1.Pod
}

// Connect builds the clients, as agent, and reads the daemon's own pod.
func Connect(ctx context.Context, o *options.Options, agent string) (*Clients, error) {
	cfg, err := restConfig(o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = agent + "/" + version.String()
	c := &Clients{Config: cfg}
	if c.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	if c.Dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("creating the dynamic client: %w", err)
	}
	if c.Self, err = c.Kube.CoreV1().Pods(o.PodNamespace).Get(ctx, o.PodName, metav1.GetOptions{}); err != nil {
		return nil, fmt.Errorf("reading this daemon's own pod %s/%s (--pod-namespace, --pod-name): %w", o.PodNamespace, o.PodName, err)
	}
	return c, nil
}

// Recorder records Events as from; stop flushes and stops it.
func (c *Clients) Recorder(ctx context.Context, from corev1.EventSource) (record.EventRecorder, func()) {
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.Kube.CoreV1().Events("")})
	return broadcaster.NewRecorder(eventScheme(), from), broadcaster.Shutdown
}

// ServeEndpoints serves /metrics on --metrics-bind-address, and /healthz and
// /readyz (ready: nil when ready) on --health-bind-address, in g.
func ServeEndpoints(ctx context.Context, g *errgroup.Group, o *options.Options, m *metrics.Metrics, ready func() error) {
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
