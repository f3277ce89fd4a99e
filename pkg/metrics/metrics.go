// Package metrics defines the daemon's Prometheus metrics. They describe this
// node only: every daemon exports its own node's figures, and Prometheus
// adds the node through its scrape target labels.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
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
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.WantedImages, m.Images, m.PrefetchPods, m.PullDuration,
		m.SourceErrors, m.ReconcileErrors, m.PodsCreated, m.PodsDeleted,
	)
	return m
}
