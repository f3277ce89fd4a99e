package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
	"github.com/dcherman/image-cache-daemon/pkg/source"
)

var now = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// cluster builds the pods of an installation on two nodes: alpine cached on
// both, nginx cached on one and pulling on the other, a missing image failed.
func cluster() []runtime.Object {
	daemon := func(node string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "daemon-" + node, Namespace: "image-cache-daemon",
				Labels: map[string]string{"app.kubernetes.io/part-of": "image-cache-daemon", "app.kubernetes.io/component": "daemon"}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "daemon", Image: "ghcr.io/dcherman/image-cache-daemon:v1.0.0"}}},
		}
	}
	prefetchPod := func(node string, images []string, states ...corev1.ContainerState) *corev1.Pod {
		cfg := prefetch.Config{Namespace: "image-cache-daemon", NodeName: node, WardenImage: "w", BatchSize: 20}
		p := cfg.Pod(images, 0, corev1.PullIfNotPresent)
		p.CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "warden", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}}}
		for i, c := range p.Spec.Containers {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
				Name: c.Name, State: states[i], ImageID: c.Image + "@sha256:" + strings.Repeat(string(rune('a'+i)), 64)})
		}
		return p
	}
	cached := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: metav1.NewTime(now.Add(-30 * time.Minute))}}
	pulling := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	failed := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "registry.example/missing:v1": not found`}}
	alpine, nginx, missing := "docker.io/library/alpine:latest", "docker.io/library/nginx:1.27", "registry.example/missing:v1"
	// Both daemons skip a hostile object; node-b's may not read ConfigMaps.
	health := func(problem string) string {
		warm := `{"warm":true,"reason":"Warm","message":"every wanted image is cached (3/3)","took":"42s"}`
		if problem != "" {
			warm = `{"warm":false,"reason":"Warming","message":"2/3 images cached"}`
		}
		return `{"sources":[{"source":"static","synced":true},{"source":"configmaps","synced":` + fmt.Sprint(problem == "") +
			`,"problem":"` + problem + `"},{"source":"workflowtemplates","synced":true,"objects":3,"skipped":1,"skippedSample":["WorkflowTemplate team/bomb"]}],"warm":` + warm + `}`
	}
	a, b := daemon("node-a"), daemon("node-b")
	a.Annotations = map[string]string{source.HealthAnnotation: health("")}
	b.Annotations = map[string]string{source.HealthAnnotation: health("configmaps is forbidden: User cannot list resource")}
	return []runtime.Object{
		a, b,
		prefetchPod("node-a", []string{alpine, nginx}, cached, cached),
		prefetchPod("node-b", []string{alpine, nginx}, cached, pulling),
		prefetchPod("node-a", []string{missing}, failed),
	}
}

func runStatus(t *testing.T, objs []runtime.Object, args ...string) (string, error) {
	t.Helper()
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	o := &StatusOptions{IOStreams: streams, kube: kube{flags: genericclioptions.NewConfigFlags(false), client: fake.NewClientset(objs...)},
		Interval: time.Second, now: func() time.Time { return now }}
	cmd := newCmdStatus(o)
	cmd.SetArgs(append([]string{}, args...)) // nil would make cobra read os.Args
	cmd.SetContext(context.Background())
	err := cmd.Execute()
	return out.String(), err
}

func TestStatusTables(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"status", nil},
		{"status-wide", []string{"-o", "wide"}},
		{"status-node", []string{"-o", "wide", "--node", "node-b"}},
		{"status-image", []string{"--image", "nginx:1.27"}},
		{"status-json", []string{"-o", "json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runStatus(t, cluster(), tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", tc.name+".golden"), []byte(out))
		})
	}
}

func TestStatusNotInstalled(t *testing.T) {
	_, err := runStatus(t, nil)
	if ExitCode(err) != ExitNotInstalled || !strings.Contains(err.Error(), "kubectl imagecache install") {
		t.Fatalf("err = %v (exit %d), want exit %d with advice", err, ExitCode(err), ExitNotInstalled)
	}
}

func TestAddRefusesInvalidReferences(t *testing.T) {
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	client := fake.NewClientset()
	o := newEditOptions(genericclioptions.NewConfigFlags(false), streams, false)
	o.client = client
	err := o.Complete([]string{"alpine", "Not/Valid:x", "{{template}}"})
	if err == nil || !strings.Contains(err.Error(), "Not/Valid:x") || !strings.Contains(err.Error(), "{{template}}") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("err = %v", err)
	}
	if len(client.Actions()) != 0 {
		t.Fatalf("an invalid add reached the API: %v", client.Actions())
	}
}
