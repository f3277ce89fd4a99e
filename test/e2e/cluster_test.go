//go:build e2e

package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/dcherman/image-cache-daemon/internal/ociimage"
	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
)

// These cases prove the ground the rest stands on: the kubelet pulls from the
// local registry (directly and as the docker.io mirror), reports a missing
// image as the kubelet would on any cluster, and pods reach the API server
// through the kubernetes service with their service account.

func TestPodRunsImageFromLocalRegistry(t *testing.T) {
	ns := newNamespace(t)
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("reading the host's busybox (Debian busybox-static, installed by hack/cluster/deps.sh): %v", err)
	}
	// A fresh tag each run, so the kubelet really pulls it.
	img, err := ociimage.FromFiles([]ociimage.File{{Path: "/bin/busybox", Mode: 0o755, Data: busybox}},
		ociimage.Config{Entrypoint: []string{"/bin/busybox"}})
	if err != nil {
		t.Fatal(err)
	}
	fresh := push(t, img, "e2e/busybox:"+rand.String(8))

	for _, tc := range []struct {
		name, image string
		args        []string
		want        string
	}{
		{"pushed by the test", fresh, []string{"echo", "hello from the registry"}, "hello from the registry"},
		// docker.io/library/alpine comes from the local registry through containerd's mirror setting.
		{"docker.io short name", "alpine", []string{"cat", "/etc/os-release"}, "stand-in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "run-" + rand.String(5)
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers:    []corev1.Container{{Name: "main", Image: tc.image, Command: nil, Args: tc.args}},
				},
			}
			if tc.image == "alpine" {
				pod.Spec.Containers[0].Command = append([]string{"/bin/sh", "-c"}, strings.Join(tc.args, " "))
				pod.Spec.Containers[0].Args = nil
			}
			if _, err := env.client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			p := waitForPod(t, ns, name, 2*time.Minute, "Succeeded", func(p *corev1.Pod) bool {
				return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
			})
			if p.Status.Phase != corev1.PodSucceeded {
				t.Fatalf("pod ended %s:\n%s", p.Status.Phase, describe(p))
			}
			if out := logs(t, ns, name, "main"); !strings.Contains(out, tc.want) {
				t.Fatalf("logs = %q, want them to contain %q", out, tc.want)
			}
			if id := p.Status.ContainerStatuses[0].ImageID; !strings.Contains(id, "@sha256:") {
				t.Fatalf("imageID = %q, want a digest", id)
			}
		})
	}
}

func TestMissingImageReachesErrImagePull(t *testing.T) {
	ns := newNamespace(t)
	image := env.registry + "/e2e/does-not-exist:" + rand.String(8)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "missing"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "main", Image: image}},
		},
	}
	if _, err := env.client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var waiting *corev1.ContainerStateWaiting
	waitForPod(t, ns, "missing", 2*time.Minute, "ErrImagePull", func(p *corev1.Pod) bool {
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
				waiting = w
				return true
			}
		}
		return false
	})
	if !strings.Contains(waiting.Message, image) || !strings.Contains(waiting.Message, "not found") {
		t.Fatalf("kubelet message = %q, want it to name %s and say not found", waiting.Message, image)
	}
}

func TestPodListsNodesWithInClusterConfig(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	bin := buildGo(t, "github.com/dcherman/image-cache-daemon/test/e2e/incluster")
	img, err := ociimage.FromFiles([]ociimage.File{{Path: "/incluster", Mode: 0o755, HostPath: bin}},
		ociimage.Config{Entrypoint: []string{"/incluster"}, User: "65532:65532"})
	if err != nil {
		t.Fatal(err)
	}
	image := push(t, img, "e2e/incluster:"+rand.String(8))

	// The pod's service account may list nodes, and nothing else.
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-list-nodes"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list"}}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-list-nodes"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "default"}},
	}
	rbac := env.client.RbacV1()
	if _, err := rbac.ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rbac.ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{}) })
	if _, err := rbac.ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = rbac.ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
	})

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "incluster"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "main", Image: image}},
		},
	}
	if _, err := env.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitForPod(t, ns, "incluster", 2*time.Minute, "finished", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	out := logs(t, ns, "incluster", "main")
	if p.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("in-cluster client failed (%s): %s\n%s", p.Status.Phase, out, describe(p))
	}
	nodes, err := env.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if !strings.Contains(out, n.Name) {
			t.Errorf("the pod listed %q, missing node %s", out, n.Name)
		}
	}
}

// TestDeletedNodeLeavesNoPrefetchPods: prefetch pods are bound to their node
// (spec.nodeName, no finalizer), so when a node is deleted the pod garbage
// collector removes them; nothing of the project is left on a node that is
// gone. The node here is a Node object without a kubelet, as a node looks to
// the API server once its machine has vanished.
func TestDeletedNodeLeavesNoPrefetchPods(t *testing.T) {
	ns := newNamespace(t)
	ctx := t.Context()
	node := "icd-gone-" + rand.String(5)
	if _, err := env.client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.client.CoreV1().Nodes().Delete(context.Background(), node, metav1.DeleteOptions{}) })
	cfg := prefetch.Config{Namespace: ns, NodeName: node, WardenImage: env.registry + "/library/alpine:latest", BatchSize: 20}
	pod, err := env.client.CoreV1().Pods(ns).Create(ctx, cfg.Pod([]string{env.registry + "/library/alpine:latest"}, 0, corev1.PullIfNotPresent), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.client.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The collector waits out a short quarantine, then deletes orphans.
	err = wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := env.client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("prefetch pod %s of deleted node %s is still there after 3 minutes", pod.Name, node)
	}
}
