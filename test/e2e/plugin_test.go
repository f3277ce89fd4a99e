//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// plugin runs the built kubectl-imagecache binary and returns its output
// and exit code.
func plugin(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s: %v", bin, err)
	}
	return out.String(), code
}

func mustPlugin(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, code := plugin(t, bin, args...)
	if code != 0 {
		t.Fatalf("kubectl imagecache %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// TestPlugin drives the built plugin binary against the local cluster, as a
// user would.
func TestPlugin(t *testing.T) {
	ctx := context.Background()
	bin := buildGo(t, "github.com/dcherman/image-cache-daemon/cmd/kubectl-imagecache")
	ns := "icd-plugin-" + strings.ToLower(rand.String(4))
	image := daemonImage(t)
	nsFlag := []string{"-n", ns}
	args := func(a ...string) []string { return append(a, nsFlag...) }

	t.Cleanup(func() {
		saveArtifacts(t, ns)
		plugin(t, bin, args("uninstall", "--yes")...)
	})

	t.Run("install twice", func(t *testing.T) {
		out := mustPlugin(t, bin, args("install", "--image", image, "--wait", "--resync-period", "0")...)
		if !strings.Contains(out, "daemonset/image-cache-daemon created") || !strings.Contains(out, "ready") {
			t.Fatalf("first install:\n%s", out)
		}
		out = mustPlugin(t, bin, args("install", "--image", image, "--resync-period", "0")...)
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasSuffix(line, " unchanged") && !strings.HasSuffix(line, " kept") {
				t.Errorf("second install changed something: %q", line)
			}
		}
	})

	var cached string
	t.Run("add then status shows it cached with its digest", func(t *testing.T) {
		cached = randomImage(t, "e2e/plugin:"+rand.String(6), uint64(rand.Int()))
		out := mustPlugin(t, bin, args("add", cached, "--wait", "--timeout", "3m")...)
		if !strings.Contains(out, "every node") {
			t.Fatalf("add --wait:\n%s", out)
		}
		out = mustPlugin(t, bin, args("status", "-o", "json")...)
		var doc struct {
			Status []struct{ Image, State, Digest string }
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("status -o json: %v\n%s", err, out)
		}
		found := false
		for _, s := range doc.Status {
			if s.Image == cached && s.State == "cached" && strings.HasPrefix(s.Digest, "sha256:") {
				found = true
			}
		}
		if !found {
			t.Fatalf("status does not show %s cached with a digest:\n%s", cached, out)
		}
		table := mustPlugin(t, bin, args("status")...)
		n := len(nodeNames(t))
		if !strings.Contains(table, fmt.Sprintf("%d/%d", n, n)) || !strings.Contains(table, "cached") {
			t.Errorf("status table:\n%s", table)
		}
		// What status read: the report the daemon publishes on its pod.
		daemons, err := env.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: wire.LabelComponent + "=" + wire.ComponentDaemon,
			FieldSelector: "spec.nodeName=icd-node"})
		if err != nil || len(daemons.Items) != 1 {
			t.Fatalf("daemon pods: %v %v", daemons, err)
		}
		d := daemons.Items[0]
		report, err := wire.DecodeReport(d.Spec.NodeName, d.Annotations[wire.AnnotationReport])
		if err != nil || !slices.ContainsFunc(report, func(s wire.ImageStatus) bool { return s.Image == cached && s.State == wire.Cached }) {
			t.Errorf("the daemon's report does not have %s cached: %+v %v", cached, report, err)
		}
	})

	listData := func(t *testing.T) string {
		cm, err := env.client.CoreV1().ConfigMaps(ns).Get(ctx, install.DefaultConfigMap, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm.Data[source.DefaultKey]
	}

	t.Run("invalid reference is refused and nothing changes", func(t *testing.T) {
		before := listData(t)
		out, code := plugin(t, bin, args("add", "valid:1", "Invalid:Ref")...)
		if code == 0 || !strings.Contains(out, "Invalid:Ref") || !strings.Contains(out, "nothing was changed") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		if after := listData(t); after != before {
			t.Fatalf("the image list changed:\n%s\n->\n%s", before, after)
		}
	})

	t.Run("20 concurrent adds are all kept", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan string, 20)
		for i := 0; i < 20; i++ {
			wg.Go(func() {
				if out, code := plugin(t, bin, args("add", fmt.Sprintf("concurrent-%02d:v1", i))...); code != 0 {
					errs <- out
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Errorf("a concurrent add failed:\n%s", e)
		}
		data := listData(t)
		for i := 0; i < 20; i++ {
			if !strings.Contains(data, fmt.Sprintf("concurrent-%02d:v1", i)) {
				t.Errorf("concurrent-%02d lost:\n%s", i, data)
			}
		}
		// They do not exist in the registry: take them out again.
		var all []string
		for i := 0; i < 20; i++ {
			all = append(all, fmt.Sprintf("concurrent-%02d:v1", i))
		}
		mustPlugin(t, bin, args(append([]string{"remove"}, all...)...)...)
	})

	t.Run("add --wait of an image the registry refuses", func(t *testing.T) {
		missing := env.registry + "/e2e/refused:" + rand.String(6)
		out, code := plugin(t, bin, args("add", missing, "--wait", "--timeout", "3m")...)
		if code == 0 || !strings.Contains(out, "failed") || !strings.Contains(out, "not found") {
			t.Fatalf("exit %d, want non-zero with the reason:\n%s", code, out)
		}
		mustPlugin(t, bin, args("remove", missing)...)
	})

	t.Run("list shows who wants what", func(t *testing.T) {
		out := mustPlugin(t, bin, args("list")...)
		if !strings.Contains(out, "ConfigMap "+ns+"/"+install.DefaultConfigMap) {
			t.Fatalf("list:\n%s", out)
		}
	})

	t.Run("remove", func(t *testing.T) {
		out := mustPlugin(t, bin, args("remove", cached)...)
		if !strings.Contains(out, "removed") {
			t.Fatalf("remove:\n%s", out)
		}
		if strings.Contains(listData(t), cached) {
			t.Fatal("still in the list")
		}
	})

	t.Run("uninstall leaves nothing", func(t *testing.T) {
		mustPlugin(t, bin, args("uninstall", "--yes")...)
		if _, err := env.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("namespace %s: %v", ns, err)
		}
		if _, err := env.client.RbacV1().ClusterRoles().Get(ctx, install.RBACName(ns), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("clusterrole: %v", err)
		}
		if _, err := env.client.RbacV1().ClusterRoleBindings().Get(ctx, install.RBACName(ns), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("clusterrolebinding: %v", err)
		}
		pods, err := env.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: wire.LabelPartOf + "=" + wire.PartOf})
		if err != nil || len(pods.Items) != 0 {
			t.Errorf("pods left: %v %d", err, len(pods.Items))
		}
		out, code := plugin(t, bin, args("status")...)
		if code != 3 || !strings.Contains(out, "not installed") {
			t.Errorf("status after uninstall: exit %d\n%s", code, out)
		}
	})
}
