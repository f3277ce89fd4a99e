package imagelist

import (
	"context"
	"errors"
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

	"github.com/dcherman/image-cache-daemon/pkg/wire"
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
	if cm.Labels[wire.LabelPartOf] != wire.PartOf {
		t.Errorf("a new list lacks the label the daemon selects on: %v", cm.Labels)
	}
	if got := cm.Data["images"]; got != "- \"docker.io/library/a:latest\"\n- \"docker.io/library/b:latest\"\n" {
		t.Errorf("data = %q", got)
	}
	res, err = Edit(ctx, client, "ns", "list", add("docker.io/library/a:latest"))
	if err != nil || !reflect.DeepEqual(res.Before, res.After) {
		t.Fatalf("adding what is there: %+v %v", res, err)
	}
}

// The installation's image list is made with no data (the chart's
// configmaps.yaml): the first edit writes it, keeping its labels.
func TestEditFillsAnEmptyList(t *testing.T) {
	ctx := context.Background()
	empty := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "list", Labels: map[string]string{"mine": "yes"}}}
	client := fake.NewClientset(empty)
	res, err := Edit(ctx, client, "ns", "list", add("docker.io/library/a:latest"))
	if err != nil || res.Created || len(res.Before) != 0 {
		t.Fatalf("edit of an empty list: %+v %v", res, err)
	}
	cm, _ := client.CoreV1().ConfigMaps("ns").Get(ctx, "list", metav1.GetOptions{})
	if cm.Data["images"] != "- \"docker.io/library/a:latest\"\n" || cm.Labels["mine"] != "yes" {
		t.Errorf("after the edit: data %q, labels %v", cm.Data, cm.Labels)
	}
}

// A list someone broke by hand is left as it is, and the message says what
// is wrong (capped, quoted short) and how to fix it.
func TestEditRefusesABrokenList(t *testing.T) {
	const fix = "fix it with `kubectl edit configmap/list -n ns`: the key must hold a YAML list of strings such as [\"alpine\", \"nginx:1.27\"]"
	for _, tc := range []struct {
		name, key, value string
		annotations      map[string]string
		// says: the lines the message must hold, in order.
		says []string
		// problems is how many problems the error unwraps to.
		problems int
	}{
		{name: "not a list", key: "images", value: "{not: [a list",
			says: []string{`ConfigMap ns/list key "images" cannot be read, so nothing was changed:`,
				"  the value is not valid JSON or YAML", fix},
			problems: 1},
		{name: "a map", key: "images", value: "alpine: latest\n",
			says:     []string{`ConfigMap ns/list key "images" cannot be read`, "  the value is a map, not a list of image references", fix},
			problems: 1},
		{name: "empty", key: "images", value: "",
			says:     []string{"  the value is empty", fix},
			problems: 1},
		{name: "an IPv6 registry as an older plugin wrote it", key: "images", value: "- docker.io/library/alpine:latest\n- [::1]:5000/app:v1\n",
			says:     []string{"cannot be read", "did not find expected", fix},
			problems: 1},
		{name: "bad entries", key: "images", value: `["alpine", "Alpine", 1.10, "a:b:c"]`,
			says: []string{`ConfigMap ns/list key "images" holds entries that are not image references, so nothing was changed:`,
				`  entry 2: invalid image reference "Alpine": repository names must be lowercase (did you mean "alpine"?)`,
				"  entry 3 is a number (1.10), not a string; quote it if it is an image reference",
				`  entry 4: invalid image reference "a:b:c"`,
				fix},
			problems: 3},
		{name: "a megabyte of bad entries", key: "images", value: "[" + strings.Repeat("1,", 512<<10-1) + "1]",
			says:     []string{"holds entries that are not image references", "  entry 1 is a number (1)", "  entry 20 is a number (1)", "  ... and 8173 more problems", fix},
			problems: 21},
		{name: "the annotated key", key: "mine", value: "- *alias\n", annotations: map[string]string{wire.AnnotationKey: "mine"},
			says:     []string{`ConfigMap ns/list key "mine" cannot be read`, "unknown anchor 'alias'", fix},
			problems: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "list", Namespace: "ns", Annotations: tc.annotations}, Data: map[string]string{tc.key: tc.value}}
			client := fake.NewClientset(cm)
			_, err := Edit(ctx, client, "ns", "list", add("docker.io/library/nginx:1.27"))
			var unreadable *UnreadableError
			if !errors.As(err, &unreadable) {
				t.Fatalf("err = %v, want an *UnreadableError", err)
			}
			if n := len(unreadable.Unwrap()); n != tc.problems {
				t.Errorf("the error holds %d problems, want %d", n, tc.problems)
			}
			msg := err.Error()
			if len(msg) > 16<<10 {
				t.Errorf("the message is %d bytes long", len(msg))
			}
			rest := msg
			for _, want := range tc.says {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("message:\n%s\ndoes not say, after what came before:\n%s", msg, want)
				}
				rest = rest[i+len(want):]
			}
			for _, a := range client.Actions() {
				if a.GetVerb() != "get" {
					t.Errorf("a broken list made Edit %s", a.GetVerb())
				}
			}
			got, _ := client.CoreV1().ConfigMaps("ns").Get(ctx, "list", metav1.GetOptions{})
			if got.Data[tc.key] != tc.value {
				t.Fatal("the broken list was changed")
			}
		})
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
