// Package install is the one source of the objects that make up an
// installation: the plugin's install command applies them, and
// manifests/install.yaml is generated from them.
package install

import (
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/version"
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
	// StaticImages are cached whatever the other sources say (--image).
	StaticImages []string
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
		WatchConfigMaps:                   true,
		WatchArgoWorkflowTemplates:        true,
		WatchArgoClusterWorkflowTemplates: true,
		WatchArgoCronWorkflows:            true,
	}
}

func labels(component string) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":      Name,
		"app.kubernetes.io/part-of":   Name,
		"app.kubernetes.io/component": component,
	}
}

// Objects returns every object of an installation, in the order they are
// applied (namespace first, the workload last), each with its TypeMeta set.
func Objects(o Options) []runtime.Object {
	ns := o.Namespace
	meta := func(name, component string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels(component)}
	}
	clusterMeta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Labels: labels("rbac")}
	}
	namespace := &corev1.Namespace{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
			"app.kubernetes.io/part-of": Name,
			// The daemon and its prefetch pods meet the restricted profile;
			// enforcing it here proves it on every install.
			"pod-security.kubernetes.io/enforce": "restricted",
		}},
	}
	sa := &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: meta(Name, "daemon"),
	}
	// Cluster-wide: read the sources, write Events about them.
	clusterRole := &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: clusterMeta(Name),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflowtemplates", "clusterworkflowtemplates", "cronworkflows"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
		},
	}
	clusterBinding := &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: clusterMeta(Name),
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: ns}},
	}
	// In its own namespace only: manage the prefetch pods, read its own pod.
	role := &rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
		ObjectMeta: meta(Name, "rbac"),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
		},
	}
	binding := &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: meta(Name, "rbac"),
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: ns}},
	}
	images := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: meta(DefaultConfigMap, "images"),
		Data:       map[string]string{source.DefaultKey: "[]\n"},
	}
	return []runtime.Object{namespace, sa, clusterRole, clusterBinding, role, binding, images, daemonSet(o)}
}

// Downward API variables the daemon's flags are filled from. The flag that
// reads each is checked against this list by a test, so the manifest and
// the daemon cannot disagree (the original did, twice).
var downwardEnv = []struct{ env, field, flag string }{
	{"NODE_NAME", "spec.nodeName", "node-name"},
	{"POD_NAME", "metadata.name", "pod-name"},
	{"POD_NAMESPACE", "metadata.namespace", "pod-namespace"},
	{"POD_UID", "metadata.uid", "pod-uid"},
}

// Args returns the daemon's command-line arguments for o.
func Args(o Options) []string {
	var args []string
	for _, d := range downwardEnv {
		args = append(args, fmt.Sprintf("--%s=$(%s)", d.flag, d.env))
	}
	args = append(args,
		"--resync-period="+o.ResyncPeriod.String(),
		fmt.Sprintf("--watch-configmaps=%t", o.WatchConfigMaps),
		fmt.Sprintf("--watch-argo-workflow-templates=%t", o.WatchArgoWorkflowTemplates),
		fmt.Sprintf("--watch-argo-cluster-workflow-templates=%t", o.WatchArgoClusterWorkflowTemplates),
		fmt.Sprintf("--watch-argo-cron-workflows=%t", o.WatchArgoCronWorkflows),
	)
	if o.PriorityClassName != "" {
		args = append(args, "--prefetch-priority-class="+o.PriorityClassName)
	}
	for _, img := range o.StaticImages {
		args = append(args, "--image="+img)
	}
	return append(args, o.ExtraArgs...)
}

func daemonSet(o Options) *appsv1.DaemonSet {
	selector := map[string]string{"app.kubernetes.io/name": Name, "app.kubernetes.io/component": "daemon"}
	// A soft heap limit: the daemon's live heap is ~20 MiB even with
	// thousands of watched objects; without it the Go runtime lets RSS
	// grow to twice the live heap between collections.
	env := []corev1.EnvVar{{Name: "GOMEMLIMIT", Value: "40MiB"}}
	for _, d := range downwardEnv {
		env = append(env, corev1.EnvVar{Name: d.env, ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: d.field},
		}})
	}
	tolerations := o.Tolerations
	if tolerations == nil {
		tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	}
	var pullSecrets []corev1.LocalObjectReference
	for _, s := range o.ImagePullSecrets {
		pullSecrets = append(pullSecrets, corev1.LocalObjectReference{Name: s})
	}
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("health")}},
			PeriodSeconds: 10, TimeoutSeconds: 2, FailureThreshold: 3,
		}
	}
	return &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: o.Namespace, Labels: labels("daemon")},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromString("10%"))},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels("daemon")},
				Spec: corev1.PodSpec{
					ServiceAccountName: Name,
					Tolerations:        tolerations,
					NodeSelector:       o.NodeSelector,
					PriorityClassName:  o.PriorityClassName,
					ImagePullSecrets:   pullSecrets,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To[int64](UID),
						RunAsGroup:     ptr.To[int64](UID),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					TerminationGracePeriodSeconds: ptr.To[int64](10),
					Containers: []corev1.Container{{
						Name:            ContainerName,
						Image:           o.Image,
						ImagePullPolicy: o.ImagePullPolicy,
						Command:         []string{"/image-cache-daemon"},
						Args:            Args(o),
						Env:             env,
						Ports: []corev1.ContainerPort{
							{Name: "metrics", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
							{Name: "health", ContainerPort: 8081, Protocol: corev1.ProtocolTCP},
						},
						LivenessProbe:  probe("/healthz"),
						ReadinessProbe: probe("/readyz"),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{
								corev1.ResourceCPU:    resource.MustParse("10m"),
								corev1.ResourceMemory: resource.MustParse("48Mi"),
							},
							Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
				},
			},
		},
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

// YAML renders objects as one multi-document YAML stream.
func YAML(objs []runtime.Object) ([]byte, error) {
	var b strings.Builder
	for _, obj := range objs {
		u, err := Unstructured(obj)
		if err != nil {
			return nil, err
		}
		y, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, fmt.Errorf("rendering %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return []byte(b.String()), nil
}
