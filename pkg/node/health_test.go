package node

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

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

// The daemon writes its sources' health on its own pod only when it
// changed, and fails readiness while a source cannot read.
func TestHealthIsPublishedOnChangeAndGatesReadiness(t *testing.T) {
	ctx := context.Background()
	self := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "daemon-x", Namespace: "icd"}}
	client := fake.NewClientset(self)
	src := &healthSource{h: wire.Health{Source: "configmaps", Synced: true}}
	h := &health{own: newOwnPod(client, "icd", "daemon-x"), sources: source.NewSetOf(src),
		overLimit: func() (int, []wire.Image) { return 0, nil }, metrics: metrics.New()}

	patches := func() int {
		n := 0
		for _, a := range client.Actions() {
			if a.GetVerb() == "patch" {
				n++
			}
		}
		return n
	}
	for range 3 {
		if _, err := h.publish(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := patches(); n != 1 {
		t.Errorf("an unchanged health was written %d times, want once", n)
	}
	if err := h.ready(); err != nil {
		t.Errorf("ready() = %v with every source well", err)
	}

	src.h.Problem = `configmaps is forbidden: User "x" cannot list resource "configmaps"`
	if _, err := h.publish(ctx); err != nil {
		t.Fatal(err)
	}
	if n := patches(); n != 2 {
		t.Errorf("a changed health made %d patches in all, want 2", n)
	}
	if v := testutil.ToFloat64(h.metrics.SourceHealthy.WithLabelValues("configmaps")); v != 0 {
		t.Errorf("image_cache_source_healthy{source=configmaps} = %v for a forbidden source", v)
	}
	if err := h.ready(); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("ready() = %v, want the forbidden source", err)
	}
	pod, err := client.CoreV1().Pods("icd").Get(ctx, "daemon-x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var r wire.HealthReport
	if err := json.Unmarshal([]byte(pod.Annotations[wire.AnnotationHealth]), &r); err != nil {
		t.Fatalf("annotation %q: %v", pod.Annotations[wire.AnnotationHealth], err)
	}
	if len(r.Sources) != 1 || r.Sources[0].Problem != src.h.Problem {
		t.Errorf("published %+v", r)
	}
}
