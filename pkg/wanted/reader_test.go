package wanted

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// The fake clientset serves no streaming lists.
func TestMain(m *testing.M) {
	os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	os.Exit(m.Run())
}

// eventually waits for cond. The deadline is generous: a set of thousands of
// incompressible images takes seconds to decode under the race detector on
// a loaded 2-core machine (5 s was once too short).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("never: %s", what)
	}
}

// A node reads the set the planner publishes; a set that does not decode
// is reported and the last good one kept; a partial set is cached but is
// no sync (nothing is deleted on its strength); what the planner left out
// is named, and its sources' health relayed.
func TestReader(t *testing.T) {
	client := fake.NewClientset(plannerLease(time.Now()))
	r := NewReader(client, "icd")
	set := source.NewSetOf(r)
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan struct{}, 100)
	set.Start(ctx, func() { changes <- struct{}{} })
	defer set.Wait()
	defer cancel()
	eventually(t, "the missing set is reported", func() bool {
		return strings.Contains(r.Health().Problem, "has published no wanted set yet")
	})
	if set.HasSynced() {
		t.Fatal("synced with no set")
	}

	put := func(data []byte) { t.Helper(); putData(t, client, ConfigMap, data) }
	encoded := func(s *Set) []byte {
		t.Helper()
		b, err := Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		return b.Head
	}
	wants := []source.Want{
		{Image: "docker.io/library/alpine:latest", Origin: "ConfigMap a/x", Namespace: "a"},
		{Image: "docker.io/library/nginx:latest", Origin: "ConfigMap a/x", Namespace: "a"},
	}
	health := []wire.Health{{Source: "configmaps", Synced: true, Objects: 1}}

	partial := Build(wants, 1, health)
	partial.Partial = true
	put(encoded(partial))
	eventually(t, "the partial set is read", func() bool { return len(set.Wants()) == 1 })
	if set.HasSynced() {
		t.Error("a partial set counts as a sync")
	}
	if over := r.PlannedOver(); len(over) != 1 || over[0].Image != "docker.io/library/nginx:latest" {
		t.Errorf("planned over %v; want nginx", over)
	}

	put(encoded(Build(wants, 2, health)))
	eventually(t, "the whole set is read", func() bool { return set.HasSynced() && len(set.Wants()) == 2 })
	if h := set.Health(); len(h) != 2 || h[0].Source != SourceName || !h[0].OK() || h[1].Source != "configmaps" {
		t.Errorf("health %+v; want the planner's and the relayed configmaps'", h)
	}

	put([]byte("not a set"))
	eventually(t, "the bad set is reported", func() bool {
		return strings.Contains(r.Health().Problem, "the last good set is kept")
	})
	if !set.HasSynced() || len(set.Wants()) != 2 {
		t.Errorf("after a bad set: synced %v, wants %v; want the last good set", set.HasSynced(), set.Wants())
	}
}

// A set of several ConfigMaps: the node reads the parts its head names,
// again only those whose hash changed; a head met before its parts (the
// planner writing them) keeps the last good set and is read again soon,
// with no event.
func TestReaderReadsParts(t *testing.T) {
	client := fake.NewClientset(plannerLease(time.Now()))
	r := NewReader(client, "icd")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, func() {})

	put := func(name string, data []byte) { t.Helper(); putData(t, client, name, data) }
	partGets := func() int {
		n := 0
		for _, a := range client.Actions() {
			if a.GetVerb() == "get" && a.GetResource().Resource == "configmaps" {
				n++
			}
		}
		return n
	}
	s := wideSet(3000)
	for i := range s.Images {
		s.Images[i].Digest, s.Images[i].Since = "sha256:"+strings.Repeat("a", 64), 1700000000
	}
	e, err := Encode(s)
	if err != nil || len(e.Parts) < 2 {
		t.Fatalf("%d parts, %v; want several", len(e.Parts), err)
	}
	for i, p := range e.Parts {
		put(PartName(i+1), p)
	}
	put(ConfigMap, e.Head)
	eventually(t, "the whole set is read", func() bool { return r.HasSynced() && len(r.Wanted()) == 3*len(s.Images) })
	if n := partGets(); n != len(e.Parts) {
		t.Errorf("%d GETs of parts; want one per part, %d", n, len(e.Parts))
	}

	// The last image's tag moved: its part and the head change.
	last := s.Images[len(s.Images)-1].Image
	moved := "sha256:" + strings.Repeat("b", 64)
	s.Images[len(s.Images)-1].Digest = moved
	e2, err := Encode(s)
	if err != nil || len(e2.Parts) != len(e.Parts) {
		t.Fatal(err)
	}
	// The head first, as if read while the planner writes: the part it
	// names is not there yet.
	before := len(client.Actions())
	put(ConfigMap, e2.Head)
	eventually(t, "the half-written set is reported", func() bool { return strings.Contains(r.Health().Problem, "being written") })
	if d, _ := r.Current(last); d == moved || !r.HasSynced() {
		t.Fatalf("a half-written set was taken (%s)", d)
	}
	put(PartName(len(e.Parts)), e2.Parts[len(e.Parts)-1])
	eventually(t, "the set is read again once whole, with no event", func() bool { d, _ := r.Current(last); return d == moved })
	if r.Health().Problem != "" {
		t.Errorf("problem %q after the whole set was read", r.Health().Problem)
	}
	// Only the part that changed was read again (once or more, as the
	// retries went), never the others.
	for _, a := range client.Actions()[before:] {
		if a.GetVerb() == "get" && a.GetResource().Resource == "configmaps" {
			if name := a.(interface{ GetName() string }).GetName(); name != PartName(len(e.Parts)) {
				t.Errorf("part %s, unchanged, was read again", name)
			}
		}
	}
}

// plannerLease is the planner's Lease, last renewed at renewed.
func plannerLease(renewed time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: Planner, Namespace: "icd"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("planner-0"), RenewTime: &metav1.MicroTime{Time: renewed}}}
}

// A node whose planner is down (its Lease not renewed for PlannerStale)
// says so in its source's health, which makes it not ready, with when the
// Lease was renewed last (a message that does not change while the planner
// stays down); once a planner leads again, it is ready again.
func TestReaderSaysThePlannerIsDown(t *testing.T) {
	now := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	client := fake.NewClientset(plannerLease(now.Add(-time.Minute)))
	r := NewReader(client, "icd")
	r.leaseEvery, r.now = 10*time.Millisecond, func() time.Time { return now }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, func() {})
	publishOne(t, client, "docker.io/library/alpine:latest")
	want := "the planner is down: no leader has renewed lease/image-cache-daemon-planner -n icd since 2026-12-06T02:59:00Z"
	eventually(t, "the planner is said down", func() bool { return strings.HasPrefix(r.Health().Problem, want) })
	if !r.HasSynced() || len(r.Wanted()) != 1 {
		t.Error("a node whose planner is down does not keep its set")
	}
	if _, err := client.CoordinationV1().Leases("icd").Update(ctx, plannerLease(now.Add(-time.Second)), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the planner is back", func() bool { return r.Health().Problem == "" })
}

// putData creates or replaces ConfigMap name of namespace icd, holding data.
func putData(t *testing.T, client *fake.Clientset, name string, data []byte) {
	t.Helper()
	cms := client.CoreV1().ConfigMaps("icd")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "icd"}, BinaryData: map[string][]byte{Key: data}}
	if _, err := cms.Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		if _, err := cms.Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// A node that started before its planner led (an install) reads the
// planner's Lease again as soon as a set is published, not at the next
// round: it is ready as soon as the planner leads.
func TestReaderReadsTheLeaseWithANewSet(t *testing.T) {
	client := fake.NewClientset()
	r := NewReader(client, "icd")
	r.leaseEvery = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, func() {})
	publishOne(t, client, "docker.io/library/alpine:latest")
	eventually(t, "no planner is said to have led", func() bool { return strings.HasPrefix(r.Health().Problem, "no planner has led yet") })
	if _, err := client.CoordinationV1().Leases("icd").Create(ctx, plannerLease(time.Now()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	publishOne(t, client, "docker.io/library/nginx:latest")
	eventually(t, "the planner is seen to lead with its next set", func() bool { return r.Health().Problem == "" })
}

// publishOne publishes a set of one image, as the planner would.
func publishOne(t *testing.T, client *fake.Clientset, image string) {
	t.Helper()
	data, err := Encode(Build([]source.Want{{Image: image, Origin: "flag --image", Static: true}}, 10, nil))
	if err != nil {
		t.Fatal(err)
	}
	putData(t, client, ConfigMap, data.Head)
}
