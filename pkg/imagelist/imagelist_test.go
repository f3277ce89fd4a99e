package imagelist

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func add(images ...string) Change {
	return func(cur []string) []string { return append(slices.Clone(cur), images...) }
}

func TestEditCreatesThenUpdates(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	res, err := Edit(ctx, client, "ns", "list", add("docker.io/library/b:latest", "docker.io/library/a:latest"))
	if err != nil || !res.Created {
		t.Fatalf("first edit: %+v %v", res, err)
	}
	cm, _ := client.CoreV1().ConfigMaps("ns").Get(ctx, "list", metav1.GetOptions{})
	if cm.Labels["app.kubernetes.io/part-of"] != "image-cache-daemon" {
		t.Errorf("a new list lacks the label the daemon selects on: %v", cm.Labels)
	}
	if got := cm.Data["images"]; got != "- docker.io/library/a:latest\n- docker.io/library/b:latest\n" {
		t.Errorf("data = %q", got)
	}
	res, err = Edit(ctx, client, "ns", "list", add("docker.io/library/a:latest"))
	if err != nil || !reflect.DeepEqual(res.Before, res.After) {
		t.Fatalf("adding what is there: %+v %v", res, err)
	}
}

func TestEditRefusesAnUnreadableList(t *testing.T) {
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "list", Namespace: "ns"}, Data: map[string]string{"images": "{not: [a list"}}
	client := fake.NewClientset(cm)
	if _, err := Edit(ctx, client, "ns", "list", add("docker.io/library/a:latest")); err == nil || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("err = %v", err)
	}
	got, _ := client.CoreV1().ConfigMaps("ns").Get(ctx, "list", metav1.GetOptions{})
	if got.Data["images"] != "{not: [a list" {
		t.Fatal("the unreadable list was overwritten")
	}
}

// Concurrent edits: the fake API server enforces resourceVersion only when
// told to, so a reactor rejects stale updates as the real one does.
func TestConcurrentEditsLoseNothing(t *testing.T) {
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "list", Namespace: "ns", ResourceVersion: "1"}, Data: map[string]string{"images": "[]"}}
	client := fake.NewClientset(cm)
	var mu sync.Mutex
	version := 1
	client.PrependReactor("update", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		obj := a.(k8stesting.UpdateAction).GetObject().(*corev1.ConfigMap)
		if obj.ResourceVersion != fmt.Sprint(version) {
			return true, nil, conflict()
		}
		version++
		obj = obj.DeepCopy()
		obj.ResourceVersion = fmt.Sprint(version)
		return true, obj, client.Tracker().Update(corev1.SchemeGroupVersion.WithResource("configmaps"), obj, "ns")
	})
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Go(func() {
			if _, err := Edit(ctx, client, "ns", "list", add(fmt.Sprintf("docker.io/library/i%02d:latest", i))); err != nil {
				t.Errorf("edit %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	got, _ := client.CoreV1().ConfigMaps("ns").Get(ctx, "list", metav1.GetOptions{})
	for i := 0; i < 20; i++ {
		if !strings.Contains(got.Data["images"], fmt.Sprintf("i%02d", i)) {
			t.Errorf("edit %d was lost:\n%s", i, got.Data["images"])
		}
	}
}

func conflict() error {
	return apierrors.NewConflict(corev1.Resource("configmaps"), "list", fmt.Errorf("the object has been modified"))
}
