// Package options holds the daemon's command-line options: their flags,
// defaults and validation. It is a leaf the plugin can import to read an
// installed daemon's arguments exactly as the daemon does, without linking
// the daemon's controller or metrics.
package options

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/source"
)

// Options are the daemon's settings. The flags of the original daemon keep
// their names, types and defaults (except --warden-image and the ignored
// --pod-uid, see AddFlags); the pod fields are filled from the downward API
// by the shipped manifest.
type Options struct {
	ConfigMapSelector string
	Images            []string
	NodeName          string
	PodName           string
	PodNamespace      string
	ResyncPeriod      time.Duration
	WardenImage       string

	WatchArgoClusterWorkflowTemplates bool
	WatchArgoCronWorkflows            bool
	WatchArgoWorkflowTemplates        bool
	WatchConfigMaps                   bool
	// SourceNamespaces limits the namespaced sources to these namespaces.
	SourceNamespaces []string

	// Prefetch pod settings, so that prefetching reaches every node that
	// workloads reach, private registries included.
	PrefetchTolerations   string
	PrefetchPriorityClass string
	ImagePullSecrets      []string
	BatchSize             int

	// Bounds on what one node caches, whatever the sources ask: a single
	// ConfigMap can name tens of thousands of images.
	MaxImages       int
	MaxPrefetchPods int
	// StartupTaint is the taint the daemon removes from its node once the
	// node is warm, images failed or WarmTimeout passed ("" removes none).
	StartupTaint string
	// WarmTimeout is how long after the node's creation a startup taint is
	// kept for images still pulling (0: no limit).
	WarmTimeout time.Duration
	// FromPlanner: the node daemon reads the wanted set the planner
	// publishes (pkg/wanted) instead of the sources.
	FromPlanner bool
	// RegistryPullQPS and RegistryBurst are the kubelet's registryPullQPS
	// and registryBurst on the nodes: the daemon paces its pulls under them.
	RegistryPullQPS float64
	RegistryBurst   int
	// NodeSweepInterval is how often the daemon holding the reporter Lease
	// removes the prefetch pods of nodes the DaemonSet left (hidden: tests
	// shorten it).
	NodeSweepInterval time.Duration

	MetricsAddress string
	HealthAddress  string
	Kubeconfig     string
}

// The kubelet's own defaults for registryPullQPS and registryBurst.
const (
	DefaultRegistryPullQPS = 5
	DefaultRegistryBurst   = 10
)

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{
		ConfigMapSelector:                 source.DefaultConfigMapSelector,
		ResyncPeriod:                      15 * time.Minute,
		WatchArgoClusterWorkflowTemplates: true,
		WatchArgoCronWorkflows:            true,
		WatchArgoWorkflowTemplates:        true,
		WatchConfigMaps:                   true,
		BatchSize:                         20,
		MaxImages:                         1000,
		MaxPrefetchPods:                   50,
		WarmTimeout:                       10 * time.Minute,
		RegistryPullQPS:                   DefaultRegistryPullQPS,
		RegistryBurst:                     DefaultRegistryBurst,
		NodeSweepInterval:                 2 * time.Minute,
		MetricsAddress:                    ":8080",
		HealthAddress:                     ":8081",
	}
}

// AddFlags registers the options on fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.ConfigMapSelector, "configmap-selector", o.ConfigMapSelector, "The selector to use when monitoring for ConfigMap sources")
	fs.StringArrayVar(&o.Images, "image", o.Images, "Images that should be pre-fetched")
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "The node name to pull to")
	fs.StringVar(&o.PodName, "pod-name", o.PodName, "The pod name")
	fs.StringVar(&o.PodNamespace, "pod-namespace", o.PodNamespace, "The namespace this pod is running in")
	fs.BoolVar(&o.FromPlanner, "from-planner", o.FromPlanner, "Cache the wanted set the planner publishes in this namespace (image-cache-daemon planner) instead of reading the sources: the node daemon then needs no right to read them")
	// --pod-uid is the original's, and nothing needs it: the daemon reads
	// its own pod by name. Installs made before it was dropped from the
	// manifest still pass it, so it is accepted, hidden and ignored (not
	// deprecated: pflag would warn on every read of such an install's
	// arguments, kubectl imagecache list's included).
	fs.String("pod-uid", "", "Ignored (the original daemon's; kept so that older manifests still start)")
	_ = fs.MarkHidden("pod-uid")
	fs.DurationVar(&o.ResyncPeriod, "resync-period", o.ResyncPeriod, "How often the daemon should re-pull images from all of the sources.  Set to 0 to disable.")
	fs.StringVar(&o.WardenImage, "warden-image", o.WardenImage, "The image that copies a binary to pulled containers to replace the entrypoint (default: the image this daemon runs from)")
	fs.BoolVar(&o.WatchArgoClusterWorkflowTemplates, "watch-argo-cluster-workflow-templates", o.WatchArgoClusterWorkflowTemplates, "Whether or not to watch cluster workflow templates")
	fs.BoolVar(&o.WatchArgoCronWorkflows, "watch-argo-cron-workflows", o.WatchArgoCronWorkflows, "Whether or not to watch cron workflows")
	fs.BoolVar(&o.WatchArgoWorkflowTemplates, "watch-argo-workflow-templates", o.WatchArgoWorkflowTemplates, "Whether or not to watch workflow templates")
	fs.StringArrayVar(&o.SourceNamespaces, "source-namespace", o.SourceNamespaces, "Read ConfigMaps, WorkflowTemplates and CronWorkflows only in this namespace (repeatable; default: every namespace)")
	fs.BoolVar(&o.WatchConfigMaps, "watch-configmaps", o.WatchConfigMaps, "Whether or not to watch ConfigMaps for images to pull.  Must match the --config-map-selector")

	fs.StringVar(&o.PrefetchTolerations, "prefetch-tolerations", o.PrefetchTolerations, "Tolerations of the prefetch pods, as a JSON or YAML list (default: the tolerations of this daemon's own pod)")
	fs.StringVar(&o.PrefetchPriorityClass, "prefetch-priority-class", o.PrefetchPriorityClass, "PriorityClass of the prefetch pods")
	fs.StringArrayVar(&o.ImagePullSecrets, "image-pull-secret", o.ImagePullSecrets, "Name of a Secret in the daemon's namespace that prefetch pods use to pull (repeatable)")
	fs.IntVar(&o.BatchSize, "batch-size", o.BatchSize, "Most images one prefetch pod pulls; fewer, larger pods mean fewer pod sandboxes per node")
	fs.IntVar(&o.MaxImages, "max-images", o.MaxImages, "Most images cached on each node; when the sources want more, the --image images come first, then each namespace gets its turn (round-robin), and within a namespace each object, until the limit; the rest is reported, and an object's entries past this many are not even read")
	fs.StringVar(&o.StartupTaint, "startup-taint", o.StartupTaint, "Key of a taint to remove from this node once every wanted image is cached there, an image failed, or --warm-timeout passed (e.g. imagecache.dcherman.github.io/warming; default: none)")
	fs.DurationVar(&o.WarmTimeout, "warm-timeout", o.WarmTimeout, "Longest time after the node's creation that --startup-taint is kept while images are pulling; 0 keeps it until they are cached or failed")
	fs.Float64Var(&o.RegistryPullQPS, "registry-pull-qps", o.RegistryPullQPS, "The kubelet's registryPullQPS on the nodes (its default is 5): prefetch pulls are paced under it, since the kubelet fails pulls over it with \"pull QPS exceeded\" and a long back-off; 0 if the kubelet does not limit pulls")
	fs.IntVar(&o.RegistryBurst, "registry-burst", o.RegistryBurst, "The kubelet's registryBurst on the nodes (its default is 10), with --registry-pull-qps")
	fs.DurationVar(&o.NodeSweepInterval, "node-sweep-interval", o.NodeSweepInterval, "How often one daemon removes the prefetch pods of nodes the DaemonSet no longer targets, and how old they must be")
	_ = fs.MarkHidden("node-sweep-interval")
	fs.IntVar(&o.MaxPrefetchPods, "max-prefetch-pods", o.MaxPrefetchPods, "Most prefetch pods on each node, never more than a quarter of the node's allocatable pods; with --batch-size it also bounds the images cached")
	fs.StringVar(&o.MetricsAddress, "metrics-bind-address", o.MetricsAddress, "Address of the Prometheus metrics endpoint (/metrics); empty disables it")
	fs.StringVar(&o.HealthAddress, "health-bind-address", o.HealthAddress, "Address of the /healthz and /readyz endpoints; empty disables them")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to a kubeconfig, when not running in a pod")
}

// Validate checks the options; every error names the flag at fault.
func (o *Options) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	for _, req := range []struct{ flag, value string }{
		{"node-name", o.NodeName}, {"pod-name", o.PodName}, {"pod-namespace", o.PodNamespace},
	} {
		if req.value == "" {
			bad(req.flag, "is required (the manifest sets it from the downward API)")
		}
	}
	if _, err := labels.Parse(o.ConfigMapSelector); err != nil {
		bad("configmap-selector", "%q is not a label selector: %v", o.ConfigMapSelector, err)
	}
	for _, img := range o.Images {
		if _, err := imageref.Normalize(img); err != nil {
			bad("image", "%v", err)
		}
	}
	if o.WardenImage != "" {
		if _, err := imageref.Normalize(o.WardenImage); err != nil {
			bad("warden-image", "%v", err)
		}
	}
	if o.ResyncPeriod < 0 {
		bad("resync-period", "must be 0 (off) or positive, got %s", o.ResyncPeriod)
	} else if o.ResyncPeriod > 0 && o.ResyncPeriod < 10*time.Second {
		bad("resync-period", "%s is too short: every resync pulls every image again; use at least 10s (minutes in production)", o.ResyncPeriod)
	}
	if _, err := o.Tolerations(); err != nil {
		bad("prefetch-tolerations", "%v", err)
	}
	if o.PrefetchPriorityClass != "" {
		for _, msg := range validation.IsDNS1123Subdomain(o.PrefetchPriorityClass) {
			bad("prefetch-priority-class", "%q: %s", o.PrefetchPriorityClass, msg)
		}
	}
	for _, s := range o.ImagePullSecrets {
		for _, msg := range validation.IsDNS1123Subdomain(s) {
			bad("image-pull-secret", "%q: %s", s, msg)
		}
	}
	for _, ns := range o.SourceNamespaces {
		for _, msg := range validation.IsDNS1123Label(ns) {
			bad("source-namespace", "%q: %s", ns, msg)
		}
	}
	if o.StartupTaint != "" {
		for _, msg := range validation.IsQualifiedName(o.StartupTaint) {
			bad("startup-taint", "%q is not a taint key: %s", o.StartupTaint, msg)
		}
	}
	if o.WarmTimeout < 0 {
		bad("warm-timeout", "must not be negative, got %s", o.WarmTimeout)
	}
	if err := ValidatePullLimit(o.RegistryPullQPS, o.RegistryBurst); err != nil {
		errs = append(errs, err)
	}
	if o.NodeSweepInterval < time.Second {
		bad("node-sweep-interval", "must be at least 1s, got %s", o.NodeSweepInterval)
	}
	if o.BatchSize < 1 || o.BatchSize > 100 {
		bad("batch-size", "must be between 1 and 100, got %d", o.BatchSize)
	}
	for _, limit := range []struct {
		flag  string
		value int
	}{{"max-images", o.MaxImages}, {"max-prefetch-pods", o.MaxPrefetchPods}} {
		if limit.value < 1 {
			bad(limit.flag, "must be at least 1, got %d", limit.value)
		}
	}
	for _, a := range []struct{ flag, value string }{
		{"metrics-bind-address", o.MetricsAddress}, {"health-bind-address", o.HealthAddress},
	} {
		if a.value == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.value); err != nil {
			bad(a.flag, "%q is not host:port: %v", a.value, err)
		}
	}
	return errors.Join(errs...)
}

// ValidatePullLimit checks --registry-pull-qps and --registry-burst, for the
// daemon and for the plugin's install.
func ValidatePullLimit(qps float64, burst int) error {
	if qps < 0 || qps > 1000 {
		return fmt.Errorf("--registry-pull-qps: must be between 0 (the kubelet does not limit pulls) and 1000, got %g", qps)
	}
	if qps > 0 && (burst < 1 || burst > 10000) {
		return fmt.Errorf("--registry-burst: must be between 1 and 10000 with --registry-pull-qps above 0, got %d", burst)
	}
	return nil
}

// Tolerations parses --prefetch-tolerations; nil means "inherit the daemon
// pod's own tolerations".
func (o *Options) Tolerations() ([]corev1.Toleration, error) {
	if strings.TrimSpace(o.PrefetchTolerations) == "" {
		return nil, nil
	}
	var ts []corev1.Toleration
	if err := yaml.UnmarshalStrict([]byte(o.PrefetchTolerations), &ts); err != nil {
		return nil, fmt.Errorf("not a list of tolerations: %w", err)
	}
	for i, t := range ts {
		if t.Operator != "" && t.Operator != corev1.TolerationOpExists && t.Operator != corev1.TolerationOpEqual {
			return nil, fmt.Errorf("toleration %d: operator %q is neither Exists nor Equal", i, t.Operator)
		}
		if t.Operator == corev1.TolerationOpExists && t.Value != "" {
			return nil, fmt.Errorf("toleration %d: operator Exists takes no value", i)
		}
	}
	return ts, nil
}

// SourceConfig is the configuration of the sources these options select;
// the plugin's list command reads an installed daemon's arguments with it.
func (o *Options) SourceConfig() (source.Config, error) {
	static := make([]string, 0, len(o.Images))
	for _, img := range o.Images {
		n, err := imageref.Normalize(img)
		if err != nil {
			return source.Config{}, fmt.Errorf("--image: %w", err)
		}
		static = append(static, n)
	}
	return source.Config{
		Static:                   static,
		ConfigMaps:               o.WatchConfigMaps,
		Selector:                 o.ConfigMapSelector,
		WorkflowTemplates:        o.WatchArgoWorkflowTemplates,
		ClusterWorkflowTemplates: o.WatchArgoClusterWorkflowTemplates,
		CronWorkflows:            o.WatchArgoCronWorkflows,
		Namespaces:               o.SourceNamespaces,
		MaxImages:                o.MaxImages,
	}, nil
}
