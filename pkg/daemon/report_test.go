package daemon

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
)

// The daemon publishes its node's statuses on its own pod: the last ones
// set, once each, and none when they do not fit (status then reads the
// node's pods).
func TestImageReport(t *testing.T) {
	self := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "daemon-x", Namespace: "icd"}}
	client := fake.NewClientset(self)
	r := newImageReport(client, "icd", "daemon-x")
	r.every = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.run(ctx)

	patches := func() int {
		n := 0
		for _, a := range client.Actions() {
			if _, ok := a.(k8stesting.PatchAction); ok {
				n++
			}
		}
		return n
	}
	published := func(want []cachestate.ImageStatus) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			p, err := client.CoreV1().Pods("icd").Get(ctx, "daemon-x", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			raw, ok := p.Annotations[cachestate.AnnotationReport]
			var got []cachestate.ImageStatus
			if ok {
				if got, err = cachestate.DecodeReport("node-x", raw); err != nil {
					t.Fatal(err)
				}
			}
			if ok == (want != nil) && len(got) == len(want) && (len(want) == 0 || reflect.DeepEqual(got, want)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("published %v %+v, want %+v", ok, got, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	one := []cachestate.ImageStatus{{Node: "node-x", Image: "docker.io/library/alpine:latest", State: cachestate.Pulling, Pod: "p1"}}
	two := []cachestate.ImageStatus{{Node: "node-x", Image: "docker.io/library/alpine:latest", State: cachestate.Cached, Pod: "p1", Digest: "sha256:" + strings.Repeat("a", 64)}}
	r.set(one)
	r.set(two) // before the first write: only the last is published
	published(two)
	time.Sleep(5 * r.every)
	n := patches()
	r.set(two)
	time.Sleep(5 * r.every)
	if patches() != n {
		t.Errorf("the same statuses were published again")
	}

	var huge []cachestate.ImageStatus
	for i := range 2000 {
		huge = append(huge, cachestate.ImageStatus{Node: "node-x", Image: fmt.Sprintf("r.example/%s:%d", strings.Repeat("x", 100), i), State: cachestate.Pending})
	}
	r.set(huge)
	published(nil)
	r.set([]cachestate.ImageStatus{})
	published([]cachestate.ImageStatus{})
}
