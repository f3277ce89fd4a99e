package cli

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// forgedReport says every image of cluster() is cached on node-b; a daemon
// pod that carried it would make status lie.
func forgedReport(t *testing.T) string {
	t.Helper()
	var states []wire.ImageStatus
	for _, img := range []string{"docker.io/library/alpine:latest", "docker.io/library/nginx:1.27", "registry.example/missing:v1"} {
		states = append(states, wire.ImageStatus{Image: img, State: wire.Cached, Pod: "forged"})
	}
	raw, ok := wire.EncodeReport(states)
	if !ok {
		t.Fatal("the forged report does not encode")
	}
	return raw
}

// withForgedDaemons adds to objs, for node-b, pods that claim to be its
// daemon: running, newer than the real one, carrying the forged report. One
// has no owner, one a copy of the DaemonSet's owner reference with another
// UID (a DaemonSet deleted and made again), one the live UID as a mere
// owner, not controller.
func withForgedDaemons(t *testing.T, objs []runtime.Object) []runtime.Object {
	t.Helper()
	forge := func(name string, refs []metav1.OwnerReference) *corev1.Pod {
		p := daemonPodOn("node-b")
		p.Name, p.OwnerReferences = name, refs
		p.CreationTimestamp = metav1.NewTime(now)
		p.Annotations = map[string]string{wire.AnnotationReport: forgedReport(t),
			wire.AnnotationHealth: `{"sources":[{"source":"static","synced":true}],"warm":{"warm":true,"reason":"Warm","took":"1s"}}`}
		p.Status.Phase = corev1.PodRunning
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "daemon", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
		return p
	}
	stale := slices.Clone(daemonPodOn("node-b").OwnerReferences)
	stale[0].UID = "stale-uid"
	owned := slices.Clone(daemonPodOn("node-b").OwnerReferences)
	owned[0].Controller = nil
	return append(objs, forge("aaa-forged-no-owner", nil), forge("aaa-forged-stale-uid", stale), forge("aaa-forged-not-controller", owned))
}

// A pod that claims to be a node's daemon but is not the DaemonSet's is
// ignored and named, whether status reads the reports or the pods, however
// often it runs: the output is the one without it, plus a line per pod.
func TestStatusIgnoresForgedDaemons(t *testing.T) {
	const ignored = "ignored: pod aaa-forged-no-owner claims node node-b but is not the DaemonSet's\n" +
		"ignored: pod aaa-forged-not-controller claims node node-b but is not the DaemonSet's\n" +
		"ignored: pod aaa-forged-stale-uid claims node node-b but is not the DaemonSet's\n"
	for name, objs := range map[string][]runtime.Object{
		"reports": withReports(t, cluster()),
		"pods":    cluster(),
	} {
		t.Run(name, func(t *testing.T) {
			want, err := runStatus(t, objs)
			if err != nil {
				t.Fatal(err)
			}
			want = strings.Replace(want, "problem ", ignored+"problem ", 1)
			// Which pod speaks for a node does not depend on the order
			// in which the pods come: 20 runs, one output.
			for range 20 {
				got, err := runStatus(t, withForgedDaemons(t, objs))
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Fatalf("output:\n%s\nwant:\n%s", got, want)
				}
			}
		})
	}
}

// A node's pods that claim to hold its cache count only if they are the
// installation's (cachestate.Owners): a copied UID of a DaemonSet that is
// not the live one, or the live UID on a pod that runs its own command, is
// not trusted, and the pod is named.
func TestStatusIgnoresForgedPrefetchPods(t *testing.T) {
	forge := func(name string, owner *metav1.OwnerReference, change func(*corev1.Pod)) *corev1.Pod {
		cfg := prefetch.Config{Namespace: "image-cache-daemon", NodeName: "node-b", WardenImage: "w", BatchSize: 20, Owner: owner}
		p := cfg.Pod([]string{"docker.io/library/nginx:1.27"}, 7, corev1.PullIfNotPresent)
		p.Name, p.CreationTimestamp = name, metav1.NewTime(now)
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "warden", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}}}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: p.Spec.Containers[0].Name,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: metav1.NewTime(now)}}}}
		if change != nil {
			change(p)
		}
		return p
	}
	stale := *dsOwner
	stale.UID = "stale-uid"
	objs := append(cluster(),
		forge("icd-forged-stale", &stale, nil),
		forge("icd-forged-command", dsOwner, func(p *corev1.Pod) { p.Spec.Containers[0].Command = []string{"/bin/true"} }),
		forge("icd-forged-node", dsOwner, func(p *corev1.Pod) { p.Labels[wire.LabelNode] = "node-a" }))
	want, err := runStatus(t, cluster(), "-o", "wide")
	if err != nil {
		t.Fatal(err)
	}
	got, err := runStatus(t, objs, "-o", "wide")
	if err != nil {
		t.Fatal(err)
	}
	want = strings.Replace(want, "problem ", ""+
		"ignored: pod icd-forged-command claims to hold the cache of node node-b but is not the DaemonSet's\n"+
		"ignored: pod icd-forged-node claims to hold the cache of node node-b but is not the DaemonSet's\n"+
		"ignored: pod icd-forged-stale claims to hold the cache of node node-b but is not the DaemonSet's\n"+
		"problem ", 1)
	if got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}

// Many pods that claim nodes make a few lines, not one each.
func TestIgnoredLinesBounded(t *testing.T) {
	var pods []ignoredPod
	for i := range 1000 {
		pods = append(pods, ignoredPod{Pod: "p" + strings.Repeat("x", i%7), Node: "n", Component: wire.ComponentDaemon})
	}
	lines := ignoredLines(pods)
	if len(lines) != namedAtMost+1 || lines[namedAtMost] != "ignored: 995 more pods that claim nodes but are not the DaemonSet's" {
		t.Errorf("lines: %q", lines)
	}
}

// hostile is what a forger, a registry or a tenant can get into what
// status prints: escape sequences that clear the screen or set the title,
// a bidi override, isolates, zero-width characters and a line break.
const hostile = "\x1b[2J\x1b]0;pwned\x07 evil\u202etxt.exe \u2066x\u2069 a\u200bb\ufeff\nfake: line"

// withHostileText puts hostile text in the daemons' health annotations
// (problems, warm state) and in the kubelet's message of the failed pull.
func withHostileText(objs []runtime.Object) []runtime.Object {
	for _, o := range objs {
		p, ok := o.(*corev1.Pod)
		if !ok {
			continue
		}
		switch {
		case p.Name == "daemon-node-b":
			h := wire.HealthReport{
				Sources: []wire.Health{{Source: "configmaps", Problem: hostile}},
				Warm:    &wire.Warmth{Reason: "Warming" + hostile, Message: hostile},
			}
			raw, _ := json.Marshal(h)
			p.Annotations[wire.AnnotationHealth] = string(raw)
		case p.Labels[wire.LabelComponent] == wire.ComponentPrefetch && cachestate.Node(p) == "node-a" && len(p.Spec.Containers) == 1:
			p.Status.ContainerStatuses[0].State.Waiting.Message = hostile
		}
	}
	return objs
}

// Hostile text prints escaped, in every format, from the pods and from the
// reports alike: no byte a terminal acts on, no bidi or zero-width
// character reaches it, and each line stays a line.
func TestStatusPrintsHostileTextSafely(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"status-hostile", nil},
		{"status-hostile-wide", []string{"-o", "wide"}},
		{"status-hostile-json", []string{"-o", "json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, reports := range []bool{false, true} {
				objs := withHostileText(cluster())
				if reports {
					objs = withReports(t, objs)
				}
				out, err := runStatus(t, objs, tc.args...)
				if err != nil {
					t.Fatal(err)
				}
				if i := strings.IndexFunc(out, func(r rune) bool {
					return r != '\n' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || strings.ContainsRune("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u200b\u200c\u200d\u2060\ufeff", r))
				}); i >= 0 {
					t.Errorf("reports=%v: an unsafe character at byte %d:\n%q", reports, i, out)
				}
				if strings.Contains(out, "\nfake: line") {
					t.Errorf("reports=%v: a line break in cluster text made a line:\n%s", reports, out)
				}
				golden(t, filepath.Join("testdata", tc.name+".golden"), []byte(out))
			}
		})
	}
}

// add --wait names a failed pull with the kubelet's message, escaped.
func TestAddWaitPrintsHostileTextSafely(t *testing.T) {
	o, _, out := editOptions(false, withHostileText(cluster())...)
	o.Wait.Enabled, o.Wait.Interval, o.Wait.Timeout = true, 10*time.Millisecond, time.Minute
	err := runOptions(t, o, "registry.example/missing:v1")
	want := `registry.example/missing:v1 on node node-a: ImagePullBackOff: \x1b[2J\x1b]0;pwned\a evil\u202etxt.exe \u2066x\u2069 a\u200bb\ufeff\nfake: line`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v\nwant it to hold %s", err, want)
	}
	if strings.ContainsAny(out.String()+err.Error(), "\x1b\u202e\u200b") {
		t.Errorf("unsafe output: %q / %q", out, err)
	}
}
