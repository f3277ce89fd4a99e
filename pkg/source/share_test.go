package source

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kuberuntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// imageNames returns n distinct image references of namespace ns.
func imageNames(ns string, from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("registry.example/%s/img-%04d:v1", ns, from+i)
	}
	return out
}

func listConfigMap(ns, name string, images []string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID(ns + "-" + name),
			Labels: map[string]string{wire.LabelPartOf: wire.PartOf}},
		Data: map[string]string{"images": "- " + strings.Join(images, "\n- ")},
	}
}

// originsOf counts, by origin, the images src holds.
func originsOf(src Source) map[string]int {
	out := map[string]int{}
	for _, w := range src.Wanted() {
		out[w.Origin]++
	}
	return out
}

// The objects of one namespace share --max-images between them as they
// arrive: one that comes when the share is spent keeps what is left, the
// rest counted; another namespace is untouched; and when the namespace's
// objects shrink or go, the cut one is read again and takes the room.
func TestNamespaceShare(t *testing.T) {
	kube := kubefake.NewClientset()
	var gets atomic.Int32
	kube.PrependReactor("get", "configmaps", func(k8stesting.Action) (bool, kuberuntime.Object, error) {
		gets.Add(1)
		return false, nil, nil
	})
	set, err := NewSet(Config{ConfigMaps: true, Selector: DefaultConfigMapSelector, MaxImages: 10},
		Clients{Kube: kube, Discovery: kube.Discovery()}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	set.Start(ctx, func() {})
	defer set.Wait()
	defer cancel()
	eventually(t, "synced", set.HasSynced)
	src := set.sources[1]
	cms := func(ns string) interface {
		Create(context.Context, *corev1.ConfigMap, metav1.CreateOptions) (*corev1.ConfigMap, error)
		Update(context.Context, *corev1.ConfigMap, metav1.UpdateOptions) (*corev1.ConfigMap, error)
		Delete(context.Context, string, metav1.DeleteOptions) error
	} {
		return kube.CoreV1().ConfigMaps(ns)
	}
	put := func(ns, name string, images []string) {
		t.Helper()
		if _, err := cms(ns).Create(ctx, listConfigMap(ns, name, images), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	held := func(want map[string]int, unread int) {
		t.Helper()
		eventually(t, fmt.Sprintf("held %v, %d unread", want, unread), func() bool {
			h := src.Health()
			return maps.Equal(originsOf(src), want) && h.Unread == unread
		})
	}

	put("a", "a1", imageNames("a", 0, 8))
	held(map[string]int{"ConfigMap a/a1": 8}, 0)
	put("a", "a2", imageNames("a", 100, 5))
	held(map[string]int{"ConfigMap a/a1": 8, "ConfigMap a/a2": 2}, 3)
	put("b", "b1", imageNames("b", 0, 10))
	held(map[string]int{"ConfigMap a/a1": 8, "ConfigMap a/a2": 2, "ConfigMap b/b1": 10}, 3)
	put("a", "a3", imageNames("a", 200, 4))
	held(map[string]int{"ConfigMap a/a1": 8, "ConfigMap a/a2": 2, "ConfigMap b/b1": 10}, 7)
	if kept := src.Wanted(); !slices.ContainsFunc(kept, func(w Want) bool { return w.Image == imageNames("a", 100, 1)[0] }) {
		t.Fatal("a2's first image is not held")
	}

	// a1 shrinks to 3: a2, first in key order, is read again and takes 3
	// more (all it has), a3 the last 2 of the room.
	before := gets.Load()
	if _, err := cms("a").Update(ctx, listConfigMap("a", "a1", imageNames("a", 0, 3)), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	held(map[string]int{"ConfigMap a/a1": 3, "ConfigMap a/a2": 5, "ConfigMap a/a3": 2, "ConfigMap b/b1": 10}, 2)
	if n := gets.Load() - before; n != 2 {
		t.Errorf("%d GETs to fill the room; want 2, one per cut object", n)
	}

	// a1 goes: a3 takes the rest of what it has.
	if err := cms("a").Delete(ctx, "a1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	held(map[string]int{"ConfigMap a/a2": 5, "ConfigMap a/a3": 4, "ConfigMap b/b1": 10}, 0)

	// An edit that grows past the share is cut like an arrival.
	if _, err := cms("b").Update(ctx, listConfigMap("b", "b1", imageNames("b", 0, 15)), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	held(map[string]int{"ConfigMap a/a2": 5, "ConfigMap a/a3": 4, "ConfigMap b/b1": 10}, 5)
}

// What a source holds for one namespace is bounded whatever the namespace
// writes: here 200 objects, each a full-size list of the longest
// references, in one namespace. The heap the source keeps after reading
// them all stays within what --max-images references of the longest length
// cost (the images held), plus a small fixed cost per object.
func TestNamespaceHoldsAtMostItsShare(t *testing.T) {
	const keep, objects = 1000, 200
	// As many of the longest references as a ConfigMap (1 MiB) holds.
	perList := (1 << 20) / (len(longestReference(0)) + len("\n- "))
	src, transform := bareSource(keep)
	store := make([]any, 0, objects)
	baseline := heapInUse()
	for i := range objects {
		images := make([]string, 0, perList)
		for j := range perList {
			images = append(images, longestReference(i*perList+j))
		}
		p, err := transform(listConfigMap("team", fmt.Sprintf("cm-%04d", i), images))
		if err != nil {
			t.Fatal(err)
		}
		store = append(store, p) // as the informer's store keeps it
	}
	retained := heapInUse() - baseline
	if n := len(src.Wanted()); n != keep {
		t.Fatalf("holds %d images; want the share, %d", n, keep)
	}
	// bytes: the longest reference (780, in an 896-byte block) and its
	// Want; an object's identity.
	const perImage, perObject = 1024, 1024
	bound := uint64(keep*perImage + objects*perObject)
	t.Logf("%d objects of %d images of %d bytes held %d KiB (bound %d KiB)", objects, perList, len(longestReference(0)), retained/1024, bound/1024)
	if retained > bound {
		t.Errorf("retained %d bytes; want at most %d", retained, bound)
	}
	runtime.KeepAlive(src)
	runtime.KeepAlive(store)
}

// longestReference is the i-th of distinct image references as long as a
// reference may be (pkg/imageref.MaxLength): a 253-byte host and a port,
// a 255-byte path, a 128-byte tag and a sha512 digest.
func longestReference(i int) string {
	host := strings.Repeat(strings.Repeat("h", 62)+".", 4) + "example"
	path := fmt.Sprintf("%08d/", i)
	path += strings.Repeat("p", 255-len(path))
	return host[:253-len(".example")] + ".example:65535/" + path + ":" + strings.Repeat("t", 128) + "@sha512:" + strings.Repeat("0", 128)
}

func TestLongestReferenceIsValid(t *testing.T) {
	ref := longestReference(12345678)
	if _, err := imageref.Normalize(ref); err != nil {
		t.Fatal(err)
	}
	if len(ref) != 780 {
		t.Errorf("the longest reference is %d bytes; want 780, as pkg/imageref says", len(ref))
	}
	if _, err := imageref.Normalize(strings.Replace(ref, "/1234", "/a1234", 1)); err == nil {
		t.Error("a reference with a longer path is valid too; longestReference is not the longest")
	}
}

// BenchmarkReadPastTheShare reads a megabyte image list into a namespace
// whose share has room (it keeps 1,000 images) and into one whose share is
// spent (it keeps none, and reads next to nothing).
func BenchmarkReadPastTheShare(b *testing.B) {
	const keep = 1000
	var images []string
	for i := 0; len(images)*len(longestReference(0)) < 1<<20; i++ {
		images = append(images, longestReference(i))
	}
	for _, tc := range []struct {
		name string
		full bool
	}{{"room", false}, {"spent", true}} {
		b.Run(tc.name, func(b *testing.B) {
			src, transform := bareSource(keep)
			if tc.full {
				if _, err := transform(listConfigMap("team", "first", images)); err != nil {
					b.Fatal(err)
				}
			}
			cm := listConfigMap("team", "next", images)
			b.SetBytes(int64(len(cm.Data["images"])))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := transform(cm); err != nil {
					b.Fatal(err)
				}
				src.mu.Lock()
				src.drop("team/next", src.entries["team/next"])
				src.mu.Unlock()
			}
		})
	}
}

// bareSource is a ConfigMap source with no informer running, and its
// transform, through which a test hands it objects as an informer would.
func bareSource(keep int) (*objectSource, func(any) (any, error)) {
	src := newObjectSource("configmaps", "ConfigMap", parseConfigMap, keep, nil, nil)
	return src, src.transform(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
