//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/dcherman/image-cache-daemon/internal/testcluster"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/warm"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// setTaint adds or removes the taint key on node.
func setTaint(t *testing.T, node, key string, on bool) {
	t.Helper()
	if err := testcluster.SetTaint(context.Background(), env.client, node, key, on); err != nil {
		t.Fatalf("tainting %s: %v", node, err)
	}
}

// waitNode waits until cond holds for node.
func waitNode(t *testing.T, node, what string, timeout time.Duration, cond func(*corev1.Node) bool) *corev1.Node {
	t.Helper()
	var n *corev1.Node
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		got, err := env.client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		n = got
		return cond(n), nil
	})
	if err != nil {
		t.Fatalf("node %s: never %s; taints %v, conditions %v", node, what, n.Spec.Taints, n.Status.Conditions)
	}
	return n
}

func warmCondition(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == warm.ConditionType {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// The daemon's own credentials (a token bound to its pod, as the kubelet
// gives it) may set the Warm condition on its own node and remove its
// startup taint, and nothing else: the ValidatingAdmissionPolicy installed
// with it refuses another node, another condition, another taint, a label.
func TestDaemonMayWriteOnlyItsOwnNode(t *testing.T) {
	ctx := context.Background()
	key := "e2e.imagecache.dcherman.github.io/own-" + strings.ToLower(rand.String(4))
	ns := "icd-vap-" + strings.ToLower(rand.String(4))
	o := install.DefaultOptions("e2e")
	o.Namespace, o.Image, o.ResyncPeriod, o.StartupTaint = ns, daemonImage(t), 0, key
	installDaemon(t, o)

	// Node 1's daemon, with the token the kubelet would give its pod, and
	// node 2, a real node with a daemon of its own.
	other := secondNode(t)
	waitRollout(t, ns)
	pods, err := env.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: wire.LabelComponent + "=" + wire.ComponentDaemon})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(pods.Items, func(p corev1.Pod) bool { return p.Spec.NodeName != other })
	if i < 0 {
		t.Fatalf("no daemon pod on a node other than %s", other)
	}
	daemon := pods.Items[i]
	tr, err := env.client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, install.Name, &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		ExpirationSeconds: ptrTo[int64](600),
		BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: daemon.Name, UID: daemon.UID},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(env.config)
	cfg.BearerToken = tr.Status.Token
	as, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	own := daemon.Spec.NodeName
	setTaint(t, own, key, true)
	setTaint(t, own, key+"-other", true)
	t.Cleanup(func() { setTaint(t, own, key, false); setTaint(t, own, key+"-other", false) })

	condition := func(typ string) []byte {
		b, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": []any{map[string]any{
			"type": typ, "status": "False", "reason": "E2E", "message": "written by the e2e test", "lastTransitionTime": metav1.Now()}}}})
		return b
	}
	withoutTaint := func(drop string) []byte {
		n, err := env.client.CoreV1().Nodes().Get(ctx, own, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var kept []corev1.Taint
		for _, tn := range n.Spec.Taints {
			if tn.Key != drop {
				kept = append(kept, tn)
			}
		}
		b, _ := json.Marshal(map[string]any{"spec": map[string]any{"taints": kept}})
		return b
	}
	for _, tc := range []struct {
		name        string
		node        string
		subresource []string
		patch       []byte
		allowed     bool
		says        string // the refusal names both nodes
	}{
		{"its own node's Warm condition", own, []string{"status"}, condition(string(warm.ConditionType)), true, ""},
		{"another node's Warm condition", other, []string{"status"}, condition(string(warm.ConditionType)), false,
			"may write only the node its pod runs on (" + own + "), not " + other},
		{"another node's startup taint", other, nil, []byte(`{"spec":{"taints":[]}}`), false,
			"may write only the node its pod runs on (" + own + "), not " + other},
		{"another condition", own, []string{"status"}, condition("Ready"), false, ""},
		{"a label", own, nil, []byte(`{"metadata":{"labels":{"e2e":"x"}}}`), false, ""},
		{"another taint", own, nil, withoutTaint(key + "-other"), false, ""},
		{"cordon", own, nil, []byte(`{"spec":{"unschedulable":true}}`), false, ""},
		{"its startup taint", own, nil, withoutTaint(key), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := as.CoreV1().Nodes().Patch(ctx, tc.node, types.StrategicMergePatchType, tc.patch, metav1.PatchOptions{}, tc.subresource...)
			switch {
			case tc.allowed && err != nil:
				t.Errorf("refused: %v", err)
			case !tc.allowed && err == nil:
				t.Error("allowed")
			case !tc.allowed && !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err):
				t.Errorf("refused, but not by admission or RBAC: %v", err)
			case !tc.allowed && !strings.Contains(err.Error(), tc.says):
				t.Errorf("refused with %v; want a refusal that says %q", err, tc.says)
			}
		})
	}

	// Pods: its own pod's annotations, and nothing on another node.
	restricted := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "icd-vap-elsewhere", Namespace: ns}, Spec: corev1.PodSpec{
		NodeName:        other,
		SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptrTo(true), RunAsUser: ptrTo[int64](65532), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		Containers: []corev1.Container{{Name: "c", Image: "alpine", SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptrTo(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}},
	}}
	impersonated := rest.CopyConfig(env.config)
	impersonated.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + install.Name}
	asSA, err := kubernetes.NewForConfig(impersonated)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		do   func() error
		want string // "" allowed; else the refusal says this
	}{
		{"its own pod's annotations", func() error {
			_, err := as.CoreV1().Pods(ns).Patch(ctx, daemon.Name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"e2e":"x"}}}`), metav1.PatchOptions{})
			return err
		}, ""},
		{"its own pod's labels", func() error {
			_, err := as.CoreV1().Pods(ns).Patch(ctx, daemon.Name, types.MergePatchType, []byte(`{"metadata":{"labels":{"e2e":"x"}}}`), metav1.PatchOptions{})
			return err
		}, "may change only a pod's annotations"},
		{"a pod on another node", func() error {
			_, err := as.CoreV1().Pods(ns).Create(ctx, restricted, metav1.CreateOptions{})
			return err
		}, "may write only pods on the node its pod runs on (" + own + "), not pod"},
		// providerID, unset on this cluster, is a field the API server's
		// own validation lets a writer set once (externalID it refuses
		// itself), so the refusal here is the policy's.
		{"its node's providerID", func() error {
			_, err := as.CoreV1().Nodes().Patch(ctx, own, types.StrategicMergePatchType, []byte(`{"spec":{"providerID":"e2e://x"}}`), metav1.PatchOptions{})
			return err
		}, "may change no part of a node's spec but its startup taint"},
		{"its node's runtime handlers", func() error {
			_, err := as.CoreV1().Nodes().Patch(ctx, own, types.StrategicMergePatchType, []byte(`{"status":{"runtimeHandlers":[{"name":"e2e"}]}}`), metav1.PatchOptions{}, "status")
			return err
		}, "may write only the node condition"},
		{"a token with no node (impersonation)", func() error {
			_, err := asSA.CoreV1().Nodes().Patch(ctx, own, types.StrategicMergePatchType, condition(string(warm.ConditionType)), metav1.PatchOptions{}, "status")
			return err
		}, "only a pod-bound service-account token of a node's daemon may write"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Error("allowed")
			case tc.want != "" && (!apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "no such key")):
				t.Errorf("refused with %v; want a refusal that says %q", err, tc.want)
			}
		})
	}
}
