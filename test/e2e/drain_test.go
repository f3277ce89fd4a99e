//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// A prefetch pod still pending on an image the registry refuses does not
// keep a plain `kubectl drain --ignore-daemonsets` from evicting it: it
// mounts the warden from a ConfigMap (no emptyDir) and has a controller.
func TestDrainEvictsPendingPrefetchPods(t *testing.T) {
	kubectl := os.Getenv("KUBECTL")
	if kubectl == "" {
		t.Fatal("KUBECTL is not set: run the e2e suite through make e2e, which passes the kubectl built with the cluster")
	}
	ns, users := installWithUsers(t, "icd-drain-")
	missing := env.registry + "/e2e/drain-missing:" + rand.String(6)
	imageList(t, users, "drain", `["`+missing+`"]`)
	st := imageStatus(t, ns, missing, 2*time.Minute, "failed", func(s wire.ImageStatus) bool { return s.State == wire.Failed })

	pod, err := env.client.CoreV1().Pods(ns).Get(context.Background(), st.Pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Status.Phase != corev1.PodPending {
		t.Fatalf("the prefetch pod is %s, want Pending (the case a drain used to refuse)", pod.Status.Phase)
	}
	for _, v := range pod.Spec.Volumes {
		if v.EmptyDir != nil {
			t.Errorf("the prefetch pod has an emptyDir %q", v.Name)
		}
	}
	if metav1.GetControllerOf(pod) == nil {
		t.Error("the prefetch pod has no controller")
	}

	out, err := exec.Command(kubectl, "--kubeconfig", os.Getenv("KUBECONFIG"), "drain", st.Node, "--ignore-daemonsets",
		"--dry-run=server", "--pod-selector="+wire.LabelComponent+"="+wire.ComponentPrefetch, "--timeout=60s").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl drain refused: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "evicting pod "+ns+"/"+pod.Name) {
		t.Errorf("kubectl drain did not evict %s:\n%s", pod.Name, out)
	}
}
