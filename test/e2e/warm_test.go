//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
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

// A node registered with the startup taint takes no workload until its
// images are there: the workload pod stays Pending, the daemon writes the
// Warm condition, removes the taint, and the pod starts without a pull.
// Then, with an image that cannot be pulled, the taint goes anyway and the
// condition and status say why.
func TestStartupTaintKeepsWorkUntilWarm(t *testing.T) {
	ctx := context.Background()
	nodes, err := env.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) == 0 {
		t.Fatalf("no node: %v", err)
	}
	node := nodes.Items[0].Name
	key := "e2e.imagecache.dcherman.github.io/warming-" + strings.ToLower(rand.String(4))
	t.Cleanup(func() { setTaint(t, node, key, false) })

	users := newNamespace(t)
	images := []string{}
	for i := range 3 {
		images = append(images, randomImage(t, fmt.Sprintf("e2e/warm-%d:%s", i, rand.String(5)), uint64(rand.Int())))
	}
	quoted, _ := json.Marshal(images)
	imageList(t, users, "warm", string(quoted))
	setTaint(t, node, key, true)

	workload := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "workload", Namespace: users},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "w", Image: images[0], ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"/x"}}},
		},
	}
	if _, err := env.client.CoreV1().Pods(users).Create(ctx, workload, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForPod(t, users, "workload", 30*time.Second, "unschedulable on the tainted node", func(p *corev1.Pod) bool {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				return true
			}
		}
		return false
	})

	ns := "icd-warm-" + strings.ToLower(rand.String(4))
	o := install.DefaultOptions("e2e")
	o.Namespace, o.Image, o.ResyncPeriod = ns, daemonImage(t), 0
	o.StartupTaint, o.WarmTimeout = key, 0
	installDaemon(t, o)

	n := waitNode(t, node, "warm and untainted", 3*time.Minute, func(n *corev1.Node) bool {
		c := warmCondition(n)
		return c != nil && c.Status == corev1.ConditionTrue && !testcluster.HasTaint(n, key)
	})
	if c := warmCondition(n); c.Reason != warm.ReasonWarm {
		t.Errorf("condition %+v, want reason %s", c, warm.ReasonWarm)
	}
	for _, img := range images {
		waitCached(t, ns, img)
	}
	waitForPod(t, users, "workload", time.Minute, "scheduled", func(p *corev1.Pod) bool { return p.Spec.NodeName != "" })
	evs, err := env.client.CoreV1().Events(users).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=workload"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Items {
		if e.Reason == "Pulling" {
			t.Errorf("the workload pulled its image on a warm node: %s", e.Message)
		}
	}

	t.Run("an image that cannot be pulled does not keep the node out", func(t *testing.T) {
		missing := env.registry + "/e2e/warm-missing:" + rand.String(6)
		images = append(images, missing)
		quoted, _ := json.Marshal(images)
		imageList(t, users, "warm", string(quoted))
		setTaint(t, node, key, true)
		o.WarmTimeout = time.Minute
		reconfigure(t, o) // a fresh daemon looks for the taint again
		n := waitNode(t, node, "untainted with the reason", 3*time.Minute, func(n *corev1.Node) bool {
			c := warmCondition(n)
			return c != nil && c.Status == corev1.ConditionFalse && !testcluster.HasTaint(n, key) &&
				(c.Reason == warm.ReasonImagesFailed || c.Reason == warm.ReasonTimedOut)
		})
		// The condition says why in words without counts or names, so that
		// a tenant's edit is no Node write; the Event names the image.
		if c := warmCondition(n); strings.ContainsAny(c.Message, "0123456789") {
			t.Errorf("condition message %q carries counts", c.Message)
		}
		err := wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
			events, err := env.client.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{
				FieldSelector: "involvedObject.name=" + node + ",reason=" + warm.ReasonTaintRemoved})
			if err != nil {
				return false, err
			}
			for _, e := range events.Items {
				if strings.Contains(e.Message, "warm-missing") {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Errorf("no %s Event on node %s names the image that cannot be pulled: %v", warm.ReasonTaintRemoved, node, err)
		}
		bin := buildGo(t, "github.com/dcherman/image-cache-daemon/cmd/kubectl-imagecache")
		err = wait.PollUntilContextTimeout(ctx, 2*time.Second, time.Minute, true, func(context.Context) (bool, error) {
			out, _ := plugin(t, bin, "status", "-n", ns)
			return strings.Contains(out, "not warm: "+node), nil
		})
		if err != nil {
			out, _ := plugin(t, bin, "status", "-n", ns)
			t.Errorf("status does not show the node not warm:\n%s", out)
		}
	})
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

	pods, err := env.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=daemon"})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("no daemon pod: %v", err)
	}
	daemon := pods.Items[0]
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
	other := "icd-vap-other-" + strings.ToLower(rand.String(4))
	if _, err := env.client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: other}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.client.CoreV1().Nodes().Delete(context.Background(), other, metav1.DeleteOptions{}) })
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
	}{
		{"its own node's Warm condition", own, []string{"status"}, condition(string(warm.ConditionType)), true},
		{"another node's Warm condition", other, []string{"status"}, condition(string(warm.ConditionType)), false},
		{"another condition", own, []string{"status"}, condition("Ready"), false},
		{"a label", own, nil, []byte(`{"metadata":{"labels":{"e2e":"x"}}}`), false},
		{"another taint", own, nil, withoutTaint(key + "-other"), false},
		{"cordon", own, nil, []byte(`{"spec":{"unschedulable":true}}`), false},
		{"its startup taint", own, nil, withoutTaint(key), true},
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
