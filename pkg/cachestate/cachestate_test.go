package cachestate

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func pod(name string, created time.Time, node string, init *corev1.ContainerState, states ...corev1.ContainerState) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created),
			Annotations: map[string]string{wire.AnnotationNodeName: "node-1"}},
		Spec: corev1.PodSpec{NodeName: node, InitContainers: []corev1.Container{{Name: WardenInitName, Image: "warden"}}},
	}
	if init != nil {
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: WardenInitName, State: *init}}
	}
	for i, st := range states {
		name := string(rune('a' + i))
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: name, Image: "img-" + name})
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: name, State: st, ImageID: "docker.io/library/img@sha256:" + strings.Repeat(name, 64)})
	}
	return p
}

var (
	initDone = &corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}
	cached   = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, FinishedAt: metav1.NewTime(t0)}}
	creating = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	backoff  = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "x": not found`}}
	running  = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	crashed  = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 127, Reason: "Error", Message: "exec format error"}}
)

// failedPhase sets a pod's phase to Failed with the kubelet's reason and
// message, as admission rejection or eviction leaves it.
func failedPhase(p *corev1.Pod, reason, message string) *corev1.Pod {
	p.Status.Phase, p.Status.Reason, p.Status.Message = corev1.PodFailed, reason, message
	return p
}

func TestFromPod(t *testing.T) {
	const rejected = "Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: 110, capacity: 110"
	for _, tc := range []struct {
		name     string
		pod      *corev1.Pod
		want     []wire.State
		finished bool
		// reason and message of the failed images, when the test cares
		reason, message string
	}{
		{"unscheduled", pod("p", t0, "", nil, corev1.ContainerState{}), []wire.State{wire.Pending}, false, "", ""},
		{"warden not installed yet", pod("p", t0, "node-1", &corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}, creating), []wire.State{wire.Pending}, false, "", ""},
		{"pulling", pod("p", t0, "node-1", initDone, creating), []wire.State{wire.Pulling}, false, "", ""},
		{"running warden", pod("p", t0, "node-1", initDone, running), []wire.State{wire.Pulling}, false, "", ""},
		{"cached and failed", pod("p", t0, "node-1", initDone, cached, backoff), []wire.State{wire.Cached, wire.Failed}, true, "", ""},
		{"non-zero exit", pod("p", t0, "node-1", initDone, crashed), []wire.State{wire.Failed}, true, "", ""},
		{"warden image fails: every image fails", pod("p", t0, "node-1",
			&corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "warden: not found"}},
			creating, creating), []wire.State{wire.Failed, wire.Failed}, true, "", ""},
		{"rejected at admission: no container status at all", func() *corev1.Pod {
			p := failedPhase(pod("p", t0, "node-1", nil, creating, creating), "OutOfpods", rejected)
			p.Status.ContainerStatuses = nil
			return p
		}(), []wire.State{wire.Failed, wire.Failed}, true, "OutOfpods", rejected},
		{"failed pod: containers left waiting", failedPhase(pod("p", t0, "node-1", initDone, creating),
			"NodeAffinity", "Pod was rejected: node(s) didn't match Pod's node affinity"), []wire.State{wire.Failed}, true,
			"NodeAffinity", "Pod was rejected: node(s) didn't match Pod's node affinity"},
		{"failed pod: what was cached stays cached", failedPhase(pod("p", t0, "node-1", initDone, cached, running),
			"Evicted", "The node was low on resource: ephemeral-storage."), []wire.State{wire.Cached, wire.Failed}, true,
			"Evicted", "The node was low on resource: ephemeral-storage."},
		{"failed pod without a reason still says why", failedPhase(pod("p", t0, "node-1", nil, corev1.ContainerState{}), "", ""),
			[]wire.State{wire.Failed}, true, "Failed", "the pod failed before this container ran"},
		{"succeeded pod: unchanged", func() *corev1.Pod {
			p := pod("p", t0, "node-1", initDone, cached)
			p.Status.Phase = corev1.PodSucceeded
			return p
		}(), []wire.State{wire.Cached}, true, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := FromPod(tc.pod)
			if len(got) != len(tc.want) {
				t.Fatalf("%d statuses, want %d", len(got), len(tc.want))
			}
			for i, st := range got {
				if st.State != tc.want[i] {
					t.Errorf("image %d: %s, want %s (%+v)", i, st.State, tc.want[i], st)
				}
				if st.Node != "node-1" || st.Pod != "p" {
					t.Errorf("node %q pod %q", st.Node, st.Pod)
				}
				if st.State == wire.Failed && st.Message == "" {
					t.Errorf("failed without a message: %+v", st)
				}
				if st.State == wire.Failed && tc.reason != "" && (st.Reason != tc.reason || st.Message != tc.message) {
					t.Errorf("image %d: failed with %q: %q, want %q: %q", i, st.Reason, st.Message, tc.reason, tc.message)
				}
				if st.State == wire.Cached && (!strings.HasPrefix(st.Digest, "sha256:") || !st.Since.Equal(t0)) {
					t.Errorf("cached without digest or time: %+v", st)
				}
			}
			if Finished(tc.pod) != tc.finished {
				t.Errorf("Finished = %t, want %t", !tc.finished, tc.finished)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	deleting := func(p *corev1.Pod) *corev1.Pod {
		p.DeletionTimestamp = &metav1.Time{Time: t0}
		return p
	}
	// Each pod holds img-a (and img-b with a second state); "old" pods are
	// an hour older than "new" ones.
	old, newT := t0, t0.Add(time.Hour)
	type want struct {
		node, image, pod string
		state            wire.State
	}
	for _, tc := range []struct {
		name string
		pods []*corev1.Pod
		want []want
	}{
		{"newest live pod speaks", []*corev1.Pod{
			pod("old", old, "node-1", initDone, backoff), pod("new", newT, "node-1", initDone, creating)},
			[]want{{"node-1", "img-a", "new", wire.Pulling}}},
		{"a live pod where the image is cached speaks over a newer one where it is pulling", []*corev1.Pod{
			pod("new", newT, "node-1", initDone, creating), pod("old", old, "node-1", initDone, cached)},
			[]want{{"node-1", "img-a", "old", wire.Cached}}},
		{"a live pod where the image is cached speaks over a newer one where it failed", []*corev1.Pod{
			pod("old", old, "node-1", initDone, cached), pod("new", newT, "node-1", initDone, backoff)},
			[]want{{"node-1", "img-a", "old", wire.Cached}}},
		{"of two live pods where it is cached, the newest speaks", []*corev1.Pod{
			pod("old", old, "node-1", initDone, cached), pod("new", newT, "node-1", initDone, cached)},
			[]want{{"node-1", "img-a", "new", wire.Cached}}},
		{"a resync: the live pod speaks over the deleted one, cached or not", []*corev1.Pod{
			deleting(pod("going", newT.Add(time.Hour), "node-1", initDone, cached)), pod("fresh", newT, "node-1", initDone, creating)},
			[]want{{"node-1", "img-a", "fresh", wire.Pulling}}},
		{"among deleted pods, the newest speaks, cached or not", []*corev1.Pod{
			deleting(pod("old", old, "node-1", initDone, cached)), deleting(pod("new", newT, "node-1", initDone, backoff))},
			[]want{{"node-1", "img-a", "new", wire.Failed}}},
		{"created in the same second: the first by name", []*corev1.Pod{
			pod("b", old, "node-1", initDone, cached), pod("a", old, "node-1", initDone, cached)},
			[]want{{"node-1", "img-a", "a", wire.Cached}}},
		{"image by image, and node by node", []*corev1.Pod{
			pod("new", newT, "node-1", initDone, creating, cached),
			pod("old", old, "node-1", initDone, cached, backoff),
			pod("other", newT, "node-2", initDone, backoff)},
			[]want{{"node-1", "img-a", "old", wire.Cached}, {"node-1", "img-b", "new", wire.Cached}, {"node-2", "img-a", "other", wire.Failed}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []want
			for _, st := range Summarize(tc.pods) {
				got = append(got, want{st.Node, st.Image, st.Pod, st.State})
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Summarize:\n got  %+v\n want %+v", got, tc.want)
			}
		})
	}
}

// A resync's fresh pull that failed leaves the image cached (it is on the
// node, held by the older pod) and says why on its row.
func TestSummarizeSaysAFailedFreshPull(t *testing.T) {
	old, fresh := pod("old", t0, "node-1", initDone, cached), pod("fresh", t0.Add(time.Hour), "node-1", initDone, backoff)
	got := Summarize([]*corev1.Pod{fresh, old})
	if len(got) != 1 || got[0].State != wire.Cached || got[0].Pod != "old" {
		t.Fatalf("Summarize = %+v, want img-a cached in pod old", got)
	}
	failure := FromPod(fresh)[0]
	if got[0].Reason != failure.Reason || !strings.Contains(got[0].Message, "pulling it again in pod fresh failed: "+failure.Message) {
		t.Errorf("the failed fresh pull is not said: reason %q, message %q", got[0].Reason, got[0].Message)
	}
	if got := Summarize([]*corev1.Pod{old}); got[0].Reason != "" || got[0].Message != "" {
		t.Errorf("a plain cached image carries a reason: %+v", got[0])
	}
}

func TestDigest(t *testing.T) {
	d := "sha256:" + strings.Repeat("f", 64)
	for in, want := range map[string]string{
		"docker.io/library/alpine@" + d: d,
		"127.0.0.1:5000/x@" + d:         d,
		d:                               d,
		"docker-pullable://alpine@" + d: d,
		"":                              "",
	} {
		if got := Digest(in); got != want {
			t.Errorf("Digest(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkFromPod(b *testing.B) {
	states := make([]corev1.ContainerState, 20)
	for i := range states {
		states[i] = cached
	}
	p := pod("p", t0, "node-1", initDone, states...)
	b.ReportAllocs()
	for b.Loop() {
		FromPod(p)
	}
}

// A pull the kubelet refused under its own rate limit says nothing about
// the image: it is pending, not failed, and the pod is not finished.
func TestPullQPSExceededIsPending(t *testing.T) {
	for _, reason := range []string{"ErrImagePull", "ImagePullBackOff"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p"},
			Spec:       corev1.PodSpec{NodeName: "n", Containers: []corev1.Container{{Name: "a", Image: "docker.io/library/a:latest"}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "a",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "pull QPS exceeded"}}}}},
		}
		st := FromPod(pod)
		if len(st) != 1 || st[0].State != wire.Pending || Finished(pod) {
			t.Errorf("%s: pull QPS exceeded reads %+v, finished %v; want pending", reason, st, Finished(pod))
		}
	}
}
