package install

import (
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/dcherman/image-cache-daemon/pkg/warm"
)

// PolicyName is the name of an installation's ValidatingAdmissionPolicy on
// Nodes and its binding (cluster-scoped; a DNS subdomain, so no ':').
func PolicyName(namespace string) string { return Name + "." + namespace }

// PodPolicyName is the name of an installation's ValidatingAdmissionPolicy
// on the pods of its namespace, and of its binding.
func PodPolicyName(namespace string) string { return Name + "-pods." + namespace }

// tokenNodeKey is the extra the API server puts in a pod-bound
// service-account token: the node the pod is bound to.
const tokenNodeKey = "authentication.kubernetes.io/node-name"

// tokenNode is the node the request's token names, as a list of at most one
// name. A token that is not pod-bound (an impersonated service account, a
// long-lived Secret token) has no extra at all: has() tells, where reading
// the missing key would fail the variable ("no such key: extra") instead of
// saying why the request is refused.
var tokenNode = admissionv1.Variable{Name: "tokenNode", Expression: fmt.Sprintf(
	`has(request.userInfo.extra) && %[1]q in request.userInfo.extra ? request.userInfo.extra[%[1]q] : []`, tokenNodeKey)}

// Kept as they are by the daemon's writes to Nodes: every field of a Node's
// spec but its taints, and of its status but its conditions (a test
// compares these lists with k8s.io/api's NodeSpec and NodeStatus). Capacity
// and allocatable are read through dyn(), as the first release of the
// policy did.
var (
	nodeSpecKept      = []string{"unschedulable", "podCIDR", "podCIDRs", "providerID", "configSource", "externalID", "podPreemptionPolicy"}
	nodeStatusKeptDyn = []string{"capacity", "allocatable"}
	nodeStatusKept    = []string{"phase", "addresses", "daemonEndpoints", "nodeInfo", "images", "volumesInUse", "volumesAttached", "config",
		"runtimeHandlers", "features", "declaredFeatures"}
	// podMetaKept: of a pod's metadata, the daemon changes only
	// annotations (its report and health, pkg/daemon).
	podMetaKept = []string{"labels", "finalizers", "ownerReferences"}
	// nodeMetaKept: of a node's metadata, the daemon changes nothing.
	nodeMetaKept = []string{"labels", "annotations", "finalizers", "ownerReferences"}
)

// keptCEL is a CEL expression: each of fields, read from object and
// oldObject through the accessors obj and old, is as it was (or still
// absent).
func keptCEL(obj, old string, fields ...string) string {
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = fmt.Sprintf("%s.?%s == %s.?%s", obj, f, old, f)
	}
	return strings.Join(parts, " && ")
}

// daemonUser is the user name of the installation's service account.
func daemonUser(namespace string) string {
	return fmt.Sprintf("system:serviceaccount:%s:%s", namespace, Name)
}

// forbidden is a validation that refuses with Forbidden and says why.
func forbidden(expression, message, messageExpression string) admissionv1.Validation {
	return admissionv1.Validation{Expression: expression, Message: message, MessageExpression: messageExpression,
		Reason: ptr.To(metav1.StatusReasonForbidden)}
}

// tokenNamesANode is the first validation of each policy: a request of the
// daemon's service account must carry a pod-bound token, which names the
// node, so that the policy can tell the daemon's own node. Without one the
// other validations, which compare with that node, do not speak.
func tokenNamesANode(o Options, what string) admissionv1.Validation {
	return forbidden(`variables.tokenNode.size() == 1`, fmt.Sprintf(
		"only a pod-bound service-account token of a node's daemon may write %s as %s: this request's token names no node (%s), as an impersonated service account or a long-lived token never does",
		what, daemonUser(o.Namespace), tokenNodeKey), "")
}

// daemonPolicy is a ValidatingAdmissionPolicy named name, and its binding,
// that applies validations to the requests of the installation's service
// account that match rules.
func daemonPolicy(o Options, name string, match *admissionv1.MatchResources, variables []admissionv1.Variable, validations []admissionv1.Validation) []runtime.Object {
	labels := objectLabels("rbac", o.Namespace)
	policy := &admissionv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy:    ptr.To(admissionv1.Fail),
			MatchConstraints: match,
			MatchConditions:  []admissionv1.MatchCondition{{Name: "the-daemon", Expression: fmt.Sprintf("request.userInfo.username == %q", daemonUser(o.Namespace))}},
			Variables:        append([]admissionv1.Variable{tokenNode}, variables...),
			Validations:      validations,
		},
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
		},
	}
	return []runtime.Object{policy, binding}
}

// nodePolicy restricts what the daemon's service account may do to Nodes,
// whatever RBAC grants it (patch on nodes/status, and on nodes with a
// startup taint, which RBAC cannot narrow to one node): write only the node
// its pod runs on, as its pod-bound token names it, only the Warm
// condition, and only remove the startup taint. A token with no node name
// is refused.
func nodePolicy(o Options) []runtime.Object {
	match := &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
		RuleWithOperations: admissionv1.RuleWithOperations{
			// A PATCH is admitted as an UPDATE.
			Operations: []admissionv1.OperationType{admissionv1.Update},
			Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"},
				Resources: []string{"nodes", "nodes/status"}},
		},
	}}}
	variables := []admissionv1.Variable{
		{Name: "condition", Expression: fmt.Sprintf("%q", string(warm.ConditionType))},
		{Name: "taint", Expression: fmt.Sprintf("%q", o.StartupTaint)},
	}
	conditionOnly := `'image-cache-daemon may write only the node condition ' + variables.condition`
	return daemonPolicy(o, PolicyName(o.Namespace), match, variables, []admissionv1.Validation{
		tokenNamesANode(o, "nodes"),
		forbidden(`variables.tokenNode.size() != 1 || variables.tokenNode == [object.metadata.name]`, "",
			`'image-cache-daemon may write only the node its pod runs on (' + variables.tokenNode[0] + '), not ' + object.metadata.name`),
		forbidden(keptCEL("object.metadata", "oldObject.metadata", nodeMetaKept...),
			"image-cache-daemon may not change a node's labels, annotations, finalizers or owners", ""),
		forbidden(keptCEL("object.spec", "oldObject.spec", nodeSpecKept...),
			"image-cache-daemon may change no part of a node's spec but its startup taint", ""),
		forbidden(`object.spec.?taints == oldObject.spec.?taints || (variables.taint != '' && object.spec.?taints.orValue([]) == oldObject.spec.?taints.orValue([]).filter(t, t.key != variables.taint))`, "",
			`variables.taint == '' ? 'image-cache-daemon may not change taints (no --startup-taint)' : 'image-cache-daemon may only remove the taint ' + variables.taint`),
		forbidden(`object.status.?conditions.orValue([]).filter(c, c.type != variables.condition) == oldObject.status.?conditions.orValue([]).filter(c, c.type != variables.condition)`, "",
			conditionOnly),
		forbidden(keptCEL("dyn(object.status)", "dyn(oldObject.status)", nodeStatusKeptDyn...)+" && "+keptCEL("object.status", "oldObject.status", nodeStatusKept...), "",
			conditionOnly),
	})
}

// podPolicy restricts what the daemon's service account may do to pods in
// its namespace, where RBAC grants create and patch on every pod (a Role
// cannot name the daemon's own pod, whose name the DaemonSet makes up):
// create and write only pods on the node its pod runs on (its prefetch
// pods there, and its own pod), and of those change only annotations (its
// own pod's report and health). Deleting is left to RBAC: the daemon
// holding the reporter Lease deletes the prefetch pods of nodes the
// DaemonSet left.
func podPolicy(o Options) []runtime.Object {
	match := &admissionv1.MatchResources{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": o.Namespace}},
		ResourceRules: []admissionv1.NamedRuleWithOperations{{
			RuleWithOperations: admissionv1.RuleWithOperations{
				// A PATCH is admitted as an UPDATE.
				Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
				Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			},
		}},
	}
	return daemonPolicy(o, PodPolicyName(o.Namespace), match, nil, []admissionv1.Validation{
		tokenNamesANode(o, "pods"),
		forbidden(`variables.tokenNode.size() != 1 || object.spec.?nodeName.orValue('') == variables.tokenNode[0]`, "",
			`'image-cache-daemon may write only pods on the node its pod runs on (' + variables.tokenNode[0] + '), not pod ' + object.metadata.?name.orValue('') + (object.spec.?nodeName.orValue('') == '' ? ', which is bound to no node' : ' on node ' + object.spec.nodeName)`),
		forbidden(`request.operation != 'UPDATE' || (`+keptCEL("object.metadata", "oldObject.metadata", podMetaKept...)+`)`,
			"image-cache-daemon may change only a pod's annotations, not its labels, finalizers or owners", ""),
	})
}
