package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// digestOld is an alpine digest older than the one its tag points to now.
var digestOld = "sha256:" + strings.Repeat("e", 64)

// staleCluster is cluster() where node-b holds alpine under an older digest
// than its tag's current one (node-a holds the current one), and both
// nodes hold busybox pinned by digest.
func staleCluster() []runtime.Object {
	objs := cluster()
	for _, o := range objs {
		p := o.(*corev1.Pod)
		if p.Spec.NodeName != "node-b" || p.Labels[wire.LabelComponent] != wire.ComponentPrefetch {
			continue
		}
		for i, c := range p.Spec.Containers {
			if c.Image == alpineRef {
				p.Status.ContainerStatuses[i].ImageID = "docker.io/library/alpine@" + digestOld
			}
		}
	}
	for _, node := range []string{"node-a", "node-b"} {
		p := prefetchPod(node, []string{pinnedRef}, cachedState)
		p.Status.ContainerStatuses[0].ImageID = pinnedRef
		objs = append(objs, p)
	}
	return objs
}

// status counts per image the nodes that hold an older digest than the one
// the planner's set gives (STALE), shows "-" for a tag the planner could
// not check and names it below the table with why, and never counts a
// reference pinned by digest; -o wide names both digests of a stale row;
// -o json gives each image's current digest and stale count, and each
// node's row whether it is stale. The same from the pods and from the
// daemons' reports.
func TestStatusStaleness(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"status-stale", nil},
		{"status-stale-wide", []string{"-o", "wide"}},
		{"status-stale-json", []string{"-o", "json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, reports := range []bool{false, true} {
				objs := staleCluster()
				if reports {
					objs = withoutPrefetchPods(withReports(t, objs))
				}
				out, err := runStatus(t, objs, tc.args...)
				if err != nil {
					t.Fatal(err)
				}
				golden(t, filepath.Join("testdata", tc.name+".golden"), []byte(out))
			}
		})
	}

	// The cells themselves, so that a golden file written wrong fails.
	out, err := runStatus(t, staleCluster())
	if err != nil {
		t.Fatal(err)
	}
	cells := tableCells(out)
	for _, want := range [][]string{
		{"IMAGE", "CACHED", "STALE", "PULLING", "FAILED", "DIGEST"},
		{"alpine", "2/2", "1", "0", "0", "2 digests"},
		{"busybox@" + pinnedDigest(), "2/2", "0", "0", "0", shortDigest(pinnedDigest())},
		{"nginx:1.27", "1/2", "0", "1", "0", shortDigest(digestB)},
		{"registry.example/missing:v1", "0/2", "-", "0", "1"},
	} {
		if !hasRow(cells, want) {
			t.Errorf("no row %q in:\n%s", want, out)
		}
	}
	if want := "\nnot checked (pulled again every resync): registry.example/missing:v1: the registry has no such tag (HTTP 404)\n"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}

	out, err = runStatus(t, staleCluster(), "-o", "wide")
	if err != nil {
		t.Fatal(err)
	}
	cells = tableCells(out)
	for _, want := range [][]string{
		{"NODE", "IMAGE", "STATE", "DIGEST", "CURRENT", "SINCE", "MESSAGE"},
		{"node-a", "alpine", "cached", shortDigest(digestA), "30m"},                         // current: CURRENT empty
		{"node-b", "alpine", "cached", shortDigest(digestOld), shortDigest(digestA), "30m"}, // older: both named
		{"node-b", "nginx:1.27", "pulling"},
		{"node-a", "registry.example/missing:v1", "failed", "-", `ImagePullBackOff: Back-off pulling image "registry.example/missing:v1": not found`},
	} {
		if !hasRow(cells, want) {
			t.Errorf("no row %q in:\n%s", want, out)
		}
	}

	out, err = runStatus(t, staleCluster(), "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Images []struct {
			Image, Digest, Unchecked string
			Stale                    *int
		}
		Status []struct {
			Node, Image, Digest string
			Stale               bool
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	type image struct {
		digest, unchecked string
		stale             string
	}
	images := map[string]image{}
	for _, im := range doc.Images {
		stale := "absent"
		if im.Stale != nil {
			stale = fmt.Sprint(*im.Stale)
		}
		images[im.Image] = image{im.Digest, im.Unchecked, stale}
	}
	for img, want := range map[string]image{
		alpineRef:  {digestA, "", "1"},
		nginxRef:   {digestB, "", "0"},
		pinnedRef:  {pinnedDigest(), "", "0"},
		missingRef: {"", "the registry has no such tag (HTTP 404)", "absent"},
	} {
		if got := images[img]; got != want {
			t.Errorf("-o json: %s: %+v, want %+v", img, got, want)
		}
	}
	stale := map[string]bool{}
	for _, st := range doc.Status {
		stale[st.Node+" "+st.Image] = st.Stale
	}
	for row, want := range map[string]bool{"node-a " + alpineRef: false, "node-b " + alpineRef: true, "node-a " + nginxRef: false, "node-b " + pinnedRef: false} {
		if got, ok := stale[row]; !ok || got != want {
			t.Errorf("-o json: status of %s: stale %v (present %v), want %v", row, got, ok, want)
		}
	}
}

func pinnedDigest() string { return "sha256:" + strings.Repeat("c", 64) }

// tableCells splits a table's lines into cells (three spaces or more
// apart, as kubectl's tables are).
func tableCells(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		var cells []string
		for _, c := range strings.Split(line, "   ") {
			if c = strings.TrimSpace(c); c != "" {
				cells = append(cells, c)
			}
		}
		rows = append(rows, cells)
	}
	return rows
}

func hasRow(rows [][]string, want []string) bool {
	for _, r := range rows {
		if strings.Join(r, "|") == strings.Join(want, "|") {
			return true
		}
	}
	return false
}

// Without a set to read (none published yet, one that does not decode, one
// the user may not read), status still prints the cache, with "-" in
// STALE and one line saying why; -o json says it in wantedSetProblem. A
// reference pinned by digest is its own current digest even then.
func TestStatusWithoutTheSet(t *testing.T) {
	const missing = "STALE unknown: the planner has published no wanted set in namespace image-cache-daemon yet (kubectl -n image-cache-daemon get deployment image-cache-daemon-planner)"
	for _, tc := range []struct {
		name  string
		spoil func(*fake.Clientset)
		line  string
	}{
		{"missing", func(c *fake.Clientset) {
			if err := c.CoreV1().ConfigMaps(ns).Delete(context.Background(), wanted.ConfigMap, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, missing},
		{"does not decode", func(c *fake.Clientset) {
			if _, err := c.CoreV1().ConfigMaps(ns).Update(context.Background(), setConfigMap([]byte("not a set, not even gzip")), metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}, "STALE unknown: configmap/image-cache-daemon-wanted -n image-cache-daemon: the wanted set is not gzip: gzip: invalid header"},
		{"forbidden", func(c *fake.Clientset) {
			c.PrependReactor("get", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
				if a.(k8stesting.GetAction).GetName() != wanted.ConfigMap {
					return false, nil, nil
				}
				return true, nil, apierrors.NewForbidden(corev1.Resource("configmaps"), wanted.ConfigMap, errors.New("no"))
			})
		}, `STALE unknown: reading the planner's wanted set needs get on configmap/image-cache-daemon-wanted -n image-cache-daemon (and its parts, image-cache-daemon-wanted-1...): configmaps "image-cache-daemon-wanted" is forbidden: no`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := newClient(staleCluster()...)
			tc.spoil(client)
			out, err := runStatusWith(t, client)
			if err != nil {
				t.Fatal(err)
			}
			cells := tableCells(out)
			for _, want := range [][]string{
				{"alpine", "2/2", "-", "0", "0", "2 digests"},
				{"busybox@" + pinnedDigest(), "2/2", "0", "0", "0", shortDigest(pinnedDigest())},
				{"nginx:1.27", "1/2", "-", "1", "0", shortDigest(digestB)},
				{"registry.example/missing:v1", "0/2", "-", "0", "1"},
			} {
				if !hasRow(cells, want) {
					t.Errorf("no row %q in:\n%s", want, out)
				}
			}
			if strings.Count(out, "STALE unknown") != 1 || !strings.Contains(out, "\n"+tc.line+"\n") {
				t.Errorf("output does not say once %q:\n%s", tc.line, out)
			}
			if strings.Contains(out, "not checked") {
				t.Errorf("with no set, no tag is named unchecked:\n%s", out)
			}

			out, err = runStatusWith(t, client, "-o", "wide")
			if err != nil {
				t.Fatal(err)
			}
			if cells := tableCells(out); !hasRow(cells, []string{"node-b", "alpine", "cached", shortDigest(digestOld), "-", "30m"}) {
				t.Errorf("-o wide: no CURRENT \"-\" for alpine on node-b:\n%s", out)
			}

			out, err = runStatusWith(t, client, "-o", "json")
			if err != nil {
				t.Fatal(err)
			}
			var doc struct{ WantedSetProblem string }
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatal(err)
			}
			if want := strings.TrimPrefix(tc.line, "STALE unknown: "); doc.WantedSetProblem != want {
				t.Errorf("-o json: wantedSetProblem %q, want %q", doc.WantedSetProblem, want)
			}
		})
	}
}

// The images the planner could not check are named a line per reason, a
// few images a line and a few lines in all, then counted.
func TestUncheckedLines(t *testing.T) {
	var unchecked []uncheckedImage
	for i := range 7 {
		unchecked = append(unchecked, uncheckedImage{image: fmt.Sprintf("docker.io/library/a%d:latest", i), why: "not checked yet"})
	}
	for i := range 7 {
		unchecked = append(unchecked, uncheckedImage{image: fmt.Sprintf("registry.example/b%d:v1", i), why: fmt.Sprintf("reason %d", i)})
	}
	got := uncheckedLines(unchecked)
	want := []string{
		"not checked (pulled again every resync): a0, a1, a2, a3, a4, ... (2 more): not checked yet",
		"not checked (pulled again every resync): registry.example/b0:v1: reason 0",
		"not checked (pulled again every resync): registry.example/b1:v1: reason 1",
		"not checked (pulled again every resync): registry.example/b2:v1: reason 2",
		"not checked (pulled again every resync): registry.example/b3:v1: reason 3",
		"not checked: and 3 more images, for other reasons (kubectl imagecache list -o json names each)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := uncheckedLines(nil); got != nil {
		t.Errorf("no image: %q", got)
	}
}

// add --wait waits until every node holds the digest the planner's set
// gives the tag: a node that holds an older one keeps it waiting until it
// pulls the current one. Where the set gives none (the tag is unchecked,
// the set does not decode) any digest will do, as before; a reference
// pinned by digest is done once cached.
func TestAddWaitForTheCurrentDigest(t *testing.T) {
	unchecked := testSet()
	unchecked.Images[0].Digest, unchecked.Images[0].Since, unchecked.Images[0].Unchecked = "", 0, "the registry refused the planner (HTTP 401)"
	encoded := func(s *wanted.Set) []byte {
		b, err := wanted.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		return b.Head
	}
	for _, tc := range []struct {
		name  string
		set   []byte
		image string
		// done: the wait ends at once; else it ends once node-b holds
		// alpine's current digest.
		done bool
	}{
		{"node-b holds an older digest", encoded(testSet()), "alpine", false},
		{"unchecked", encoded(unchecked), "alpine", true},
		{"the set does not decode", []byte("not a set, not even gzip"), "alpine", true},
		{"pinned", encoded(testSet()), pinnedRef, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := staleCluster()
			o, client, _ := editOptions(false, objs...)
			if _, err := client.CoreV1().ConfigMaps(ns).Update(context.Background(), setConfigMap(tc.set), metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			out := newSyncBuffer()
			o.Out = out
			o.Wait.Enabled, o.Wait.Interval = true, 10*time.Millisecond
			done := make(chan error)
			go func() { done <- runOptions(t, o, tc.image) }()
			if !tc.done {
				out.waitFor(t, "cached: alpine 2/2 (1 at an older digest)\n", 1)
				select {
				case err := <-done:
					t.Fatalf("the wait ended with node-b at an older digest: %v\n%s", err, out)
				case <-time.After(100 * time.Millisecond):
				}
				// node-b pulls the tag again: its new pod holds the current digest.
				p := prefetchPodOf(t, objs, "node-b", alpineRef).DeepCopy()
				p.ResourceVersion = "9"
				for i, c := range p.Spec.Containers {
					if c.Image == alpineRef {
						p.Status.ContainerStatuses[i].ImageID = "docker.io/library/alpine@" + digestA
					}
				}
				if err := client.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), p, ns); err != nil {
					t.Fatal(err)
				}
			}
			ended(t, done, out)
			img := "alpine"
			if tc.image == pinnedRef {
				img = "busybox@" + pinnedDigest()
			}
			if want := "cached: " + img + " 2/2\nevery node (2) has " + img + "\n"; !strings.HasSuffix(out.String(), want) {
				t.Errorf("output:\n%s\nwant it to end with:\n%s", out, want)
			}
			if told := strings.Contains(out.String(), "\nany digest will do: configmap/image-cache-daemon-wanted -n image-cache-daemon: the wanted set is not gzip"); told != (tc.name == "the set does not decode") {
				t.Errorf("output says whether any digest will do: %v, want %v:\n%s", told, !told, out)
			}
		})
	}
}

// status --watch reads the planner's set again every setEvery, and redraws
// when it changed though no pod did: a tag that moved shows its stale
// nodes.
func TestStatusWatchRedrawsWhenTheSetChanges(t *testing.T) {
	defer func(e time.Duration) { setEvery = e }(setEvery)
	setEvery = 20 * time.Millisecond
	client := newClient(cluster()...)
	out := newSyncBuffer()
	o := &StatusOptions{IOStreams: genericiooptions.IOStreams{Out: out, ErrOut: newSyncBuffer()},
		kube:     kube{flags: genericclioptions.NewConfigFlags(false), client: client},
		Interval: 100 * time.Millisecond, now: func() time.Time { return now }}
	cmd := newCmdStatus(o)
	cmd.SetArgs([]string{"--watch"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	const row = "alpine                        2/2      %s       0         0        sha256:aaaaaaaaaaaa"
	out.waitFor(t, fmt.Sprintf(row, "0"), 1)

	moved := testSet()
	moved.Images[0].Digest = "sha256:" + strings.Repeat("f", 64)
	data, err := wanted.Encode(moved)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().ConfigMaps(ns).Update(ctx, setConfigMap(data.Head), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, fmt.Sprintf(row, "2"), 1)
}
