package planner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/dcherman/image-cache-daemon/pkg/metrics"
	"github.com/dcherman/image-cache-daemon/pkg/resolve"
	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// fakeSources are sources whose answers a test sets.
type fakeSources struct {
	mu     sync.Mutex
	synced bool
	wants  []source.Want
}

func (f *fakeSources) HasSynced() bool      { f.mu.Lock(); defer f.mu.Unlock(); return f.synced }
func (f *fakeSources) Wants() []source.Want { f.mu.Lock(); defer f.mu.Unlock(); return f.wants }
func (f *fakeSources) Health() []wire.Health {
	return []wire.Health{{Source: "configmaps", Synced: f.HasSynced()}}
}

// The leading planner publishes the set once its sources synced (a partial
// one after the grace), again when they change, and never while it does not
// lead; the set is written only when it differs from what is there.
func TestPlannerPublishes(t *testing.T) {
	client := fake.NewClientset()
	writer := newSetWriter(client, "icd")
	src := &fakeSources{}
	var leading sync.Mutex
	lead := false
	m := metrics.New()
	p := &planner{sources: src, maxImages: 10, grace: time.Hour, publish: writer.write, changed: make(chan struct{}, 1), metrics: m,
		leading: func() bool { leading.Lock(); defer leading.Unlock(); return lead }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	published := func() *wanted.Set {
		s, cm, err := wanted.Get(ctx, client, "icd")
		if cm == nil {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	writes := func() int {
		n := 0
		for _, a := range client.Actions() {
			if a.GetVerb() == "create" || a.GetVerb() == "update" {
				n++
			}
		}
		return n
	}

	src.mu.Lock()
	src.synced, src.wants = true, []source.Want{{Image: "docker.io/library/alpine:latest", Origin: "flag --image", Static: true}}
	src.mu.Unlock()
	p.enqueue()
	time.Sleep(100 * time.Millisecond)
	if published() != nil {
		t.Fatal("published while not leading")
	}
	leading.Lock()
	lead = true
	leading.Unlock()
	p.enqueue()
	waitFor(t, "the set is published", func() bool { s := published(); return s != nil && len(s.Images) == 1 && !s.Partial })
	if n := writes(); n != 1 {
		t.Errorf("%d writes; want 1", n)
	}
	// The same set again: nothing written.
	if wrote, err := newSetWriter(client, "icd").write(ctx, mustEncode(t, wanted.Build(src.Wants(), 10, src.Health()))); wrote || err != nil || writes() != 1 {
		t.Errorf("an unchanged set was written again (%v, %d writes, %v)", wrote, writes(), err)
	}
	src.mu.Lock()
	src.wants = append(src.wants, source.Want{Image: "docker.io/library/nginx:latest", Origin: "ConfigMap a/x", Namespace: "a"})
	src.mu.Unlock()
	p.enqueue()
	waitFor(t, "the change is published", func() bool { s := published(); return s != nil && len(s.Images) == 2 })
	// The metrics are recorded just after the write returns, so the test
	// waits for them rather than reading them at once.
	waitFor(t, "wanted_set_writes_total 2 and wanted_images 2", func() bool {
		return testutil.ToFloat64(m.WantedSetWrites) == 2 && testutil.ToFloat64(m.WantedImages) == 2
	})
	if n := writes(); n != 2 {
		t.Errorf("%d writes; want 2", n)
	}
}

// Sources that do not sync within the grace: the planner publishes what it
// has, marked partial, so that nodes cache it and delete nothing.
func TestPlannerPublishesPartialAfterGrace(t *testing.T) {
	client := fake.NewClientset()
	src := &fakeSources{wants: []source.Want{{Image: "docker.io/library/alpine:latest", Origin: "flag --image", Static: true}}}
	p := &planner{sources: src, maxImages: 10, grace: 0, publish: newSetWriter(client, "icd").write,
		changed: make(chan struct{}, 1), leading: func() bool { return true }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "a partial set is published", func() bool {
		s, _, err := wanted.Get(ctx, client, "icd")
		return err == nil && s.Partial && len(s.Images) == 1
	})
}

// The planner publishes each tag's digest as its resolver read it, or why
// there is none; a replica that takes over starts from the digests the set
// there holds (their Since kept, so no node pulls again), and checks each
// tag once.
func TestPlannerPublishesDigests(t *testing.T) {
	const (
		old   = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
		moved = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
		pin   = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	)
	kept, gone, unreachable := "r.example/kept:1", "r.example/moved:1", "r.example/down:1"
	pinned := "r.example/pinned@" + pin
	before := &wanted.Set{V: 1, Images: []wanted.Image{
		{Image: kept, Origins: []string{"x"}, Digest: old, Since: 1000},
		{Image: gone, Origins: []string{"x"}, Digest: old, Since: 1000},
	}}
	client := fake.NewClientset()
	writer := newSetWriter(client, "icd")
	if _, err := writer.write(context.Background(), mustEncode(t, before)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	checks := map[string]int{}
	head := func(_ context.Context, ref string, _ authn.Keychain) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		checks[ref]++
		switch ref {
		case kept:
			return old, nil
		case gone:
			return moved, nil
		}
		return "", errors.New("dial tcp: connection refused")
	}
	src := &fakeSources{synced: true}
	for _, img := range []string{kept, gone, unreachable, pinned} {
		src.wants = append(src.wants, source.Want{Image: img, Origin: "flag --image", Static: true})
	}
	p := &planner{sources: src, maxImages: 10, publish: writer.write, published: writer.read,
		tags: &resolve.Resolver{Every: time.Hour, Head: head}, changed: make(chan struct{}, 1), leading: func() bool { return true }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { p.run(ctx); done <- struct{}{} }()
	go func() { p.tags.Run(ctx, p.enqueue); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()

	var got *wanted.Set
	waitFor(t, "every tag is resolved or said unreachable", func() bool {
		got = writer.read(ctx)
		if got == nil || len(got.Images) != 4 {
			return false
		}
		for _, im := range got.Images {
			if im.Unchecked == wanted.NotChecked {
				return false
			}
		}
		return true
	})
	by := map[string]wanted.Image{}
	for _, im := range got.Images {
		by[im.Image] = im
	}
	if im := by[kept]; im.Digest != old || im.Since != 1000 {
		t.Errorf("unchanged tag: %+v, want %s since 1000 (the earlier leader's)", im, old)
	}
	if im := by[gone]; im.Digest != moved || im.Since <= 1000 {
		t.Errorf("moved tag: %+v, want %s since now", im, moved)
	}
	if im := by[unreachable]; im.Digest != "" || !strings.Contains(im.Unchecked, "connection refused") {
		t.Errorf("unreachable tag: %+v, want no digest and the reason", im)
	}
	if im := by[pinned]; im.Digest != pin || im.Unchecked != "" {
		t.Errorf("pinned reference: %+v, want its own digest", im)
	}
	mu.Lock()
	defer mu.Unlock()
	if checks[kept] != 1 || checks[gone] != 1 || checks[pinned] != 0 {
		t.Errorf("checks %v: want one per tag, none for the pinned reference", checks)
	}
}

func mustEncode(t *testing.T, s *wanted.Set) *wanted.Encoded {
	t.Helper()
	b, err := wanted.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The wanted set is owned by the DaemonSet, so that removing the
// installation (helm uninstall included) removes it; a set written before
// the DaemonSet could be read gets its owner at the next write, and an
// unchanged set with its owner is not written again.
func TestWantedSetIsOwnedByTheDaemonSet(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	w := newSetWriter(client, "icd")
	data := mustEncode(t, wanted.Build([]source.Want{{Image: "docker.io/library/alpine:latest", Origin: "flag --image", Static: true}}, 10, nil))
	if wrote, err := w.write(ctx, data); !wrote || err != nil {
		t.Fatalf("first write: %v %v", wrote, err)
	}
	if wrote, err := w.write(ctx, data); wrote || err != nil {
		t.Fatalf("the same set without a DaemonSet to own it was written again: %v %v", wrote, err)
	}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: wire.DaemonSet, Namespace: "icd", UID: "ds-uid"}}
	if _, err := client.AppsV1().DaemonSets("icd").Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if wrote, err := w.write(ctx, data); !wrote || err != nil {
		t.Fatalf("the owner was not added: %v %v", wrote, err)
	}
	cm, err := client.CoreV1().ConfigMaps("icd").Get(ctx, wanted.ConfigMap, metav1.GetOptions{})
	if err != nil || len(cm.OwnerReferences) != 1 || cm.OwnerReferences[0].UID != "ds-uid" || cm.OwnerReferences[0].Kind != "DaemonSet" {
		t.Fatalf("owners %v, %v", cm.OwnerReferences, err)
	}
	if wrote, err := w.write(ctx, data); wrote || err != nil {
		t.Fatalf("an unchanged, owned set was written again: %v %v", wrote, err)
	}
	// The planner's Lease, made by the leader election, gets the same owner.
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: wanted.Planner, Namespace: "icd"}}
	if _, err := client.CoordinationV1().Leases("icd").Create(ctx, lease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.write(ctx, data); err != nil {
		t.Fatal(err)
	}
	got, err := client.CoordinationV1().Leases("icd").Get(ctx, wanted.Planner, metav1.GetOptions{})
	if err != nil || len(got.OwnerReferences) != 1 || got.OwnerReferences[0].UID != "ds-uid" {
		t.Fatalf("the Lease's owners: %v, %v", got.OwnerReferences, err)
	}
}

// A set too large for one ConfigMap is written as parts, then its head; a
// set that shrinks deletes the parts it no longer names; nothing is
// written again while nothing changes.
func TestWantedSetParts(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	w := newSetWriter(client, "icd")
	var wants []source.Want
	for i := range 8000 {
		img := fmt.Sprintf("registry.example/team-%05d/%s:v1", i, strings.Repeat(fmt.Sprintf("%x", i*7919), 12))
		wants = append(wants, source.Want{Image: img, Origin: fmt.Sprintf("ConfigMap team/images-%05d", i), Namespace: "team"})
	}
	big := mustEncode(t, wanted.Build(wants, len(wants), nil))
	if len(big.Parts) == 0 {
		t.Fatal("no parts; the test wants a set of several ConfigMaps")
	}
	if wrote, err := w.write(ctx, big); !wrote || err != nil {
		t.Fatalf("first write: %v %v", wrote, err)
	}
	s, _, err := wanted.Get(ctx, client, "icd")
	if err != nil || len(s.Images) != len(wants) {
		t.Fatalf("read back %v, %v; want %d images", s, err, len(wants))
	}
	// The parts before the head that names them.
	var order []string
	for _, a := range client.Actions() {
		if a.GetVerb() == "create" {
			order = append(order, a.(interface{ GetObject() runtime.Object }).GetObject().(*corev1.ConfigMap).Name)
		}
	}
	if len(order) != 1+len(big.Parts) || order[len(order)-1] != wanted.ConfigMap {
		t.Errorf("created %v; want the parts, then the head", order)
	}
	n := len(client.Actions())
	if wrote, err := w.write(ctx, big); wrote || err != nil {
		t.Fatalf("the same set was written again: %v %v", wrote, err)
	}
	for _, a := range client.Actions()[n:] {
		if a.GetVerb() != "get" {
			t.Errorf("an unchanged set made a %s", a.GetVerb())
		}
	}

	small := mustEncode(t, wanted.Build(wants[:1], 1, nil))
	if wrote, err := w.write(ctx, small); !wrote || err != nil {
		t.Fatalf("shrinking: %v %v", wrote, err)
	}
	cms, err := client.CoreV1().ConfigMaps("icd").List(ctx, metav1.ListOptions{})
	if err != nil || len(cms.Items) != 1 || cms.Items[0].Name != wanted.ConfigMap {
		t.Errorf("after the set shrank: %d ConfigMaps (%v); want the head alone", len(cms.Items), err)
	}
	// A new leader does not know how many parts there were: it deletes
	// every name a part may have, and finds none.
	if wrote, err := newSetWriter(client, "icd").write(ctx, small); wrote || err != nil {
		t.Errorf("a new leader writing the same set: %v %v", wrote, err)
	}
}
