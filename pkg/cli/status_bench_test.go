package cli

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
)

// BenchmarkStatus times status for 200 nodes x 100 images without the
// network: the plugin's own share of the latency (hack/bench measures it on
// the real API server).
func BenchmarkStatus(b *testing.B) {
	const nodes, images = 200, 100
	var objs []runtime.Object
	var wanted []string
	for i := 0; i < images; i++ {
		wanted = append(wanted, fmt.Sprintf("registry.example/team/app-%03d:v1", i))
	}
	for n := 0; n < nodes; n++ {
		node := fmt.Sprintf("node-%03d", n)
		objs = append(objs, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "daemon-" + node, Namespace: "image-cache-daemon",
				Labels: map[string]string{"app.kubernetes.io/part-of": "image-cache-daemon", "app.kubernetes.io/component": "daemon"}},
			Spec: corev1.PodSpec{NodeName: node},
		})
		cfg := prefetch.Config{Namespace: "image-cache-daemon", NodeName: node, WardenImage: "w", BatchSize: 20}
		for s := 0; s < images; s += cfg.BatchSize {
			p := cfg.Pod(wanted[s:s+cfg.BatchSize], 0, corev1.PullIfNotPresent)
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "warden", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}}}
			for _, c := range p.Spec.Containers {
				p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, ImageID: c.Image + "@" + fakeDigest(c.Image),
					State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: metav1.NewTime(now.Add(-time.Hour))}}})
			}
			objs = append(objs, p)
		}
	}
	client := fake.NewClientset(objs...)
	for _, output := range []string{"", "wide"} {
		b.Run("output="+output, func(b *testing.B) {
			o := &StatusOptions{IOStreams: genericiooptions.IOStreams{Out: io.Discard, ErrOut: io.Discard},
				kube:   kube{flags: genericclioptions.NewConfigFlags(false), client: client, namespace: "image-cache-daemon"},
				Output: output, now: func() time.Time { return now }}
			for b.Loop() {
				if err := o.Run(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func fakeDigest(s string) string { return fmt.Sprintf("sha256:%064x", len(s)) }
