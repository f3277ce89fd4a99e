// Package install is the one source of the objects that make up an
// installation: the plugin's install command applies them, and
// manifests/install.yaml is generated from them.
package install

import (
	"fmt"
	"slices"
	"strconv"
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

	"github.com/dcherman/image-cache-daemon/pkg/options"
	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/version"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/warden"
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

// InstanceLabel carries the install namespace on every object of an
// installation (kubernetes.io's recommended label): the Roles an
// installation keeps in its source namespaces are found by it, so uninstall
// and a narrowed --source-namespace remove them without reading the
// DaemonSet (which a half-finished uninstall may have deleted already).
const InstanceLabel = "app.kubernetes.io/instance"

// labels are the labels of the daemon's pods; they select them, so they
// never change.
func labels(component string) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":      Name,
		"app.kubernetes.io/part-of":   Name,
		"app.kubernetes.io/component": component,
	}
}

// objectLabels are the labels of an installation's objects: the pods'
// labels and the installation's instance.
func objectLabels(component, namespace string) map[string]string {
	l := labels(component)
	l[InstanceLabel] = namespace
	return l
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

// A source the daemon may read, with the API resource its informer lists
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

// readRules grants list and watch, all that an informer does, and get, with
// which a source reads an object again when its namespace's share of
// --max-images has room for what it cut, on the sources o watches for which
// include(namespaced) holds: one rule per API group.
func readRules(o Options, include func(namespaced bool) bool) []rbacv1.PolicyRule {
	var rules []rbacv1.PolicyRule
	for _, s := range sourceResources {
		if !s.watched(o) || !include(s.namespaced) {
			continue
		}
		if n := len(rules); n > 0 && rules[n-1].APIGroups[0] == s.group {
			rules[n-1].Resources = append(rules[n-1].Resources, s.resource)
			continue
		}
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{s.group}, Resources: []string{s.resource}, Verbs: []string{"get", "list", "watch"}})
	}
	return rules
}

// clusterRules are the node daemon's cluster-wide permissions; it reads no
// source (the planner does, plannerClusterRules). Each verb comes from a
// call the daemon makes:
//   - create, patch on core Events: the reporter (pkg/daemon, setup.go)
//     records on the sources' objects and on its own pod through client-go's
//     EventBroadcaster with the core/v1 sink (run.go), which creates an
//     Event and patches it to count repeats (tools/record, recordEvent) and
//     never updates; it never writes events.k8s.io. Events land in any
//     source namespace, in the daemon's own and, for cluster-scoped objects,
//     in default: hence cluster-wide;
//   - get on nodes: the daemon reads its own Node (its allocatable pods). A
//     rule cannot name "the node this pod runs on", so it is every node.
func clusterRules(o Options) []rbacv1.PolicyRule {
	var rules []rbacv1.PolicyRule
	// nodes: get its own node's allocatable pods and creation
	// (controller.go); patch nodes/status for the Warm condition and, with
	// a startup taint, nodes to remove it (pkg/warm). RBAC cannot name the
	// node, so nodePolicy admits only the daemon's own node and only those
	// changes.
	nodeVerbs := []string{"get"}
	if o.StartupTaint != "" {
		nodeVerbs = append(nodeVerbs, "patch")
	}
	return append(rules,
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: nodeVerbs},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}},
	)
}

// plannerClusterRules are the planner's cluster-wide permissions: get, list
// and watch on its sources (the informers of pkg/source, sources.go, and
// the reading again of an object cut by its namespace's share,
// informer.go), the namespaced ones only when every namespace is read
// (else sourceRules grants them per namespace); create and patch on core
// Events, which it records on the objects whose images it skips, in their
// namespaces (and in default for cluster-scoped ones); and get on nodes,
// which its sweep reads to tell whether the DaemonSet left them.
func plannerClusterRules(o Options) []rbacv1.PolicyRule {
	limited := len(o.sourceNamespaces()) > 0
	rules := readRules(o, func(namespaced bool) bool { return !namespaced || !limited })
	return append(rules,
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}})
}

// plannerRules are the planner's permissions in the install namespace: get
// its own pod (planner.go, for Events on it); write the wanted set
// (pkg/wanted): get and update it by name, create it (a create is
// authorized before its object has a name); hold the planner Lease (get,
// update by name; create); and sweep the prefetch pods of nodes the
// DaemonSet left (gc.go): get the DaemonSet, list the daemon and prefetch
// pods (as metadata) and delete those prefetch pods.
func plannerRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{wanted.ConfigMap}, Verbs: []string{"get", "update"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{wanted.Planner}, Verbs: []string{"get", "update"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
		{APIGroups: []string{"apps"}, Resources: []string{"daemonsets"}, ResourceNames: []string{Name}, Verbs: []string{"get"}},
	}
}

// sourceRules are the planner's permissions in each source namespace when
// they are limited: get, list and watch on the namespaced sources.
func sourceRules(o Options) []rbacv1.PolicyRule {
	return readRules(o, func(namespaced bool) bool { return namespaced })
}

// podRules are the daemon's permissions in its own namespace, on pods:
// get its own pod (pkg/daemon, run.go: the owner and image of the prefetch
// pods), list and watch the prefetch pods (the pod informer, run.go),
// create and delete them (controller.go), and patch its own pod's report
// and health annotations (report.go, health.go), which `kubectl imagecache
// status` reads: the only pod the daemon patches, but a Role cannot name
// it (the DaemonSet makes its name up), so podPolicy admits creating and
// patching only pods on the daemon's own node, and patching only their
// annotations. And get the warden ConfigMap (setup.go), which prefetch
// pods mount; list and watch the planner's wanted set, by name (pkg/wanted,
// reader.go: a watch with a field selector on its name, which RBAC grants
// by name); and get its own DaemonSet (gc.go), to tell whether it still
// targets its node as it exits, whose prefetch pods would otherwise be
// left behind (listed and deleted with the pod verbs above, as metadata).
// It holds no Lease: the planner reports objects' problems and sweeps.
func podRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "create", "delete", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{warden.ConfigMap}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{wanted.ConfigMap}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"daemonsets"}, ResourceNames: []string{Name}, Verbs: []string{"get"}},
	}
}

// Objects returns every object of an installation, in the order they are
// applied (namespace first, the workload last), each with its TypeMeta set.
func Objects(o Options) []runtime.Object {
	ns := o.Namespace
	meta := func(name, component string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: objectLabels(component, ns)}
	}
	subjects := serviceAccount(ns)
	namespace := &corev1.Namespace{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
			"app.kubernetes.io/part-of": Name,
			// The daemon and its prefetch pods meet the restricted profile;
			// enforcing it here proves it on every install.
			"pod-security.kubernetes.io/enforce": "restricted",
		}},
	}
	objs := []runtime.Object{
		namespace,
		&corev1.ServiceAccount{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
			ObjectMeta: meta(Name, "daemon"),
		},
		&rbacv1.ClusterRole{TypeMeta: rbacType("ClusterRole"), ObjectMeta: rbacMeta(ns, "", RBACName(ns)), Rules: clusterRules(o)},
		&rbacv1.ClusterRoleBinding{TypeMeta: rbacType("ClusterRoleBinding"), ObjectMeta: rbacMeta(ns, "", RBACName(ns)),
			RoleRef: roleRef("ClusterRole", RBACName(ns)), Subjects: subjects},
		&rbacv1.Role{TypeMeta: rbacType("Role"), ObjectMeta: meta(Name, "rbac"), Rules: podRules()},
		&rbacv1.RoleBinding{TypeMeta: rbacType("RoleBinding"), ObjectMeta: meta(Name, "rbac"),
			RoleRef: roleRef("Role", Name), Subjects: subjects},
	}
	planner := []rbacv1.Subject{{Kind: "ServiceAccount", Name: wanted.Planner, Namespace: ns}}
	objs = append(objs,
		&corev1.ServiceAccount{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
			ObjectMeta: meta(wanted.Planner, "planner"),
		},
		&rbacv1.ClusterRole{TypeMeta: rbacType("ClusterRole"), ObjectMeta: rbacMeta(ns, "", PlannerRBACName(ns)), Rules: plannerClusterRules(o)},
		&rbacv1.ClusterRoleBinding{TypeMeta: rbacType("ClusterRoleBinding"), ObjectMeta: rbacMeta(ns, "", PlannerRBACName(ns)),
			RoleRef: roleRef("ClusterRole", PlannerRBACName(ns)), Subjects: planner},
		&rbacv1.Role{TypeMeta: rbacType("Role"), ObjectMeta: meta(wanted.Planner, "rbac"), Rules: plannerRules()},
		&rbacv1.RoleBinding{TypeMeta: rbacType("RoleBinding"), ObjectMeta: meta(wanted.Planner, "rbac"),
			RoleRef: roleRef("Role", wanted.Planner), Subjects: planner},
	)
	objs = append(objs, nodePolicy(o)...)
	objs = append(objs, podPolicy(o)...)
	for _, sns := range o.sourceNamespaces() {
		objs = append(objs, sourceRBAC(o, sns)...)
	}
	images := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: meta(DefaultConfigMap, "images"),
		Data:       map[string]string{source.DefaultKey: "[]\n"},
	}
	// The warden executables that prefetch pods mount: no init container,
	// no emptyDir, so a plain kubectl drain evicts a pod still pulling.
	wardens := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: meta(warden.ConfigMap, "warden"),
		BinaryData: map[string][]byte{},
	}
	// Not part-of: that label is the default --configmap-selector of image
	// lists, and this ConfigMap is not one.
	delete(wardens.Labels, "app.kubernetes.io/part-of")
	for _, arch := range warden.Architectures {
		exe, err := warden.Executable(arch)
		if err != nil {
			panic(err) // the built-in architectures always have one
		}
		wardens.BinaryData[arch] = exe
	}
	return append(objs, images, wardens, plannerDeployment(o), daemonSet(o))
}

// PlannerRBACName is the name of the planner's ClusterRole and
// ClusterRoleBinding of an installation in namespace.
func PlannerRBACName(namespace string) string {
	return wanted.Planner + ":" + namespace
}

func rbacType(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: kind}
}

func roleRef(kind, name string) rbacv1.RoleRef {
	return rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: kind, Name: name}
}

// rbacMeta is the metadata of an RBAC object of the installation in
// installNS, in namespace ("" for a cluster-scoped one).
func rbacMeta(installNS, namespace, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: objectLabels("rbac", installNS)}
}

// serviceAccount is the subject of every binding: the daemon's service
// account in namespace.
func serviceAccount(namespace string) []rbacv1.Subject {
	return []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: namespace}}
}

// sourceRBAC is the Role and RoleBinding that let the planner of the
// installation o read its namespaced sources in namespace.
func sourceRBAC(o Options, namespace string) []runtime.Object {
	name := RBACName(o.Namespace)
	return []runtime.Object{
		&rbacv1.Role{TypeMeta: rbacType("Role"), ObjectMeta: rbacMeta(o.Namespace, namespace, name), Rules: sourceRules(o)},
		&rbacv1.RoleBinding{TypeMeta: rbacType("RoleBinding"), ObjectMeta: rbacMeta(o.Namespace, namespace, name),
			RoleRef: roleRef("Role", name), Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: wanted.Planner, Namespace: o.Namespace}}},
	}
}

// Downward API variables the daemon's flags are filled from. The flag that
// reads each is checked against this list by a test, so the manifest and
// the daemon cannot disagree (the original did, twice).
var downwardEnv = []struct{ env, field, flag string }{
	{"NODE_NAME", "spec.nodeName", "node-name"},
	{"POD_NAME", "metadata.name", "pod-name"},
	{"POD_NAMESPACE", "metadata.namespace", "pod-namespace"},
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
	args = append(args, "--registry-pull-qps="+strconv.FormatFloat(o.RegistryPullQPS, 'g', -1, 64))
	if o.RegistryPullQPS > 0 {
		args = append(args, "--registry-burst="+strconv.Itoa(o.RegistryBurst))
	}
	if o.PriorityClassName != "" {
		args = append(args, "--prefetch-priority-class="+o.PriorityClassName)
	}
	for _, ns := range o.sourceNamespaces() {
		args = append(args, "--source-namespace="+ns)
	}
	if o.StartupTaint != "" {
		args = append(args, "--startup-taint="+o.StartupTaint, "--warm-timeout="+o.WarmTimeout.String())
	}
	for _, img := range o.StaticImages {
		args = append(args, "--image="+img)
	}
	return append(args, o.ExtraArgs...)
}

func daemonSet(o Options) *appsv1.DaemonSet {
	selector := map[string]string{"app.kubernetes.io/name": Name, "app.kubernetes.io/component": "daemon"}
	spec := podSpec(o, Name, ContainerName, append(Args(o), "--from-planner"))
	return &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: o.Namespace, Labels: objectLabels("daemon", o.Namespace)},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromString("10%"))},
			},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels("daemon")}, Spec: spec},
		},
	}
}

// plannerDeployment runs the planner: two replicas, one leading, on two
// nodes where it can, with the node daemon's flags and tolerations (so it
// runs on nodes that still carry the startup taint: a cluster whose nodes
// are all warming must not wait for it).
func plannerDeployment(o Options) *appsv1.Deployment {
	selector := map[string]string{"app.kubernetes.io/name": Name, "app.kubernetes.io/component": "planner"}
	spec := podSpec(o, wanted.Planner, "planner", append([]string{"planner"}, Args(o)...))
	spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{Weight: 100, PodAffinityTerm: corev1.PodAffinityTerm{
			LabelSelector: &metav1.LabelSelector{MatchLabels: selector}, TopologyKey: "kubernetes.io/hostname",
		}}},
	}}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: wanted.Planner, Namespace: o.Namespace, Labels: objectLabels("planner", o.Namespace)},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels("planner")}, Spec: spec},
		},
	}
}

// podSpec is the pod of the node daemon and of the planner: one container,
// name, of the daemon's image, run as serviceAccount with args.
func podSpec(o Options, serviceAccount, name string, args []string) corev1.PodSpec {
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
	return corev1.PodSpec{
		ServiceAccountName: serviceAccount,
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
			Name:            name,
			Image:           o.Image,
			ImagePullPolicy: o.ImagePullPolicy,
			Command:         []string{"/image-cache-daemon"},
			Args:            args,
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
