//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// alpineOn is a pod that runs cmd in alpine on node.
func alpineOn(name, node string, cmd ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{corev1.LabelHostname: node},
			Containers:                    []corev1.Container{{Name: "main", Image: "alpine", Command: cmd}},
			TerminationGracePeriodSeconds: ptrTo[int64](0),
		},
	}
}

// TestUpRestartsWhatDied: up.sh, run while a part of the cluster has died,
// starts only that part again; the cluster's objects, its registry's images
// and its running pods are kept, and new pods run. It does so on node 1 and,
// when the cluster has it, on node 2, whose parts up.sh restarts without
// being told NODES.
func TestUpRestartsWhatDied(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	// The parts of node 1 are recorded under their own names, those of
	// node K as nodeK-PART (lib.sh: node_parts).
	type node struct{ name, prefix string }
	nodes := []node{{"icd-node", ""}}
	switch _, err := env.client.CoreV1().Nodes().Get(ctx, "icd-node2", metav1.GetOptions{}); {
	case err == nil:
		nodes = append(nodes, node{"icd-node2", "node2-"})
	case apierrors.IsNotFound(err):
		t.Log("no node icd-node2: only node 1's parts are killed")
	default:
		t.Fatal(err)
	}
	// A sleeper on every node, all checked after every restart: a part that
	// comes back on one node leaves the pods of every node running.
	running := map[string]*corev1.Pod{}
	for _, n := range nodes {
		name := "sleeper-" + n.name
		if _, err := env.client.CoreV1().Pods(ns).Create(ctx, alpineOn(name, n.name, "sleep", "3600"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		running[name] = waitForPod(t, ns, name, 2*time.Minute, "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	}

	up := filepath.Join("..", "..", "hack", "cluster", "up.sh")
	for i, n := range nodes {
		parts := []string{"registry", "kubelet", "containerd"}
		if i == 0 {
			parts = append(parts, "cluster-registry") // the registry's address for pods and nodes: one for the cluster
		}
		for _, part := range parts {
			image := "alpine"
			if part == "cluster-registry" {
				image = clusterRegistry + "/library/alpine:latest"
			}
			part := n.prefix + part
			t.Run(part, func(t *testing.T) {
				killPart(t, part)
				// No NODES: up.sh restarts the parts of every node that is up.
				cmd := exec.Command(up)
				cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "NODES=") })
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), "restarted "+part+"; the cluster's state is kept") {
					t.Fatalf("up.sh after %s died: %v\n%s", part, err, out)
				}
				if _, err := env.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
					t.Fatalf("the test's namespace: %v", err)
				}
				// The pods that ran before run on, in the same containers.
				for name, before := range running {
					p, err := env.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
					if err != nil || p.UID != before.UID || p.Status.Phase != corev1.PodRunning || p.Status.ContainerStatuses[0].RestartCount != 0 {
						t.Fatalf("pod %s, which ran before %s died: %v\n%s", name, part, err, describe(p))
					}
				}
				// A new pod on the same node pulls from the registry and runs.
				name := "after-" + part + "-" + rand.String(4)
				pod := alpineOn(name, n.name, "true")
				pod.Spec.Containers[0].Image = image
				pod.Spec.RestartPolicy = corev1.RestartPolicyNever
				pod.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
				if _, err := env.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				if p := waitForPod(t, ns, name, 2*time.Minute, "Succeeded", func(p *corev1.Pod) bool {
					return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
				}); p.Status.Phase != corev1.PodSucceeded || p.Spec.NodeName != n.name {
					t.Fatalf("a new pod on %s after %s came back ran on %q:\n%s", n.name, part, p.Spec.NodeName, describe(p))
				}
			})
		}
	}
}
