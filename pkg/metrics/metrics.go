// Package metrics defines the daemon's and the planner's Prometheus metrics.
// A node daemon's describe its node only (Prometheus adds the node through
// its scrape target labels); the planner's, the wanted set.
package metrics

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	clientmetrics "k8s.io/client-go/tools/metrics"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

const namespace = "image_cache"

// Metrics holds the collectors the daemon updates.
type Metrics struct {
	Registry *prometheus.Registry

	// WantedImages is the number of distinct images all sources want.
	WantedImages prometheus.Gauge
	// Images counts this node's wanted images by state (cached, pulling, failed, pending).
	Images *prometheus.GaugeVec
	// PrefetchPods is the number of prefetch pods on this node.
	PrefetchPods prometheus.Gauge
	// PullDuration observes, per cached image, the time from its prefetch
	// pod's creation to its container's exit: the time the node took to get it.
	PullDuration prometheus.Histogram
	// SourceErrors counts problems a source met: unreadable objects, invalid
	// references, a missing CRD, failed watches.
	SourceErrors *prometheus.CounterVec
	// ReconcileErrors counts syncs that failed and were retried.
	ReconcileErrors prometheus.Counter
	// PodsCreated and PodsDeleted count the prefetch pods this daemon created and deleted.
	PodsCreated prometheus.Counter
	PodsDeleted prometheus.Counter
	// PodsRejected counts the prefetch pods found in phase Failed (most
	// often rejected by the kubelet at admission: OutOfpods, NodeAffinity)
	// and replaced.
	PodsRejected prometheus.Counter
	// ImagesOverLimit is the number of wanted images this node leaves out
	// because of --max-images, --max-prefetch-pods or the node's pod capacity.
	ImagesOverLimit prometheus.Gauge
	// SourceHealthy is 1 for a source that reads what it should (synced,
	// no failing LIST or WATCH; a missing CRD counts as healthy), else 0.
	SourceHealthy *prometheus.GaugeVec
	// SourceObjectsSkipped counts, per source, the objects read with
	// problems (undecodable, too large, too complex, invalid images).
	SourceObjectsSkipped *prometheus.GaugeVec
	// NodeWarming is 1 while this node is not warm (a wanted image is not
	// cached), else 0: summed over daemons, the nodes warming.
	NodeWarming prometheus.Gauge
	// PullsRefused counts the prefetch pulls the kubelet refused under its
	// registryPullQPS/registryBurst limit ("pull QPS exceeded"): the
	// pacing's goal is 0.
	PullsRefused prometheus.Counter
	// PullsPaced is the number of pulls waiting for the kubelet's pull
	// budget at the last sync.
	PullsPaced prometheus.Gauge
	// WarmUpDuration observes, once per daemon life, the time from the
	// node's creation until every wanted image was cached on it.
	WarmUpDuration prometheus.Histogram
	// StaleImages is the number of wanted images this node holds under
	// another digest than the one the planner read for their tag: summed
	// over the daemons, the stale (node, image) pairs.
	StaleImages prometheus.Gauge
	// UncheckedImages is the number of the planner's wanted tags whose
	// digest it could not read (they are pulled again every resync).
	UncheckedImages prometheus.Gauge
	// The planner's: the size of the wanted set it published last, and how
	// many times it wrote one.
	WantedSetBytes  prometheus.Gauge
	WantedSetWrites prometheus.Counter
}

// apiRequests counts the process's requests to the API server by method
// and code, as client-go reports them: one counter for the process (client-go
// takes one hook, once), in every registry New makes.
var (
	apiRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "api_requests_total",
		Help: "Requests to the API server by HTTP method and code (\"<error>\": none came back); POST, PUT, PATCH and DELETE are the writes.",
	}, []string{"method", "code"})
	hookOnce sync.Once
)

type requestResult struct{}

func (requestResult) Increment(_ context.Context, code, method, _ string) {
	apiRequests.WithLabelValues(method, code).Inc()
}

// SetSourceHealth sets the gauges of the sources' health: healthy or not,
// and the objects each skipped.
func (m *Metrics) SetSourceHealth(sources []wire.Health) {
	for _, s := range sources {
		ok := 0.0
		if s.OK() {
			ok = 1
		}
		m.SourceHealthy.WithLabelValues(s.Source).Set(ok)
		m.SourceObjectsSkipped.WithLabelValues(s.Source).Set(float64(s.Skipped))
	}
}

// New returns the metrics registered on a fresh registry, together with the
// Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		WantedImages: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "wanted_images",
			Help: "Distinct images that the sources want cached.",
		}),
		Images: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "images",
			Help: "Wanted images on this node by state: cached, pulling, failed or pending.",
		}, []string{"state"}),
		PrefetchPods: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "prefetch_pods",
			Help: "Prefetch pods on this node.",
		}),
		PullDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "pull_duration_seconds",
			Help:    "Time from a prefetch pod's creation until its image was on the node.",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 12),
		}),
		SourceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "source_errors_total",
			Help: "Problems met by a source of wanted images (malformed objects, invalid references, missing CRDs, failed watches).",
		}, []string{"source"}),
		ReconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "reconcile_errors_total",
			Help: "Syncs of this node's prefetch pods that failed and were retried.",
		}),
		PodsCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "prefetch_pods_created_total",
			Help: "Prefetch pods created on this node.",
		}),
		PodsDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "prefetch_pods_deleted_total",
			Help: "Prefetch pods deleted on this node.",
		}),
		PodsRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "prefetch_pods_rejected_total",
			Help: "Prefetch pods of this node found in phase Failed (most often rejected by the kubelet at admission) and replaced.",
		}),
		SourceHealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "source_healthy",
			Help: "1 if the source reads what it should (synced, no failing LIST or WATCH), else 0.",
		}, []string{"source"}),
		SourceObjectsSkipped: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "source_objects_skipped",
			Help: "Objects of the source read with problems (undecodable, too large, too complex, invalid images); each has a Warning Event.",
		}, []string{"source"}),
		NodeWarming: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "node_warming",
			Help: "1 while this node is not warm (a wanted image is not cached on it), else 0.",
		}),
		WarmUpDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "warm_up_duration_seconds",
			Help:    "Time from the node's creation until every wanted image was cached on it.",
			Buckets: prometheus.ExponentialBuckets(5, 2, 10),
		}),
		PullsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "pulls_refused_total",
			Help: "Prefetch pulls the kubelet refused under its registryPullQPS/registryBurst limit (\"pull QPS exceeded\"); the daemon's pacing aims at 0.",
		}),
		PullsPaced: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "pulls_paced",
			Help: "Pulls waiting for the kubelet's pull budget (--registry-pull-qps, --registry-burst).",
		}),
		ImagesOverLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "images_over_limit",
			Help: "Wanted images this node does not cache because of --max-images, --max-prefetch-pods or the node's pod capacity (the planner: left out of the wanted set).",
		}),
		StaleImages: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "stale_images",
			Help: "Wanted images this node holds under another digest than the one their tag points to now (the planner's check): summed over nodes, the stale (node, image) pairs.",
		}),
		UncheckedImages: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "unchecked_images",
			Help: "The planner: wanted tags whose digest it could not read from the registry; nodes pull them again every --resync-period.",
		}),
		WantedSetBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "wanted_set_bytes",
			Help: "The planner: size of the wanted set it last built, compressed, as its ConfigMaps hold it (configmap/image-cache-daemon-wanted and the parts it names).",
		}),
		WantedSetWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "wanted_set_writes_total",
			Help: "The planner: writes of the wanted set (only when it changed).",
		}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.WantedImages, m.Images, m.PrefetchPods, m.PullDuration,
		m.SourceErrors, m.ReconcileErrors, m.PodsCreated, m.PodsDeleted,
		m.PodsRejected, m.ImagesOverLimit, m.SourceHealthy, m.SourceObjectsSkipped, m.NodeWarming, m.WarmUpDuration,
		m.PullsRefused, m.PullsPaced, m.WantedSetBytes, m.WantedSetWrites, m.StaleImages, m.UncheckedImages,
		apiRequests,
	)
	hookOnce.Do(func() { clientmetrics.Register(clientmetrics.RegisterOpts{RequestResult: requestResult{}}) })
	return m
}
