package install

import (
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// policies returns the installation's ValidatingAdmissionPolicies by name,
// and checks that each has its binding, which denies.
func policies(t *testing.T, o Options) map[string]*admissionv1.ValidatingAdmissionPolicy {
	t.Helper()
	out := map[string]*admissionv1.ValidatingAdmissionPolicy{}
	bindings := map[string]*admissionv1.ValidatingAdmissionPolicyBinding{}
	for _, obj := range mustObjects(t, o) {
		switch p := obj.(type) {
		case *admissionv1.ValidatingAdmissionPolicy:
			out[p.Name] = p
		case *admissionv1.ValidatingAdmissionPolicyBinding:
			bindings[p.Name] = p
		}
	}
	for name := range out {
		b := bindings[name]
		if b == nil || b.Spec.PolicyName != name || !slices.Equal(b.Spec.ValidationActions, []admissionv1.ValidationAction{admissionv1.Deny}) {
			t.Errorf("policy %s: binding %+v, want one of the same name that denies", name, b)
		}
	}
	if len(bindings) != len(out) {
		t.Errorf("%d bindings for %d policies", len(bindings), len(out))
	}
	return out
}

func taintedOptions() Options {
	o := DefaultOptions("v1.0.0")
	o.Namespace, o.StartupTaint = "icd", "example.com/warming"
	return o
}

// Both policies apply to the daemon's service account alone, fail closed,
// and refuse a token that names no node first, in words: reading the
// token's node from a request without extras (an impersonated service
// account) must not fail the variable, which would refuse with "no such
// key: extra" instead.
func TestPoliciesRefuseATokenWithoutANode(t *testing.T) {
	got := policies(t, taintedOptions())
	if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, []string{PodPolicyName("icd"), PolicyName("icd")}) {
		t.Fatalf("policies %v", names)
	}
	for name, p := range got {
		t.Run(name, func(t *testing.T) {
			s := p.Spec
			if *s.FailurePolicy != admissionv1.Fail {
				t.Errorf("failure policy %s", *s.FailurePolicy)
			}
			want := []admissionv1.MatchCondition{{Name: "the-daemon", Expression: `request.userInfo.username == "system:serviceaccount:icd:image-cache-daemon"`}}
			if !reflect.DeepEqual(s.MatchConditions, want) {
				t.Errorf("match conditions %+v", s.MatchConditions)
			}
			if s.Variables[0].Name != "tokenNode" || !strings.HasPrefix(s.Variables[0].Expression, "has(request.userInfo.extra) && ") {
				t.Errorf("the first variable %+v does not check that the token has extras before it reads them", s.Variables[0])
			}
			first := s.Validations[0]
			if first.Expression != "variables.tokenNode.size() == 1" ||
				!strings.HasPrefix(first.Message, "only a pod-bound service-account token of a node's daemon may write ") ||
				!strings.Contains(first.Message, "system:serviceaccount:icd:image-cache-daemon") {
				t.Errorf("the first validation %+v does not refuse a token without a node in words", first)
			}
			// The others read the token's node only when it has one, so
			// that such a token gets the first message alone.
			for _, v := range s.Validations[1:] {
				if reads := strings.Contains(v.Expression+v.MessageExpression, "variables.tokenNode[0]"); reads &&
					!strings.HasPrefix(v.Expression, "variables.tokenNode.size() != 1 || ") {
					t.Errorf("validation %q reads the token's node without checking it has one", v.Expression)
				}
			}
			for _, v := range s.Validations {
				if v.Reason == nil || *v.Reason != "Forbidden" || (v.Message == "") == (v.MessageExpression == "") {
					t.Errorf("validation %q: reason %v, message %q, message expression %q; want Forbidden and one message", v.Expression, v.Reason, v.Message, v.MessageExpression)
				}
			}
		})
	}
}

// jsonFields are the JSON names of the fields of a struct type.
func jsonFields(v any) []string {
	var out []string
	typ := reflect.TypeOf(v)
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		out = append(out, name)
	}
	return out
}

// The Node policy keeps every field of a Node's spec but its taints and of
// its status but its conditions, as k8s.io/api knows them: a field added by
// a new Kubernetes fails this test until the policy keeps it too.
func TestNodePolicyKeepsEveryOtherField(t *testing.T) {
	p := policies(t, taintedOptions())[PolicyName("icd")]
	var all strings.Builder
	for _, v := range p.Spec.Validations {
		all.WriteString(v.Expression + "\n")
	}
	for _, tc := range []struct {
		part, written string
		fields        []string
	}{
		{"spec", "taints", jsonFields(corev1.NodeSpec{})},
		{"status", "conditions", jsonFields(corev1.NodeStatus{})},
		{"metadata", "", []string{"labels", "annotations", "finalizers", "ownerReferences"}},
	} {
		for _, f := range tc.fields {
			if f == tc.written {
				continue
			}
			kept := regexp.MustCompile(`(dyn\()?object\.` + tc.part + `\)?\.\?` + f + ` == (dyn\()?oldObject\.` + tc.part + `\)?\.\?` + f + `\b`)
			if !kept.MatchString(all.String()) {
				t.Errorf("node %s.%s is not kept as it was", tc.part, f)
			}
		}
	}
	for _, f := range []string{"externalID", "podPreemptionPolicy", "runtimeHandlers", "features", "declaredFeatures"} {
		if !strings.Contains(all.String(), ".?"+f+" == ") {
			t.Errorf("%s is not constrained", f)
		}
	}
}

// The pod policy: CREATE and UPDATE (a PATCH) of pods in the install
// namespace, only on the token's node, and an update changes annotations
// alone.
func TestPodPolicy(t *testing.T) {
	p := policies(t, taintedOptions())[PodPolicyName("icd")]
	m := p.Spec.MatchConstraints
	if got := m.NamespaceSelector.MatchLabels; !reflect.DeepEqual(got, map[string]string{"kubernetes.io/metadata.name": "icd"}) {
		t.Errorf("namespace selector %v, want the install namespace", got)
	}
	want := []admissionv1.NamedRuleWithOperations{{RuleWithOperations: admissionv1.RuleWithOperations{
		Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
		Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
	}}}
	if !reflect.DeepEqual(m.ResourceRules, want) {
		t.Errorf("rules %+v", m.ResourceRules)
	}
	var exprs []string
	for _, v := range p.Spec.Validations[1:] {
		exprs = append(exprs, v.Expression)
	}
	wantExprs := []string{
		`variables.tokenNode.size() != 1 || object.spec.?nodeName.orValue('') == variables.tokenNode[0]`,
		`request.operation != 'UPDATE' || (object.metadata.?labels == oldObject.metadata.?labels && object.metadata.?finalizers == oldObject.metadata.?finalizers && object.metadata.?ownerReferences == oldObject.metadata.?ownerReferences)`,
	}
	if !slices.Equal(exprs, wantExprs) {
		t.Errorf("validations:\n%s\nwant:\n%s", strings.Join(exprs, "\n"), strings.Join(wantExprs, "\n"))
	}
}

// The names the planner's code uses are the installation's.
func TestPlannerNames(t *testing.T) {
	if Name != wire.DaemonSet {
		t.Errorf("the DaemonSet is %q; the planner's sweep reads %q", Name, wire.DaemonSet)
	}
}
