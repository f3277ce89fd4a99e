package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/install/installtest"
)

// installDryRun runs install --dry-run=client with args through the command
// line, as a user would.
func installDryRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	o := &InstallOptions{IOStreams: streams, kube: kube{flags: genericclioptions.NewConfigFlags(false), client: fake.NewClientset()},
		Options: install.DefaultOptions("v1.0.0")}
	cmd := newCmdInstall(o)
	cmd.SetArgs(append([]string{"--dry-run=client"}, args...))
	err := cmd.Execute()
	return out.String(), err
}

// -o is kubectl's: json is one List, yaml a stream, name one line an
// object, and jsonpath and go-template read the List.
func TestInstallPrinters(t *testing.T) {
	objs := installtest.Objects(t, install.DefaultOptions("v1.0.0"))
	for _, tc := range []struct {
		args  []string
		check func(t *testing.T, out string)
	}{
		{nil, func(t *testing.T, out string) {
			if n := strings.Count(out, "\n---\n"); n != len(objs)-1 || !strings.HasPrefix(out, "apiVersion: v1\nkind: Namespace\n") {
				t.Errorf("no -o: %d separators for %d objects, want a YAML stream:\n%.300s", n, len(objs), out)
			}
		}},
		{[]string{"-o", "json"}, func(t *testing.T, out string) {
			var list struct {
				Kind  string
				Items []map[string]any
			}
			if err := json.Unmarshal([]byte(out), &list); err != nil || list.Kind != "List" || len(list.Items) != len(objs) {
				t.Errorf("-o json: %v, kind %q, %d items; want a List of %d", err, list.Kind, len(list.Items), len(objs))
			}
		}},
		{[]string{"-o", "name"}, func(t *testing.T, out string) {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != len(objs) || lines[0] != "namespace/image-cache-daemon" || !strings.Contains(out, "\ndaemonset.apps/image-cache-daemon\n") {
				t.Errorf("-o name:\n%s", out)
			}
		}},
		{[]string{"-o", "jsonpath={.items[*].kind}"}, func(t *testing.T, out string) {
			if !strings.HasPrefix(out, "Namespace ") || !strings.Contains(out, " DaemonSet") {
				t.Errorf("-o jsonpath: %q", out)
			}
		}},
		{[]string{"-o", `go-template={{range .items}}{{.kind}}/{{.metadata.name}}{{"\n"}}{{end}}`}, func(t *testing.T, out string) {
			if !strings.Contains(out, "DaemonSet/image-cache-daemon\n") {
				t.Errorf("-o go-template:\n%s", out)
			}
		}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, err := installDryRun(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, out)
		})
	}
	if _, err := installDryRun(t, "-o", "table"); err == nil || !strings.Contains(err.Error(), `--output "table": want json, yaml`) {
		t.Errorf("-o table: %v; want an error naming the formats", err)
	}
}

// status prints its tables itself and its document with kubectl's printers,
// which give it a kind.
func TestStatusPrinters(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "jsonpath={.kind} {.images[*].image}"}, "ImageCacheStatus docker.io/library/alpine:latest docker.io/library/nginx:1.27 registry.example/missing:v1"},
		{[]string{"-o", `go-template={{range .images}}{{.image}}={{.cached}} {{end}}`}, "docker.io/library/alpine:latest=2 docker.io/library/nginx:1.27=1 registry.example/missing:v1=0 "},
		{[]string{"--template", `{{len .nodes}}`}, "2"},
	} {
		out, err := runStatus(t, cluster(), tc.args...)
		if err != nil || out != tc.want {
			t.Errorf("status %q: %q, %v; want %q", tc.args, out, err, tc.want)
		}
	}
	out, err := runStatus(t, cluster(), "-o", "yaml")
	var doc statusDoc
	if err != nil || yaml.Unmarshal([]byte(out), &doc) != nil || doc.APIVersion != outputGroupVersion || doc.Kind != "ImageCacheStatus" || len(doc.Images) != 3 {
		t.Errorf("status -o yaml: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"-o", "name"}, {"-o", "table"}} {
		if _, err := runStatus(t, cluster(), args...); err == nil || !strings.Contains(err.Error(), "want wide, json, yaml") {
			t.Errorf("status %q: %v; want an error naming the formats", args, err)
		}
	}
	if _, err := runStatus(t, cluster(), "--watch", "-o", "jsonpath={.nodes}"); err == nil {
		t.Error("--watch with a printer: no error")
	}
}

// The -o help names every format, and completion offers each.
func TestPrintFlagsHelp(t *testing.T) {
	var output string
	f := newPrintFlags(&output, false, "", "wide")
	cmd := &cobra.Command{Use: "x"}
	f.addFlags(cmd)
	var help bytes.Buffer
	cmd.SetOut(&help)
	_ = cmd.Usage()
	for _, want := range []string{"wide, json, yaml, kyaml", "jsonpath=...", "go-template=...", "--template"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("help does not name %q:\n%s", want, help.String())
		}
	}
}
