//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
)

// clusterDir is where hack/cluster keeps the cluster's state (lib.sh: STATE).
func clusterDir() string {
	if d := os.Getenv("ICD_CLUSTER_DIR"); d != "" {
		return d
	}
	return "/var/lib/icd-cluster"
}

// killPart kills the process up.sh recorded for part, by its PID, and waits
// until it is gone.
func killPart(t *testing.T, part string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(clusterDir(), "pids", part+".pid"))
	if err != nil {
		t.Fatalf("the PID of %s: %v", part, err)
	}
	pid, err := strconv.Atoi(strings.Fields(string(raw))[0])
	if err != nil {
		t.Fatalf("the PID of %s: %v", part, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing %s (pid %d): %v", part, pid, err)
	}
	err = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		return err != nil || strings.Contains(string(stat), ") Z "), nil
	})
	if err != nil {
		t.Fatalf("%s (pid %d) did not die", part, pid)
	}
}

// TestUpRestartsWhatDied: up.sh, run while a part of the cluster has died,
// starts only that part again; the cluster's objects, its registry's images
// and its running pods are kept, and new pods run.
func TestUpRestartsWhatDied(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	sleeper := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sleeper"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "alpine", Command: []string{"sleep", "3600"}}},
			TerminationGracePeriodSeconds: ptrTo[int64](0)},
	}
	if _, err := env.client.CoreV1().Pods(ns).Create(ctx, sleeper, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running := waitForPod(t, ns, "sleeper", 2*time.Minute, "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })

	up := filepath.Join("..", "..", "hack", "cluster", "up.sh")
	for _, part := range []string{"registry", "kubelet", "containerd"} {
		t.Run(part, func(t *testing.T) {
			killPart(t, part)
			out, err := exec.Command(up).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "restarted "+part+"; the cluster's state is kept") {
				t.Fatalf("up.sh after %s died: %v\n%s", part, err, out)
			}
			if _, err := env.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
				t.Fatalf("the test's namespace: %v", err)
			}
			// A pod that ran before runs on, in the same container.
			p, err := env.client.CoreV1().Pods(ns).Get(ctx, "sleeper", metav1.GetOptions{})
			if err != nil || p.UID != running.UID || p.Status.Phase != corev1.PodRunning || p.Status.ContainerStatuses[0].RestartCount != 0 {
				t.Fatalf("the pod that ran before: %v\n%s", err, describe(p))
			}
			// A new pod pulls from the registry and runs.
			name := "after-" + part + "-" + rand.String(4)
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "main", Image: "alpine", ImagePullPolicy: corev1.PullAlways, Command: []string{"true"}}}},
			}
			if _, err := env.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if p := waitForPod(t, ns, name, 2*time.Minute, "Succeeded", func(p *corev1.Pod) bool {
				return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
			}); p.Status.Phase != corev1.PodSucceeded {
				t.Fatalf("a new pod after %s came back:\n%s", part, describe(p))
			}
		})
	}
}
