package install

import (
	"fmt"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/dcherman/image-cache-daemon/pkg/warm"
)

// PolicyName is the name of an installation's ValidatingAdmissionPolicy
// and its binding (cluster-scoped; a DNS subdomain, so no ':').
func PolicyName(namespace string) string { return Name + "." + namespace }

// nodePolicy restricts what the daemon's service account may do to Nodes,
// whatever RBAC grants it (patch on nodes/status, and on nodes with a
// startup taint, which RBAC cannot narrow to one node): write only the node
// its pod runs on, as its pod-bound token names it
// (authentication.kubernetes.io/node-name), only the Warm condition, and
// only remove the startup taint. A token with no node name is refused.
func nodePolicy(o Options) []runtime.Object {
	name := PolicyName(o.Namespace)
	user := fmt.Sprintf("system:serviceaccount:%s:%s", o.Namespace, Name)
	labels := objectLabels("rbac", o.Namespace)
	policy := &admissionv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					// A PATCH is admitted as an UPDATE.
					Operations: []admissionv1.OperationType{admissionv1.Update},
					Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"},
						Resources: []string{"nodes", "nodes/status"}},
				},
			}}},
			MatchConditions: []admissionv1.MatchCondition{{Name: "the-daemon", Expression: fmt.Sprintf("request.userInfo.username == %q", user)}},
			Variables: []admissionv1.Variable{
				{Name: "condition", Expression: fmt.Sprintf("%q", string(warm.ConditionType))},
				{Name: "taint", Expression: fmt.Sprintf("%q", o.StartupTaint)},
				{Name: "tokenNode", Expression: `'authentication.kubernetes.io/node-name' in request.userInfo.extra ? request.userInfo.extra['authentication.kubernetes.io/node-name'] : []`},
			},
			Validations: []admissionv1.Validation{
				{Expression: `variables.tokenNode == [object.metadata.name]`, Reason: ptr.To(metav1.StatusReasonForbidden),
					MessageExpression: `'image-cache-daemon may write only the node its pod runs on (' + (variables.tokenNode.size() == 1 ? variables.tokenNode[0] : 'its token names no node') + '), not ' + object.metadata.name`},
				{Expression: `object.metadata.?labels == oldObject.metadata.?labels && object.metadata.?annotations == oldObject.metadata.?annotations && object.metadata.?finalizers == oldObject.metadata.?finalizers && object.metadata.?ownerReferences == oldObject.metadata.?ownerReferences`,
					Reason: ptr.To(metav1.StatusReasonForbidden), Message: "image-cache-daemon may not change a node's labels, annotations, finalizers or owners"},
				{Expression: `object.spec.?unschedulable == oldObject.spec.?unschedulable && object.spec.?podCIDR == oldObject.spec.?podCIDR && object.spec.?podCIDRs == oldObject.spec.?podCIDRs && object.spec.?providerID == oldObject.spec.?providerID && object.spec.?configSource == oldObject.spec.?configSource`,
					Reason: ptr.To(metav1.StatusReasonForbidden), Message: "image-cache-daemon may change no part of a node's spec but its startup taint"},
				{Expression: `object.spec.?taints == oldObject.spec.?taints || (variables.taint != '' && object.spec.?taints.orValue([]) == oldObject.spec.?taints.orValue([]).filter(t, t.key != variables.taint))`,
					Reason: ptr.To(metav1.StatusReasonForbidden), MessageExpression: `variables.taint == '' ? 'image-cache-daemon may not change taints (no --startup-taint)' : 'image-cache-daemon may only remove the taint ' + variables.taint`},
				{Expression: `object.status.?conditions.orValue([]).filter(c, c.type != variables.condition) == oldObject.status.?conditions.orValue([]).filter(c, c.type != variables.condition)`,
					Reason: ptr.To(metav1.StatusReasonForbidden), MessageExpression: `'image-cache-daemon may write only the node condition ' + variables.condition`},
				{Expression: `dyn(object.status).?capacity == dyn(oldObject.status).?capacity && dyn(object.status).?allocatable == dyn(oldObject.status).?allocatable && object.status.?phase == oldObject.status.?phase && object.status.?addresses == oldObject.status.?addresses && object.status.?daemonEndpoints == oldObject.status.?daemonEndpoints && object.status.?nodeInfo == oldObject.status.?nodeInfo && object.status.?images == oldObject.status.?images && object.status.?volumesInUse == oldObject.status.?volumesInUse && object.status.?volumesAttached == oldObject.status.?volumesAttached && object.status.?config == oldObject.status.?config`,
					Reason: ptr.To(metav1.StatusReasonForbidden), MessageExpression: `'image-cache-daemon may write only the node condition ' + variables.condition`},
			},
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
