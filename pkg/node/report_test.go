package node

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// The daemon publishes its node's statuses on its own pod: first removing
// what an earlier run left there, then the last statuses set, once each,
// and no report when they do not fit or the API server refuses them
// (status then reads the node's pods).
func TestImageReport(t *testing.T) {
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
	r := newImageReport(client, "icd", "daemon-x")
	patches := 0
	publish := func(t *testing.T, want []wire.ImageStatus, wantPatch bool) {
		t.Helper()
		_, _, err := r.publish(ctx)
		if refuse != (err != nil) {
			t.Fatalf("publish: %v", err)
		}
		n := 0
		for _, a := range client.Actions() {
			if a.GetVerb() == "patch" {
				n++
			}
		}
		if got := n > patches; got != wantPatch {
			t.Errorf("patched: %v, want %v", got, wantPatch)
		}
		patches = n // requests, refused ones too
		p, err := client.CoreV1().Pods("icd").Get(ctx, "daemon-x", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		raw, ok := p.Annotations[wire.AnnotationReport]
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
	t.Run("the last run's report is removed first", func(t *testing.T) { publish(t, nil, true) })
	t.Run("the last statuses set", func(t *testing.T) {
		r.set(one)
		r.set(two)
		publish(t, two, true)
	})
	t.Run("the same again is no write", func(t *testing.T) {
		r.set(two)
		publish(t, two, false)
	})
	t.Run("too large", func(t *testing.T) {
		r.set(huge)
		publish(t, nil, true)
	})
	t.Run("no image", func(t *testing.T) {
		r.set([]wire.ImageStatus{})
		publish(t, []wire.ImageStatus{}, true)
	})
	t.Run("refused by the API server", func(t *testing.T) {
		r.set(one)
		refuse = true
		publish(t, []wire.ImageStatus{}, true) // tried, refused
		refuse = false
		publish(t, nil, true) // not left standing
		publish(t, nil, false)
	})
	t.Run("run publishes at once", func(t *testing.T) {
		r.set(two)
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { r.run(ctx); close(done) }()
		defer func() { cancel(); <-done }()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			p, err := client.CoreV1().Pods("icd").Get(ctx, "daemon-x", metav1.GetOptions{})
			if err == nil && p.Annotations[wire.AnnotationReport] != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("run did not publish")
			}
		}
	})
}

// A node's report is paced by its size: a report of 1,000 failing images
// (the audit's 177 KB) is sent at most every 11 s, a small one every second.
func TestReportIsPacedBySize(t *testing.T) {
	var failing []wire.ImageStatus
	for i := range 1000 {
		failing = append(failing, wire.ImageStatus{Node: "node-x", Image: fmt.Sprintf("registry.example/team/app-%04d:v1", i),
			State: wire.Failed, Message: strings.Repeat("failed to pull: not found ", 5)})
	}
	client := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "daemon-x", Namespace: "icd"}})
	r := newImageReport(client, "icd", "daemon-x")
	r.set(failing)
	_, sent, err := r.publish(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pause := reportPause(reportEvery, sent)
	t.Logf("a report of %d failing images is %d bytes; the next waits %s", len(failing), sent, pause)
	if sent < 100<<10 || pause < time.Duration(sent/reportBytesPerSecond)*time.Second {
		t.Errorf("a report of %d bytes waits %s; want at least %d s", sent, pause, sent/reportBytesPerSecond)
	}
	if p := reportPause(reportEvery, 200); p != reportEvery {
		t.Errorf("a small report waits %s; want %s", p, reportEvery)
	}
}
