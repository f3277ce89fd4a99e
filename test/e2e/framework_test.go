//go:build e2e

// Package e2e holds the end-to-end tests. They run against the real local
// cluster that hack/cluster/up.sh brings up (make test-e2e does both), found
// through $KUBECONFIG, with images pushed to its registry ($ICD_REGISTRY,
// default 127.0.0.1:5000).
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dcherman/image-cache-daemon/internal/ociimage"
)

// cluster is what every e2e test needs to reach the local cluster.
type cluster struct {
	config   *rest.Config
	client   kubernetes.Interface
	registry string
}

var env cluster

func TestMain(m *testing.M) {
	if err := setup(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		fmt.Fprintln(os.Stderr, "bring the local cluster up first (make cluster-up) and export KUBECONFIG")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func setup() error {
	kubeconfig := os.Getenv("KUBECONFIG")
	if kubeconfig == "" {
		return fmt.Errorf("KUBECONFIG is not set")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("loading %s: %w", kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Discovery().ServerVersion(); err != nil {
		return fmt.Errorf("reaching the API server at %s: %w", cfg.Host, err)
	}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	if len(nodes.Items) == 0 {
		return fmt.Errorf("the cluster has no nodes")
	}
	registry := os.Getenv("ICD_REGISTRY")
	if registry == "" {
		registry = "127.0.0.1:5000"
	}
	env = cluster{config: cfg, client: client, registry: registry}
	return nil
}

// clusterRegistry is the local registry as pods and every node's kubelet
// reach it (lib.sh: CLUSTER_REGISTRY): read-only, the same storage as
// env.registry, where tests push.
const clusterRegistry = "10.88.0.1:5000"

// registryManifestRequests counts the requests for a manifest of repo
// (GET or HEAD /v2/REPO/manifests/...) that clusterRegistry served to a
// client whose user agent holds agent ("containerd": the kubelets' pulls;
// resolve.UserAgent: the planner's checks), from its access log; take it
// before and after what is measured.
func registryManifestRequests(t *testing.T, repo, agent string) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(clusterDir(), "logs", "cluster-registry.log"))
	if err != nil {
		t.Fatalf("the cluster registry's access log (lib.sh: CLUSTER_REGISTRY): %v", err)
	}
	n := 0
	for _, m := range accessLogLine.FindAllStringSubmatch(string(raw), -1) {
		if (m[1] == "GET" || m[1] == "HEAD") && strings.HasPrefix(m[2], "/v2/"+repo+"/manifests/") && strings.Contains(m[3], agent) {
			n++
		}
	}
	return n
}

// accessLogLine is a line of docker-registry's access log (Apache's
// combined format, on its standard output):
//
//	HOST - - [TIME] "METHOD PATH PROTO" STATUS SIZE "REFERER" "USER-AGENT"
//
// giving METHOD, PATH and USER-AGENT (quotes in it escaped as \").
var accessLogLine = regexp.MustCompile(`(?m)^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" \d+ \S+ "(?:[^"\\]|\\.)*" "((?:[^"\\]|\\.)*)"$`)

// registryStorage is the local registry's storage directory (lib.sh:
// STATE/registry).
func registryStorage() string { return filepath.Join(clusterDir(), "registry") }

// newNamespace creates a namespace for one test and deletes it afterwards.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := "e2e-" + strings.ToLower(rand.String(6))
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"e2e": "true"}}}
	if _, err := env.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		err := env.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting namespace %s: %v", name, err)
		}
	})
	// Pods can only be created once the namespace's default service account exists.
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := env.client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("namespace %s never got its default service account: %v", name, err)
	}
	return name
}

// push pushes img to the local registry as REGISTRY/repo:tag and returns the reference.
func push(t *testing.T, img v1.Image, repoTag string) string {
	t.Helper()
	ref := env.registry + "/" + repoTag
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := ociimage.Push(ctx, img, ref); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	return ref
}

// buildGo builds a package of this module as a static linux binary.
func buildGo(t *testing.T, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// waitForPod polls pod ns/name until done reports true, and returns the pod.
func waitForPod(t *testing.T, ns, name string, timeout time.Duration, what string, done func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := env.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return done(p), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s never became %s within %s; last status:\n%s", ns, name, what, timeout, describe(last))
	}
	return last
}

func describe(p *corev1.Pod) string {
	if p == nil {
		return "  (pod not found)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  phase=%s reason=%s message=%s\n", p.Status.Phase, p.Status.Reason, p.Status.Message)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, "  condition %s=%s %s\n", c.Type, c.Status, c.Message)
	}
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		fmt.Fprintf(&b, "  container %s: %+v\n", cs.Name, cs.State)
	}
	return b.String()
}

// logs returns the logs of a pod's container, read through the API server
// and the kubelet.
func logs(t *testing.T, ns, pod, container string) string {
	t.Helper()
	b, err := env.client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).Do(context.Background()).Raw()
	if err != nil {
		t.Fatalf("logs of %s/%s: %v", ns, pod, err)
	}
	return string(b)
}
