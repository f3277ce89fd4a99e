package node

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/dcherman/image-cache-daemon/pkg/metrics"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// forge writes value into the annotation key of the daemon's pod, as
// anyone who may patch pods in the namespace can, and returns the pod as
// the watch would show it.
func forge(t *testing.T, client *fake.Clientset, key, value string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	p, err := client.CoreV1().Pods("icd").Get(ctx, "daemon-x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Annotations[key] = value
	if p, err = client.CoreV1().Pods("icd").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

func onPod(t *testing.T, client *fake.Clientset, key string) string {
	t.Helper()
	v, _ := onPodOK(t, client, key)
	return v
}

// onPodOK is the annotation key of the daemon's pod, and whether it is there.
func onPodOK(t *testing.T, client *fake.Clientset, key string) (string, bool) {
	t.Helper()
	p, err := client.CoreV1().Pods("icd").Get(context.Background(), "daemon-x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, ok := p.Annotations[key]
	return v, ok
}

func patchCount(client *fake.Clientset) int {
	n := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "patch" {
			n++
		}
	}
	return n
}

// testPublisher is the daemon's publisher with one snapshot set and a clock
// the test moves.
func testPublisher(client *fake.Clientset) (*publisher, *time.Time) {
	p := newPublisher(client, "icd", "daemon-x", wellSources(), metrics.New())
	p.set(Snapshot{States: []wire.ImageStatus{{Image: "docker.io/library/alpine:latest", State: wire.Cached, Pod: "p1"}}})
	clock := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return clock }
	return p, &clock
}

// A forged annotation does not stand: the daemon writes its own value
// again as soon as it sees the pod, and a forger who keeps at it meets
// writes paced from a second up to a minute apart, not a write storm.
func TestForgedAnnotationsAreRewritten(t *testing.T) {
	ctx := context.Background()
	for _, key := range []string{wire.AnnotationReport, wire.AnnotationHealth} {
		t.Run(key, func(t *testing.T) {
			client := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "daemon-x", Namespace: "icd", ResourceVersion: "1"}})
			p, clock := testPublisher(client)
			publish := func() time.Duration {
				t.Helper()
				again, _, err := p.publish(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return again
			}
			publish()
			written := onPod(t, client, key)
			if written == "" {
				t.Fatal("nothing written")
			}
			p.own.observe(forge(t, client, key, `{"v":1,"images":[]}`))
			before := patchCount(client)
			if again := publish(); again != 0 {
				t.Fatalf("publish: again in %v", again)
			}
			if got := onPod(t, client, key); got != written || patchCount(client) != before+1 {
				t.Fatalf("after a forgery the pod holds %q (%d patches), want %q", got, patchCount(client)-before, written)
			}
			if all := patches(t, client); len(all[len(all)-1]) != 1 {
				t.Errorf("the forged annotation was put right with %v; want it alone", all[len(all)-1])
			}
			if publish(); patchCount(client) != before+1 {
				t.Error("an annotation the pod holds was written again")
			}

			// A forger at it ten times a second for an hour: the pod as
			// the watch shows it after each forgery.
			before = patchCount(client)
			forged := forge(t, client, key, "forged")
			for start := *clock; clock.Sub(start) < time.Hour; *clock = clock.Add(100 * time.Millisecond) {
				p.own.observe(forged)
				publish()
			}
			writes := patchCount(client) - before
			t.Logf("a forger writing 36,000 times in an hour met %d writes", writes)
			if writes > int(time.Hour/reassertMax)+8 || writes < int(time.Hour/reassertMax)-1 {
				t.Errorf("%d writes in an hour of a fight, want about one a minute", writes)
			}
			// Once the fight has stopped for long, a forgery is undone at once.
			*clock = clock.Add(2 * reassertMax)
			p.own.observe(forge(t, client, key, "forged"))
			before = patchCount(client)
			if publish(); patchCount(client) != before+1 || onPod(t, client, key) != written {
				t.Error("a forgery after a quiet spell was not undone at once")
			}
		})
	}
}

// The daemon's watch of its own pod sees a forgery and the report is
// written again, with no call from the test.
func TestReportRunRewritesForgery(t *testing.T) {
	client := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "daemon-x", Namespace: "icd"}})
	p, _ := testPublisher(client)
	p.now = time.Now
	p.every = 10 * time.Millisecond
	want, _ := wire.EncodeReport([]wire.ImageStatus{{Image: "docker.io/library/alpine:latest", State: wire.Cached, Pod: "p1"}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); onPod(t, client, wire.AnnotationReport) != want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the pod holds %q", what, onPod(t, client, wire.AnnotationReport))
			}
		}
	}
	waitFor("the first report")
	forge(t, client, wire.AnnotationReport, `{"v":1,"images":[]}`)
	waitFor("after a forgery")
}

// The answer to a patch may come before the watch tells of the version it
// replaced: the older version does not undo what the daemon saw written,
// so it causes no write.
func TestOwnPodIgnoresOlderVersions(t *testing.T) {
	o := newOwnPod(fake.NewClientset(), "icd", "daemon-x")
	at := func(rv, value string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "daemon-x", Namespace: "icd", ResourceVersion: rv,
			Annotations: map[string]string{wire.AnnotationReport: value}}}
	}
	written := "mine"
	if o.differs(wire.AnnotationReport, &written) {
		t.Error("a pod not seen yet differs")
	}
	o.observe(at("12", "mine"))
	o.observe(at("11", "older"))
	if o.differs(wire.AnnotationReport, &written) {
		t.Error("an older version undid the newer one")
	}
	o.observe(at("13", "forged"))
	if !o.differs(wire.AnnotationReport, &written) {
		t.Error("a newer version with a forgery was not seen")
	}
	o.observe(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "icd", ResourceVersion: "14"}})
	if !o.differs(wire.AnnotationReport, &written) || !o.differs(wire.AnnotationReport, nil) {
		t.Error("another pod was taken for the daemon's")
	}
}
