package source

import (
	"context"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	coreinformers "k8s.io/client-go/informers/core/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// objectRecorder keeps the objects problems were reported on.
type objectRecorder struct {
	mu   sync.Mutex
	objs []runtime.Object
}

func (r *objectRecorder) Problems(_ string, obj runtime.Object, _ []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.objs = append(r.objs, obj)
}

func (r *objectRecorder) reported() []runtime.Object {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]runtime.Object(nil), r.objs...)
}

// The informer's store keeps what parsing found wrong, not the objects: a watched
// object costs memory by its images, not by its size. Problems are still
// reported on an object that an Event can refer to.
func TestInformerStoreHoldsOnlyParseResults(t *testing.T) {
	kube := kubefake.NewClientset()
	inf := coreinformers.NewConfigMapInformer(kube, metav1.NamespaceAll, 0, cache.Indexers{})
	rep := &objectRecorder{}
	src, err := NewInformerSource("configmaps", corev1.SchemeGroupVersion.WithKind("ConfigMap"), []cache.SharedIndexInformer{inf}, parseConfigMap, 0, nil, rep)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	set := NewSetOf(src)
	set.Start(ctx, func() {})
	defer set.Wait()
	defer cancel()
	eventually(t, "HasSynced", src.HasSynced)

	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: "team", UID: "u-1"},
		Data: map[string]string{
			"images": `["alpine", "Not/Valid"]`,
			"notes":  strings.Repeat("x", 1<<20),
		},
	}
	if _, err := kube.CoreV1().ConfigMaps("team").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alpine is wanted", func() bool { return wants(src, "docker.io/library/alpine:latest") })

	for _, obj := range inf.GetStore().List() {
		p, ok := obj.(*parsed)
		if !ok {
			t.Fatalf("the store holds a %T, want only parse results", obj)
		}
		if len(p.Problems) != 1 {
			t.Errorf("stored problems %v; want the invalid entry", p.Problems)
		}
	}
	eventually(t, "the invalid entry is reported", func() bool { return len(rep.reported()) > 0 })
	obj := rep.reported()[0]
	m, err := meta.Accessor(obj)
	if err != nil {
		t.Fatal(err)
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	if gvk.Kind != "ConfigMap" || gvk.Version != "v1" || m.GetName() != "big" || m.GetNamespace() != "team" || m.GetUID() != "u-1" {
		t.Errorf("reported on %v %s/%s uid %s; want ConfigMap team/big uid u-1, so that the Event refers to it", gvk, m.GetNamespace(), m.GetName(), m.GetUID())
	}
}
