// Package install is the one source of the objects that make up an
// installation: the plugin's install command applies them, and
// manifests/install.yaml is generated from them.
package install

import (
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/dcherman/image-cache-daemon/pkg/options"
	"github.com/dcherman/image-cache-daemon/pkg/version"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/warm"
)

// Names of the installed objects.
const (
	Name             = "image-cache-daemon"
	DefaultNamespace = "image-cache-daemon"
	// DefaultConfigMap is the image list that `kubectl imagecache add` edits.
	DefaultConfigMap = "image-cache-daemon-images"
	// ContainerName is the daemon's container in the DaemonSet.
	ContainerName = "daemon"
	// UID the daemon and the warden run as (nonroot).
	UID = 65532
)

// Options are what a user may choose about an installation.
type Options struct {
	Namespace string
	// Image is the daemon image (which also holds the warden).
	Image           string
	ImagePullPolicy corev1.PullPolicy
	// Tolerations of the DaemonSet (and so, by default, of the prefetch
	// pods); nil tolerates every taint, so every node gets its images.
	Tolerations       []corev1.Toleration
	NodeSelector      map[string]string
	PriorityClassName string
	ImagePullSecrets  []string
	ResyncPeriod      time.Duration
	// Source switches, as the daemon's --watch-* flags.
	WatchConfigMaps                   bool
	WatchArgoWorkflowTemplates        bool
	WatchArgoClusterWorkflowTemplates bool
	WatchArgoCronWorkflows            bool
	// SourceNamespaces limits the namespaced sources (ConfigMaps,
	// WorkflowTemplates, CronWorkflows) to these namespaces and the install
	// namespace, each read through a Role there instead of the ClusterRole;
	// empty reads every namespace.
	SourceNamespaces []string
	// StaticImages are cached whatever the other sources say (--image).
	StaticImages []string
	// StartupTaint is the taint the daemon removes from its node once it is
	// warm (--startup-taint); WarmTimeout bounds how long it is kept.
	StartupTaint string
	WarmTimeout  time.Duration
	// RegistryPullQPS and RegistryBurst are the kubelet's registryPullQPS
	// and registryBurst on the nodes, which the daemon paces its pulls under
	// (--registry-pull-qps, --registry-burst; QPS 0: no pacing).
	RegistryPullQPS float64
	RegistryBurst   int
	// ExtraArgs are passed to the daemon as they are.
	ExtraArgs []string
}

// DefaultOptions returns the options of a default installation of release v.
func DefaultOptions(v string) Options {
	return Options{
		Namespace:                         DefaultNamespace,
		Image:                             version.Image(v),
		ImagePullPolicy:                   corev1.PullIfNotPresent,
		ResyncPeriod:                      15 * time.Minute,
		WarmTimeout:                       warm.DefaultTimeout,
		RegistryPullQPS:                   options.DefaultRegistryPullQPS,
		RegistryBurst:                     options.DefaultRegistryBurst,
		WatchConfigMaps:                   true,
		WatchArgoWorkflowTemplates:        true,
		WatchArgoClusterWorkflowTemplates: true,
		WatchArgoCronWorkflows:            true,
	}
}

// RBACName is the name of the RBAC objects an installation in namespace
// keeps outside its namespace: its ClusterRole and ClusterRoleBinding, and
// its Role and RoleBinding in each source namespace. Two installations
// never share one, so installing or uninstalling one leaves the other's
// permissions alone. (A ':' is valid in RBAC names, as in system:...; a
// test checks the longest namespace.)
func RBACName(namespace string) string {
	return Name + ":" + namespace
}

// sourceNamespaces are the namespaces the namespaced sources read, nil for
// all of them. The install namespace is always among them when they are
// limited: it holds the image list that kubectl imagecache add edits.
func (o Options) sourceNamespaces() []string {
	if len(o.SourceNamespaces) == 0 {
		return nil
	}
	out := []string{o.Namespace}
	for _, ns := range o.SourceNamespaces {
		if !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out
}

// A source the planner may read, with the API resource its informer lists
// and watches (pkg/source, sources.go).
type sourceResource struct {
	group, resource string
	namespaced      bool
	watched         func(Options) bool
}

var sourceResources = []sourceResource{
	{"", "configmaps", true, func(o Options) bool { return o.WatchConfigMaps }},
	{"argoproj.io", "workflowtemplates", true, func(o Options) bool { return o.WatchArgoWorkflowTemplates }},
	{"argoproj.io", "clusterworkflowtemplates", false, func(o Options) bool { return o.WatchArgoClusterWorkflowTemplates }},
	{"argoproj.io", "cronworkflows", true, func(o Options) bool { return o.WatchArgoCronWorkflows }},
}

// ReadsNamespacedSources says whether o watches a namespaced source at all
// (SourceNamespaces limits only those).
func (o Options) ReadsNamespacedSources() bool {
	for _, s := range sourceResources {
		if s.namespaced && s.watched(o) {
			return true
		}
	}
	return false
}

// Objects returns every object of an installation, in the order they are
// applied (namespace first, the workloads last), each with its TypeMeta
// set: the chart rendered with o's values.
func Objects(o Options) ([]runtime.Object, error) {
	return Render(o.Namespace, o.Values())
}

// PlannerRBACName is the name of the planner's ClusterRole and
// ClusterRoleBinding of an installation in namespace.
func PlannerRBACName(namespace string) string {
	return wanted.Planner + ":" + namespace
}

// sourceRBAC is the Role and RoleBinding that let the planner of the
// installation in installNS read its namespaced sources in namespace, with
// only their kinds and names (what Delete needs).
func sourceRBAC(installNS, namespace string) []runtime.Object {
	meta := metav1.ObjectMeta{Name: RBACName(installNS), Namespace: namespace}
	return []runtime.Object{
		&rbacv1.Role{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"}, ObjectMeta: meta},
		&rbacv1.RoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"}, ObjectMeta: meta},
	}
}

// Unstructured converts obj for a server-side apply, without the empty
// fields (creationTimestamp, status) that a typed object always carries and
// that an applier must not claim.
func Unstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("converting %T: %w", obj, err)
	}
	delete(m, "status")
	if spec, ok := m["spec"].(map[string]any); ok && len(spec) == 0 {
		delete(m, "spec")
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	unstructured.RemoveNestedField(m, "spec", "template", "metadata", "creationTimestamp")
	return &unstructured.Unstructured{Object: m}, nil
}
