package node

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/dcherman/image-cache-daemon/pkg/metrics"
	"github.com/dcherman/image-cache-daemon/pkg/source"
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
	p, err := client.CoreV1().Pods("icd").Get(context.Background(), "daemon-x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Annotations[key]
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

// publisher is one of the daemon's annotations on its pod, with a clock
// the test moves.
type publisher struct {
	key     string
	publish func() (time.Duration, error)
	clock   *time.Time
	// observe tells the publisher's ownPod what the watch would show.
	observe func(*corev1.Pod)
}

func publishers(client *fake.Clientset) []publisher {
	ctx := context.Background()
	r := newImageReport(client, "icd", "daemon-x")
	r.set([]wire.ImageStatus{{Image: "docker.io/library/alpine:latest", State: wire.Cached, Pod: "p1"}})
	rClock := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return rClock }
	h := &health{own: newOwnPod(client, "icd", "daemon-x"), sources: source.NewSetOf(&healthSource{h: wire.Health{Source: "static", Synced: true}}), metrics: metrics.New()}
	hClock := rClock
	h.now = func() time.Time { return hClock }
	return []publisher{
		{wire.AnnotationReport, func() (time.Duration, error) { again, _, err := r.publish(ctx); return again, err }, &rClock, r.own.observe},
		{wire.AnnotationHealth, func() (time.Duration, error) { return h.publish(ctx) }, &hClock, h.own.observe},
	}
}

// A forged annotation does not stand: the daemon writes its own value
// again as soon as it sees the pod, and a forger who keeps at it meets
// writes paced from a second up to a minute apart, not a write storm.
func TestForgedAnnotationsAreRewritten(t *testing.T) {
	for i := range 2 {
		client := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "daemon-x", Namespace: "icd", ResourceVersion: "1"}})
		p := publishers(client)[i]
		t.Run(p.key, func(t *testing.T) {
			if _, err := p.publish(); err != nil {
				t.Fatal(err)
			}
			written := onPod(t, client, p.key)
			if written == "" {
				t.Fatal("nothing written")
			}
			observe := p.observe
			observe(forge(t, client, p.key, `{"v":1,"images":[]}`))
			before := patchCount(client)
			if again, err := p.publish(); err != nil || again != 0 {
				t.Fatalf("publish: %v, again in %v", err, again)
			}
			if got := onPod(t, client, p.key); got != written || patchCount(client) != before+1 {
				t.Fatalf("after a forgery the pod holds %q (%d patches), want %q", got, patchCount(client)-before, written)
			}
			if _, _ = p.publish(); patchCount(client) != before+1 {
				t.Error("an annotation the pod holds was written again")
			}

			// A forger at it ten times a second for an hour: the pod as
			// the watch shows it after each forgery.
			before = patchCount(client)
			forged := forge(t, client, p.key, "forged")
			start := *p.clock
			for *p.clock = start; p.clock.Sub(start) < time.Hour; *p.clock = p.clock.Add(100 * time.Millisecond) {
				observe(forged)
				if _, err := p.publish(); err != nil {
					t.Fatal(err)
				}
			}
			writes := patchCount(client) - before
			t.Logf("a forger writing 36,000 times in an hour met %d writes", writes)
			if writes > int(time.Hour/reassertMax)+8 || writes < int(time.Hour/reassertMax)-1 {
				t.Errorf("%d writes in an hour of a fight, want about one a minute", writes)
			}
			// Once the fight has stopped for long, a forgery is undone at once.
			*p.clock = p.clock.Add(2 * reassertMax)
			observe(forge(t, client, p.key, "forged"))
			before = patchCount(client)
			if _, _ = p.publish(); patchCount(client) != before+1 || onPod(t, client, p.key) != written {
				t.Error("a forgery after a quiet spell was not undone at once")
			}
		})
	}
}

// The daemon's watch of its own pod sees a forgery and the report is
// written again, with no call from the test.
func TestReportRunRewritesForgery(t *testing.T) {
	client := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "daemon-x", Namespace: "icd"}})
	r := newImageReport(client, "icd", "daemon-x")
	r.every = 10 * time.Millisecond
	r.set([]wire.ImageStatus{{Image: "docker.io/library/alpine:latest", State: wire.Cached, Pod: "p1"}})
	want, _ := wire.EncodeReport([]wire.ImageStatus{{Image: "docker.io/library/alpine:latest", State: wire.Cached, Pod: "p1"}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx); close(done) }()
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
