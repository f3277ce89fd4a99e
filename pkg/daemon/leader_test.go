package daemon

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/dcherman/image-cache-daemon/pkg/metrics"
)

// Of two daemons, one holds the reporter Lease; both know it soon.
func TestOneDaemonReports(t *testing.T) {
	client := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const lease = "image-cache-daemon-reporter" // node.ReporterLease
	a, err := NewElection(client, "icd", lease, "daemon-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewElection(client, "icd", lease, "daemon-b")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	for _, e := range []*Election{a, b} {
		go func() { e.Run(ctx); done <- struct{}{} }()
	}
	for _, e := range []*Election{a, b} {
		select {
		case <-e.decided:
		case <-time.After(20 * time.Second):
			t.Fatal("a daemon never learnt who reports")
		}
	}
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return a.Leading() != b.Leading(), nil
	})
	if err != nil {
		t.Fatalf("leading: a %v, b %v; want exactly one", a.Leading(), b.Leading())
	}
	cancel()
	<-done
	<-done
}

// A daemon that does not hold the Lease sends no Event about an object;
// the one that does, does.
func TestReporterSendsEventsOnlyWhenLeading(t *testing.T) {
	obj := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "team"}}
	for _, leading := range []bool{false, true} {
		rec := record.NewFakeRecorder(10)
		r := &Reporter{Logger: klog.Background(), Recorder: rec, Metrics: metrics.New(), Leading: func() bool { return leading }}
		r.Problems("configmaps", obj, []error{errors.New("entry 1 is a number")})
		if got := len(rec.Events); got != map[bool]int{false: 0, true: 1}[leading] {
			t.Errorf("leading %v: %d Events", leading, got)
		}
	}
}
