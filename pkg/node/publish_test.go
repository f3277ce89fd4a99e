package node

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dcherman/image-cache-daemon/pkg/metrics"
	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// healthSource is a Source whose health the test sets.
type healthSource struct {
	fixedSource
	h wire.Health
}

func (s *healthSource) Health() wire.Health { return s.h }

// wellSources are synced sources with no problem.
func wellSources() Wants {
	return source.NewSetOf(&healthSource{h: wire.Health{Source: "static", Synced: true}})
}

// patches returns the annotations each patch of the daemon's pod set, in
// order.
func patches(t *testing.T, client *fake.Clientset) []map[string]*string {
	t.Helper()
	var out []map[string]*string
	for _, a := range client.Actions() {
		p, ok := a.(k8stesting.PatchAction)
		if !ok {
			continue
		}
		var body struct {
			Metadata struct {
				Annotations map[string]*string `json:"annotations"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(p.GetPatch(), &body); err != nil {
			t.Fatalf("patch %s: %v", p.GetPatch(), err)
		}
		out = append(out, body.Metadata.Annotations)
	}
	return out
}

// healthOnPod decodes the health annotation of the daemon's pod.
func healthOnPod(t *testing.T, client *fake.Clientset) wire.HealthReport {
	t.Helper()
	var h wire.HealthReport
	raw := onPod(t, client, wire.AnnotationHealth)
	if err := json.Unmarshal([]byte(raw), &h); err != nil {
		t.Fatalf("health annotation %q: %v", raw, err)
	}
	return h
}

// The daemon publishes its node's statuses on its own pod: first removing
// what an earlier run left there, then the last snapshot set, once each,
// and no report when they do not fit or the API server refuses them
// (status then reads the node's pods).
func TestPublisherImageReport(t *testing.T) {
	ctx := context.Background()
	self := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "daemon-x", Namespace: "icd",
		Annotations: map[string]string{wire.AnnotationReport: `{"v":1,"images":[["stale","cached"]]}`}}}
	client := fake.NewClientset(self)
	refuse := false
	client.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if refuse {
			return true, nil, apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "daemon-x",
				field.ErrorList{field.TooLong(field.NewPath("metadata", "annotations"), "", 256<<10)})
		}
		return false, nil, nil
	})
	p := newPublisher(client, "icd", "daemon-x", wellSources(), nil)
	n := 0
	publish := func(t *testing.T, want []wire.ImageStatus, wantPatch bool) {
		t.Helper()
		_, _, err := p.publish(ctx)
		if refuse != (err != nil) {
			t.Fatalf("publish: %v", err)
		}
		all := patches(t, client)
		if got := len(all) > n; got != wantPatch {
			t.Errorf("patched: %v, want %v", got, wantPatch)
		}
		n = len(all) // requests, refused ones too
		raw, ok := onPodOK(t, client, wire.AnnotationReport)
		if ok != (want != nil) {
			t.Fatalf("report on the pod: %v %q, want %v", ok, raw, want != nil)
		}
		if got, err := wire.DecodeReport("node-x", raw); ok && (err != nil || len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want))) {
			t.Errorf("published %+v %v, want %+v", got, err, want)
		}
	}

	one := []wire.ImageStatus{{Node: "node-x", Image: "docker.io/library/alpine:latest", State: wire.Pulling, Pod: "p1"}}
	two := []wire.ImageStatus{{Node: "node-x", Image: "docker.io/library/alpine:latest", State: wire.Cached, Pod: "p1", Digest: "sha256:" + strings.Repeat("a", 64)}}
	var huge []wire.ImageStatus
	for i := range 2000 {
		huge = append(huge, wire.ImageStatus{Node: "node-x", Image: fmt.Sprintf("r.example/%s:%d", strings.Repeat("x", 100), i), State: wire.Pending})
	}
	t.Run("the last run's report is removed first, with the health in the same patch", func(t *testing.T) {
		publish(t, nil, true)
		if all := patches(t, client); len(all) != 1 || len(all[0]) != 2 || all[0][wire.AnnotationReport] != nil || all[0][wire.AnnotationHealth] == nil {
			t.Errorf("first patch %v; want the report removed and the health written", all)
		}
	})
	t.Run("the last snapshot set", func(t *testing.T) {
		p.set(Snapshot{States: one})
		p.set(Snapshot{States: two})
		publish(t, two, true)
	})
	t.Run("the same again is no write", func(t *testing.T) {
		p.set(Snapshot{States: two})
		publish(t, two, false)
	})
	t.Run("too large", func(t *testing.T) {
		p.set(Snapshot{States: huge})
		publish(t, nil, true)
	})
	t.Run("no image", func(t *testing.T) {
		p.set(Snapshot{})
		publish(t, []wire.ImageStatus{}, true)
	})
	t.Run("refused by the API server", func(t *testing.T) {
		p.set(Snapshot{States: one})
		refuse = true
		publish(t, []wire.ImageStatus{}, true) // tried, refused
		refuse = false
		publish(t, nil, true) // not left standing
		publish(t, nil, false)
	})
	t.Run("run publishes at once", func(t *testing.T) {
		p.set(Snapshot{States: two})
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { p.run(ctx); close(done) }()
		defer func() { cancel(); <-done }()
		for deadline := time.Now().Add(5 * time.Second); onPod(t, client, wire.AnnotationReport) == ""; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("run did not publish")
			}
		}
	})
}

// A node's report and its warm line come from one sync and go out in one
// patch: status cannot show 11 of 11 images cached beside a warm line that
// says 1 of 11 (as two publishers once did).
func TestPublisherWritesOneSnapshotInOnePatch(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "daemon-x", Namespace: "icd"}})
	p := newPublisher(client, "icd", "daemon-x", wellSources(), nil)
	snapshot := func(cached int) Snapshot {
		var s Snapshot
		for i := range 11 {
			st := wire.ImageStatus{Node: "node-x", Image: fmt.Sprintf("r.example/app:%d", i), State: wire.Pulling, Pod: fmt.Sprintf("p%d", i)}
			if i < cached {
				st.State = wire.Cached
			}
			s.States = append(s.States, st)
		}
		s.Warm = &wire.Warmth{Warm: cached == 11, Reason: "Warming", Message: fmt.Sprintf("%d of 11 wanted images cached", cached)}
		return s
	}
	for _, cached := range []int{1, 11} {
		before := len(patches(t, client))
		p.set(snapshot(cached))
		if _, _, err := p.publish(ctx); err != nil {
			t.Fatal(err)
		}
		all := patches(t, client)
		if len(all) != before+1 {
			t.Fatalf("%d patches for one snapshot; want 1", len(all)-before)
		}
		if last := all[len(all)-1]; last[wire.AnnotationReport] == nil || last[wire.AnnotationHealth] == nil {
			t.Fatalf("the patch set %v; want the report and the health together", last)
		}
		states, err := wire.DecodeReport("node-x", onPod(t, client, wire.AnnotationReport))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, st := range states {
			if st.State == wire.Cached {
				n++
			}
		}
		h := healthOnPod(t, client)
		if want := fmt.Sprintf("%d of 11 wanted images cached", n); h.Warm == nil || h.Warm.Message != want || n != cached {
			t.Errorf("the report has %d cached, the warm line %+v; want %q from one snapshot of %d", n, h.Warm, want, cached)
		}
	}
}

// Two patches are paced by their size: a report of 1,000 failing images
// (the audit's 177 KB) goes out at most every 11 s, a small one every
// second.
func TestPublishIsPacedBySize(t *testing.T) {
	var failing []wire.ImageStatus
	for i := range 1000 {
		failing = append(failing, wire.ImageStatus{Node: "node-x", Image: fmt.Sprintf("registry.example/team/app-%04d:v1", i),
			State: wire.Failed, Message: strings.Repeat("failed to pull: not found ", 5)})
	}
	client := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "daemon-x", Namespace: "icd"}})
	p := newPublisher(client, "icd", "daemon-x", wellSources(), nil)
	p.set(Snapshot{States: failing})
	_, sent, err := p.publish(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pause := publishPause(publishEvery, sent)
	t.Logf("a report of %d failing images is %d bytes; the next waits %s", len(failing), sent, pause)
	if sent < 100<<10 || pause < time.Duration(sent/publishBytesPerSecond)*time.Second {
		t.Errorf("a report of %d bytes waits %s; want at least %d s", sent, pause, sent/publishBytesPerSecond)
	}
	if p := publishPause(publishEvery, 200); p != publishEvery {
		t.Errorf("a small report waits %s; want %s", p, publishEvery)
	}
}

// The daemon writes its sources' health on its own pod only when it
// changed, and fails readiness while a source cannot read.
func TestHealthIsPublishedOnChangeAndGatesReadiness(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "daemon-x", Namespace: "icd"}})
	src := &healthSource{h: wire.Health{Source: "configmaps", Synced: true}}
	sources := source.NewSetOf(src)
	m := metrics.New()
	p := newPublisher(client, "icd", "daemon-x", sources, m)
	for range 3 {
		if _, _, err := p.publish(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(patches(t, client)); n != 1 {
		t.Errorf("an unchanged health was written %d times, want once", n)
	}
	if err := sourcesReady(sources); err != nil {
		t.Errorf("sourcesReady = %v with every source well", err)
	}

	src.h.Problem = `configmaps is forbidden: User "x" cannot list resource "configmaps"`
	if _, _, err := p.publish(ctx); err != nil {
		t.Fatal(err)
	}
	all := patches(t, client)
	if len(all) != 2 || len(all[1]) != 1 || all[1][wire.AnnotationHealth] == nil {
		t.Errorf("a changed health made the patches %v; want a second one of the health alone", all)
	}
	if v := testutil.ToFloat64(m.SourceHealthy.WithLabelValues("configmaps")); v != 0 {
		t.Errorf("image_cache_source_healthy{source=configmaps} = %v for a forbidden source", v)
	}
	if err := sourcesReady(sources); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("sourcesReady = %v, want the forbidden source", err)
	}
	if h := healthOnPod(t, client); len(h.Sources) != 1 || h.Sources[0].Problem != src.h.Problem {
		t.Errorf("published %+v", h)
	}
}
