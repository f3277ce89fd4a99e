package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/dcherman/image-cache-daemon/pkg/imagelist"
	"github.com/dcherman/image-cache-daemon/pkg/listformat"
)

// complete runs the shell's completion request (`__complete ARGS`) on cmd
// and returns the candidates it prints, without the directive line.
func complete(t *testing.T, cmd *cobra.Command, args ...string) []string {
	t.Helper()
	root := &cobra.Command{Use: "kubectl-imagecache"}
	root.AddCommand(cmd)
	var out strings.Builder
	root.SetOut(&out)
	root.SetErr(&strings.Builder{})
	root.SetArgs(append([]string{cobra.ShellCompRequestCmd}, args...))
	root.SetContext(context.Background())
	if err := root.Execute(); err != nil {
		t.Fatalf("__complete %v: %v", args, err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if !strings.HasPrefix(line, ":") && line != "" {
			got = append(got, line)
		}
	}
	return got
}

func TestStatusCompletion(t *testing.T) {
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	newCmd := func() *cobra.Command {
		return newCmdStatus(&StatusOptions{IOStreams: streams, kube: kube{flags: genericclioptions.NewConfigFlags(false), client: newClient(cluster()...)}})
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "--node", ""}, "node-a node-b"},
		{[]string{"status", "--image", ""}, "alpine nginx:1.27 registry.example/missing:v1"},
		{[]string{"status", "-o", ""}, "wide json yaml kyaml go-template= go-template-file= template= templatefile= jsonpath= jsonpath-file="},
	} {
		if got := strings.Join(complete(t, newCmd(), tc.args...), " "); got != tc.want {
			t.Errorf("%v: completes %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestRemoveCompletesListedImages(t *testing.T) {
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	list := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "image-cache-daemon-images", Namespace: "image-cache-daemon", Labels: imagelist.Labels},
		Data:       map[string]string{"images": listformat.Render([]string{"docker.io/library/alpine:latest", "ghcr.io/org/app:v2", "docker.io/library/nginx:1.27"})},
	}
	o := newEditOptions(genericclioptions.NewConfigFlags(false), streams, true)
	o.client = fake.NewClientset(list)
	// alpine is on the command line already: not offered again.
	got := strings.Join(complete(t, newCmdRemove(o), "remove", "alpine", ""), " ")
	if want := "ghcr.io/org/app:v2 nginx:1.27"; got != want {
		t.Errorf("remove alpine <TAB> completes %q, want %q", got, want)
	}
}

// Without any kubeconfig the plugin says so, instead of client-go's
// "connection refused" from http://localhost:8080.
func TestNoKubeconfigIsExplained(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	missing := t.TempDir() + "/missing-kubeconfig"
	t.Setenv("KUBECONFIG", missing)
	k := &kube{flags: genericclioptions.NewConfigFlags(false)}
	err := k.complete()
	if err == nil || !strings.Contains(err.Error(), "no kubeconfig with a cluster found") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("err = %v, want it to say that no kubeconfig was found at %s", err, missing)
	}
}
