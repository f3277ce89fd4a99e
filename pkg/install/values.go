package install

import (
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Values are the Helm chart's values (charts/image-cache-daemon): what a
// user may choose about an installation, whether they install with Helm or
// with kubectl imagecache install, which renders the same chart with
// Options.Values. The chart's values.yaml, values.schema.json and the
// reference in its README are generated from this type and DefaultValues
// (ChartFiles), so a wrong value fails at helm install with its name.
type Values struct {
	Image             ImageValues                 `json:"image" jsonschema_description:"The image of the node daemon and the planner, which also holds the warden."`
	ImagePullSecrets  []string                    `json:"imagePullSecrets" jsonschema_description:"Names of Secrets in the release namespace for pulling the daemon image and the images it caches (the daemon's --image-pull-secret)."`
	Tolerations       []corev1.Toleration         `json:"tolerations" jsonschema_description:"Tolerations of the DaemonSet, the planner and the prefetch pods. The default tolerates every taint, so that every node gets its images."`
	NodeSelector      map[string]string           `json:"nodeSelector" jsonschema_description:"Run the daemon (and so cache images) only on nodes with these labels."`
	PriorityClassName string                      `json:"priorityClassName" jsonschema_description:"PriorityClass of the daemon, the planner and the prefetch pods."`
	Resources         corev1.ResourceRequirements `json:"resources" jsonschema_description:"Resources of the daemon's and the planner's container. GOMEMLIMIT is 40MiB: keep the memory limit well above it."`
	ResyncPeriod      Duration                    `json:"resyncPeriod" jsonschema_description:"How often every image is pulled again, so that a moved tag is fetched anew, as a Go duration (15m, 1h30m); 0 disables."`
	Sources           SourceValues                `json:"sources" jsonschema_description:"Where the planner finds the images to cache."`
	Images            []string                    `json:"images" jsonschema_description:"Images cached whatever the sources say (the daemon's --image). Most users prefer kubectl imagecache add, which edits an image list."`
	StartupTaint      StartupTaintValues          `json:"startupTaint" jsonschema_description:"A taint new nodes are registered with, which the daemon removes once the node has every wanted image."`
	RegistryPullQPS   float64                     `json:"registryPullQPS" jsonschema:"minimum=0,maximum=1000" jsonschema_description:"The kubelet's registryPullQPS on your nodes (the kubelet's default is 5): the daemon paces its pulls under it. 0 if your kubelets do not limit pulls."`
	RegistryBurst     int                         `json:"registryBurst" jsonschema:"minimum=1,maximum=10000" jsonschema_description:"The kubelet's registryBurst on your nodes (the kubelet's default is 10)."`
	ExtraArgs         []string                    `json:"extraArgs" jsonschema_description:"More flags of the daemon and the planner, passed as they are (for example --max-images=500)."`
	CreateNamespace   bool                        `json:"createNamespace" jsonschema_description:"Make the release namespace part of the release, labelled to enforce the restricted Pod Security profile. kubectl imagecache install sets it; with Helm, leave it false and use --create-namespace (or a namespace you made)."`
	// Enabled and Global are for a parent chart that depends on this one.
	Enabled bool           `json:"enabled" jsonschema_description:"For a parent chart's dependency condition (condition: image-cache-daemon.enabled); this chart does not read it."`
	Global  map[string]any `json:"global,omitempty" jsonschema_description:"A parent chart's global values; not read."`
}

// ImageValues name the daemon image.
type ImageValues struct {
	Repository string            `json:"repository" jsonschema:"minLength=1" jsonschema_description:"The image's repository."`
	Tag        string            `json:"tag" jsonschema_description:"The image's tag; empty: the chart's appVersion (none when a digest is given)."`
	Digest     string            `json:"digest" jsonschema:"pattern=^([a-z0-9]+:[a-f0-9]{32\\,})?$" jsonschema_description:"The image's digest (sha256:...), which pins it."`
	PullPolicy corev1.PullPolicy `json:"pullPolicy" jsonschema:"enum=Always,enum=IfNotPresent,enum=Never" jsonschema_description:"The daemon image's pull policy."`
}

// SourceValues say which sources the planner reads, and where.
type SourceValues struct {
	ConfigMaps                   bool     `json:"configMaps" jsonschema_description:"Read image lists from labelled ConfigMaps."`
	ArgoWorkflowTemplates        bool     `json:"argoWorkflowTemplates" jsonschema_description:"Cache the images of Argo WorkflowTemplates."`
	ArgoClusterWorkflowTemplates bool     `json:"argoClusterWorkflowTemplates" jsonschema_description:"Cache the images of Argo ClusterWorkflowTemplates."`
	ArgoCronWorkflows            bool     `json:"argoCronWorkflows" jsonschema_description:"Cache the images of Argo CronWorkflows."`
	Namespaces                   []string `json:"namespaces" jsonschema_description:"Read ConfigMaps, WorkflowTemplates and CronWorkflows only in these namespaces (which must exist) and the release namespace, with a Role in each instead of a ClusterRole; empty reads every namespace."`
}

// StartupTaintValues is the daemon's --startup-taint and --warm-timeout.
type StartupTaintValues struct {
	Key         string   `json:"key" jsonschema_description:"The taint's key (for example imagecache.dcherman.github.io/warming); empty: no startup taint."`
	WarmTimeout Duration `json:"warmTimeout" jsonschema_description:"The longest a node keeps the taint after its creation while images pull, as a Go duration; 0: until cached or failed."`
}

// Duration is a Go duration as the daemon's flags take it (15m, 1h30m), or
// 0; the schema also takes the number 0, which --set writes for "0".
type Duration string

// defaultResources are the daemon's and the planner's: the daemon's live
// heap is about 20 MiB even with thousands of watched objects.
func defaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("48Mi"),
		},
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
}

// DefaultValues are the chart's values.yaml: a default installation of
// the chart's appVersion (an empty tag).
func DefaultValues() Values {
	v := DefaultOptions("").Values()
	v.Image.Tag = ""
	v.CreateNamespace = false
	return v
}

// everyTaint is the default toleration: every node gets its images.
var everyTaint = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}

// Values are the chart's values that install o.
func (o Options) Values() Values {
	repo, tag, digest := splitImage(o.Image)
	tolerations := o.Tolerations
	if tolerations == nil {
		tolerations = everyTaint
	}
	burst := o.RegistryBurst
	if o.RegistryPullQPS == 0 {
		// Not read without pacing (the plugin takes any), and the schema
		// wants one the daemon would take.
		burst = DefaultOptions("").RegistryBurst
	}
	return Values{
		Image:             ImageValues{Repository: repo, Tag: tag, Digest: digest, PullPolicy: o.ImagePullPolicy},
		ImagePullSecrets:  nonNil(o.ImagePullSecrets),
		Tolerations:       tolerations,
		NodeSelector:      nonNilMap(o.NodeSelector),
		PriorityClassName: o.PriorityClassName,
		Resources:         defaultResources(),
		ResyncPeriod:      Duration(shortDuration(o.ResyncPeriod)),
		Sources: SourceValues{
			ConfigMaps:                   o.WatchConfigMaps,
			ArgoWorkflowTemplates:        o.WatchArgoWorkflowTemplates,
			ArgoClusterWorkflowTemplates: o.WatchArgoClusterWorkflowTemplates,
			ArgoCronWorkflows:            o.WatchArgoCronWorkflows,
			Namespaces:                   nonNil(o.SourceNamespaces),
		},
		Images:          nonNil(o.StaticImages),
		StartupTaint:    StartupTaintValues{Key: o.StartupTaint, WarmTimeout: Duration(shortDuration(o.WarmTimeout))},
		RegistryPullQPS: o.RegistryPullQPS,
		RegistryBurst:   burst,
		ExtraArgs:       nonNil(o.ExtraArgs),
		CreateNamespace: true,
		Enabled:         true,
	}
}

// shortDuration writes d as a person would: 15m, 1h30m, 0 (Go writes
// 15m0s, 1h30m0s, 0s); the daemon reads both.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if s == "0s" {
		s = "0"
	}
	return s
}

// nonNil makes an absent list an empty one, as values.yaml writes it.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// splitImage splits an image reference into the chart's repository, tag
// and digest. A reference with neither tag nor digest means its latest
// tag, which the chart must be told (an empty tag is its appVersion).
func splitImage(ref string) (repo, tag, digest string) {
	repo, digest, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo, tag = repo[:i], repo[i+1:]
	}
	if tag == "" && digest == "" {
		tag = "latest"
	}
	return repo, tag, digest
}
