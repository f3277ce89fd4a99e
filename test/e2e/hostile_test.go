//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/dcherman/image-cache-daemon/internal/testcluster"
	"github.com/dcherman/image-cache-daemon/pkg/argo/argotest"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// argoResource is the dynamic client of an Argo kind, so that a test can
// store what Argo's Go types cannot hold (the CRDs keep unknown fields).
func argoResource(t *testing.T, resource, ns string) dynamic.ResourceInterface {
	t.Helper()
	dyn, err := dynamic.NewForConfig(env.config)
	if err != nil {
		t.Fatal(err)
	}
	r := dyn.Resource(schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: resource})
	if ns == "" {
		return r
	}
	return r.Namespace(ns)
}

// argoObject creates an Argo object from its kind and spec and deletes it
// when the test ends.
func argoObject(t *testing.T, kind, ns, name string, spec map[string]any) {
	t.Helper()
	resource := strings.ToLower(kind) + "s"
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": kind, "metadata": map[string]any{"name": name}, "spec": spec,
	}}
	r := argoResource(t, resource, ns)
	if _, err := r.Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating %s %s: %v", kind, name, err)
	}
	t.Cleanup(func() { _ = r.Delete(context.Background(), name, metav1.DeleteOptions{}) })
}

// container is a workflow spec of one container template; a CronWorkflow
// holds it under workflowSpec.
func container(kind string, c map[string]any) map[string]any {
	spec := map[string]any{"templates": []any{map[string]any{"name": "main", "container": c}}}
	if kind == "CronWorkflow" {
		return map[string]any{"schedules": []any{"0 0 * * *"}, "workflowSpec": spec}
	}
	return spec
}

// chainSpec is n templates, each calling the next from two steps and the
// last calling the first: exponential to walk without a budget.
func chainSpec(n int) map[string]any {
	var templates []any
	for i := 0; i < n; i++ {
		next := fmt.Sprintf("t%d", (i+1)%n)
		arg := map[string]any{"parameters": []any{map[string]any{"name": "x", "value": "{{inputs.parameters.x}}"}}}
		templates = append(templates, map[string]any{
			"name": fmt.Sprintf("t%d", i), "inputs": map[string]any{"parameters": []any{map[string]any{"name": "x"}}},
			"container": map[string]any{"image": "{{inputs.parameters.x}}"},
			"steps": []any{[]any{
				map[string]any{"name": "a", "template": next, "arguments": arg},
				map[string]any{"name": "b", "template": next, "arguments": arg},
			}},
		})
	}
	return map[string]any{"entrypoint": "t0", "arguments": map[string]any{"parameters": []any{map[string]any{"name": "x", "value": "alpine"}}},
		"templates": templates}
}

// installWithUsers installs the daemon of this commit, resync off, into a
// new namespace named with prefix, with nodeArgs added to the node daemons'
// arguments (not the planner's), and makes a namespace for the users'
// objects; it returns both.
func installWithUsers(t *testing.T, prefix string, nodeArgs ...string) (ns, users string) {
	t.Helper()
	ns = prefix + strings.ToLower(rand.String(4))
	o := install.DefaultOptions("e2e")
	o.Namespace = ns
	o.Image = daemonImage(t)
	o.ResyncPeriod = 0
	installDaemon(t, o)
	if len(nodeArgs) > 0 {
		ctx := context.Background()
		ds, err := env.client.AppsV1().DaemonSets(ns).Get(ctx, install.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := &ds.Spec.Template.Spec.Containers[0]
		c.Args = append(c.Args, nodeArgs...)
		if _, err := env.client.AppsV1().DaemonSets(ns).Update(ctx, ds, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitRollout(t, ns)
	}
	return ns, newNamespace(t)
}

// logDaemonPeakMemory prints the highest memory use of each daemon and
// planner container, as its cgroup (v1, cgroupfs, on this machine) recorded
// it, and returns the highest of each component's.
func logDaemonPeakMemory(t *testing.T, ns string) map[string]float64 {
	t.Helper()
	pods, err := env.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: daemonsAndPlanner})
	if err != nil {
		t.Fatal(err)
	}
	peaks := map[string]float64{}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			id := cs.ContainerID[strings.Index(cs.ContainerID, "://")+3:]
			// kubepods/pod<uid> (Guaranteed) or kubepods/<qos>/pod<uid>,
			// under the node's cgroup root (/ for node 1, /icd-nodeK).
			pattern := "pod" + string(p.UID) + "/" + id + "/memory.max_usage_in_bytes"
			var files []string
			for _, dir := range []string{"kubepods/", "kubepods/*/", "*/kubepods/", "*/kubepods/*/"} {
				found, _ := filepath.Glob("/sys/fs/cgroup/memory/" + dir + pattern)
				files = append(files, found...)
			}
			if len(files) == 0 {
				t.Logf("daemon container %s/%s: no cgroup v1 memory file %s found", p.Name, cs.Name, pattern)
			}
			for _, f := range files {
				if b, err := os.ReadFile(f); err == nil {
					var peak int64
					_, _ = fmt.Sscan(string(b), &peak)
					mib := float64(peak) / (1 << 20)
					t.Logf("container %s/%s peak memory (cgroup): %.1f MiB", p.Name, cs.Name, mib)
					component := p.Labels[wire.LabelComponent]
					peaks[component] = max(peaks[component], mib)
				}
			}
		}
	}
	return peaks
}

// asMap is v as an unstructured map, as the API server and Helm read JSON.
func asMap(t *testing.T, v any) map[string]any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// bulkList is an image list of about size bytes of distinct, valid
// references that no registry holds, one a line.
func bulkList(seed, size int) string {
	var b strings.Builder
	for i := 0; b.Len() < size-64; i++ {
		fmt.Fprintf(&b, "- registry.invalid/bulk/c%02d-image%06d:v1\n", seed, i)
	}
	return b.String()
}

// TestHostileObjects writes, next to good objects, every kind of object a
// tenant can write to hurt the daemon: undecodable Argo objects of all three
// kinds, parameters that expand without end, a cycle of calls, a YAML alias
// bomb and a megabyte of non-images. The good objects, including those
// written after the hostile ones, are cached; the daemon never restarts;
// every hostile object gets a Warning Event; list and status name them.
func TestHostileObjects(t *testing.T) {
	installArgoCRDs(t)
	t.Cleanup(func() { _ = testcluster.DeleteArgoCRDs(context.Background(), env.config) })
	// The planner, which reads every object, runs at the default limits
	// (--max-images=1000: each namespace and kind keeps 1,000 images). The
	// node daemon caches at most 40 of them, so that the bulk tenant's
	// pulls (which all fail) do not keep the node busy for the tests after
	// this one.
	ns, users := installWithUsers(t, "icd-hostile-", "--max-images=40")
	img := func(name string) string {
		return randomImage(t, "e2e/hostile-"+name+":"+rand.String(5), uint64(rand.Int()))
	}

	good := map[string]string{}
	good["cm-before"] = img("cm-before")
	imageList(t, users, "good-before", fmt.Sprintf("[%q]", good["cm-before"]))
	good["wt-before"] = img("wt-before")
	argoObject(t, "WorkflowTemplate", users, "good-before", container("WorkflowTemplate", map[string]any{"image": good["wt-before"]}))

	type hostile struct{ ns, name string }
	var hostiles []hostile
	argoHostile := func(kind, ns, name string, spec map[string]any) {
		argoObject(t, kind, ns, name, spec)
		eventNS := ns
		if eventNS == "" {
			eventNS = metav1.NamespaceDefault // Events on cluster-scoped objects
		}
		hostiles = append(hostiles, hostile{eventNS, name})
	}
	// Fields that do not decode into Argo's types, one per kind.
	argoHostile("WorkflowTemplate", users, "bool-command", container("WorkflowTemplate", map[string]any{"image": "alpine", "command": []any{true}}))
	argoHostile("CronWorkflow", users, "number-image", container("CronWorkflow", map[string]any{"image": 5}))
	cwt := users + "-bad-quantity"
	argoHostile("ClusterWorkflowTemplate", "", cwt, container("ClusterWorkflowTemplate",
		map[string]any{"image": "alpine", "resources": map[string]any{"limits": map[string]any{"cpu": "lots"}}}))
	// A parameter that names itself 7 times, and a 24-template cycle.
	self := strings.Repeat("{{workflow.parameters.a}}", 7)
	argoHostile("WorkflowTemplate", users, "self-reference", map[string]any{
		"arguments": map[string]any{"parameters": []any{map[string]any{"name": "a", "value": self}}},
		"templates": []any{map[string]any{"name": "main", "container": map[string]any{"image": "{{workflow.parameters.a}}"}}},
	})
	argoHostile("WorkflowTemplate", users, "call-cycle", chainSpec(24))
	// Valid input in bulk, from another tenant: 30 ConfigMaps of a
	// megabyte of distinct, valid references each (the audit's 29 made the
	// daemon OOMKilled 4 times in 4 minutes). The daemon keeps --max-images
	// of each and counts the rest; the other tenant's images are served.
	bulk := newNamespace(t)
	for i := range 30 {
		imageList(t, bulk, fmt.Sprintf("bulk-%02d", i), bulkList(i, 1_000_000))
	}
	// The Argo objects of the audit at full size: refused as too complex
	// within the budget (nested calls; expressions over many parameters),
	// or read in linear time (2,000 templates x 2,000 templateDefaults).
	argoHostile("WorkflowTemplate", bulk, "nested-calls", asMap(t, argotest.NestedCalls(4000, 100, 8)))
	argoHostile("WorkflowTemplate", bulk, "expressions", asMap(t, argotest.Expressions(1000, 30)))
	argoObject(t, "WorkflowTemplate", bulk, "defaults", asMap(t, argotest.ManyDefaults(2000, 2000, "registry.invalid/defaults/img%d")))
	// A YAML alias bomb and a megabyte of numbers.
	bomb := "- &a " + strings.Repeat("x", 20_000) + "\n" + strings.Repeat("- *a\n", 2000)
	imageList(t, users, "alias-bomb", bomb)
	hostiles = append(hostiles, hostile{users, "alias-bomb"})
	imageList(t, users, "numbers", "["+strings.Repeat("1,", 450_000)+"1]")
	hostiles = append(hostiles, hostile{users, "numbers"})

	good["cm-after"] = img("cm-after")
	imageList(t, users, "good-after", fmt.Sprintf("[%q]", good["cm-after"]))
	for _, kind := range []string{"WorkflowTemplate", "CronWorkflow", "ClusterWorkflowTemplate"} {
		key := strings.ToLower(kind) + "-after"
		good[key] = img(key)
		where, name := users, "good-after"
		if kind == "ClusterWorkflowTemplate" {
			where, name = "", users+"-good-after"
		}
		argoObject(t, kind, where, name, container(kind, map[string]any{"image": good[key]}))
	}

	for what, image := range good {
		t.Run("cached: "+what, func(t *testing.T) { waitCached(t, ns, image) })
	}
	for _, h := range hostiles {
		t.Run("event: "+h.name, func(t *testing.T) { waitEvent(t, h.ns, h.name, "InvalidImages") })
	}
	assertDaemonNotRestarted(t, ns)
	// The bound the README states: the component that reads the sources
	// stays under 128 MiB whatever a tenant writes, at the default limits.
	// (Memory, not time: what a busy machine changes little.)
	peaks := logDaemonPeakMemory(t, ns)
	if peaks["planner"] == 0 {
		t.Error("no planner's peak memory was read")
	}
	if peaks["planner"] > 128 {
		t.Errorf("a planner peaked at %.1f MiB reading these objects; the bound is 128 MiB", peaks["planner"])
	}

	bin := buildGo(t, "github.com/dcherman/image-cache-daemon/cmd/kubectl-imagecache")
	t.Run("list names the hostile objects", func(t *testing.T) {
		out := mustPlugin(t, bin, "list", "--from-sources", "-n", ns)
		for _, image := range good {
			if !strings.Contains(out, mustNormalize(t, image)[len("127.0.0.1:5000/"):]) {
				t.Errorf("list does not show %s:\n%s", image, out)
			}
		}
		for _, h := range hostiles {
			if !strings.Contains(out, "skipped: ") || !strings.Contains(out, "/"+h.name+": ") && !strings.Contains(out, " "+h.name+": ") {
				t.Errorf("list does not name %s:\n%s", h.name, out)
			}
		}
	})
	t.Run("status names the hostile objects and the images over the limit", func(t *testing.T) {
		var out string
		err := wait.PollUntilContextTimeout(context.Background(), 2*time.Second, time.Minute, true, func(context.Context) (bool, error) {
			out = mustPlugin(t, bin, "status", "-n", ns)
			return strings.Contains(out, "WorkflowTemplate "+users+"/bool-command") &&
				strings.Contains(out, "ConfigMap "+users+"/alias-bomb") &&
				strings.Contains(out, "over the daemon's limits (--max-images, --max-prefetch-pods) not cached: ") &&
				strings.Contains(out, "ConfigMap "+bulk+"/bulk-"), nil
		})
		if err != nil {
			t.Errorf("status never named the hostile objects:\n%s", out)
		}
	})
}
