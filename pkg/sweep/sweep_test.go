package sweep

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
)

// t0 is the tests' now; owner is the DaemonSet that owns the prefetch pods.
var (
	t0    = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	owner = metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "icd", UID: "ds-uid"}
)

// daemonSetFixture is the DaemonSet of owner, changed by mods.
func daemonSetFixture(mods ...func(*appsv1.DaemonSet)) *appsv1.DaemonSet {
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "icd", Name: owner.Name, UID: owner.UID},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "daemon"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "daemon"}}},
		},
	}
	for _, m := range mods {
		m(ds)
	}
	return ds
}

func withNodeSelector(sel map[string]string) func(*appsv1.DaemonSet) {
	return func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.NodeSelector = sel }
}

// gcNode is a Node with labels and taints.
func gcNode(name string, labels map[string]string, taints ...corev1.Taint) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.NodeSpec{Taints: taints}}
}

// prefetchMeta is the metadata of a prefetch pod of node, made as the
// daemon makes it, owned by the DaemonSet with UID owner.
func prefetchMeta(name, node string, ownerUID types.UID, created time.Time) *metav1.PartialObjectMetadata {
	o := owner
	o.UID = ownerUID
	cfg := prefetch.Config{Namespace: "icd", NodeName: node, WardenImage: "warden:v1", Owner: &o}
	p := cfg.Pod([]string{"docker.io/library/" + name + ":1"}, 0, corev1.PullIfNotPresent)
	p.Name, p.UID, p.CreationTimestamp = name, types.UID(name+"-uid"), metav1.NewTime(created)
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: p.ObjectMeta}
}

func deleting(m *metav1.PartialObjectMetadata) *metav1.PartialObjectMetadata {
	m.DeletionTimestamp = ptr.To(metav1.NewTime(t0))
	return m
}

// daemonPod is a daemon pod of the DaemonSet on node.
func daemonPod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "icd", Name: name, Labels: map[string]string{"app": "daemon"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: owner.Name, UID: owner.UID, Controller: ptr.To(true)}}},
		Spec:   corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

// newTestGC is a Collector for the daemon on node, with the API objects kube
// and the prefetch pods' metadata.
func newTestGC(node string, kube []runtime.Object, pods ...*metav1.PartialObjectMetadata) (*Collector, *fake.Clientset, *metadatafake.FakeMetadataClient, *record.FakeRecorder) {
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		panic(err)
	}
	objs := make([]runtime.Object, len(pods))
	for i, p := range pods {
		objs[i] = p
	}
	meta := metadatafake.NewSimpleMetadataClient(scheme, objs...)
	client := fake.NewClientset(kube...)
	rec := record.NewFakeRecorder(20)
	o := owner
	g := NewForNode(client, meta, prefetch.Config{Namespace: "icd", NodeName: node, Owner: &o}, rec, 2*time.Minute)
	return g, client, meta, rec
}

// deletedPods are the names of the pods deleted through the metadata client.
func deletedPods(meta *metadatafake.FakeMetadataClient) []string {
	var names []string
	for _, a := range meta.Actions() {
		if d, ok := a.(k8stesting.DeleteAction); ok && d.GetResource().Resource == "pods" {
			names = append(names, d.GetName())
		}
	}
	slices.Sort(names)
	return names
}

// The DaemonSet controller's own rules decide whether a node is a target.
func TestTargets(t *testing.T) {
	taint := func(key string, effect corev1.TaintEffect) corev1.Taint {
		return corev1.Taint{Key: key, Value: "x", Effect: effect}
	}
	tolerate := func(key string, effect corev1.TaintEffect) func(*appsv1.DaemonSet) {
		return func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.Tolerations = append(ds.Spec.Template.Spec.Tolerations,
				corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: effect})
		}
	}
	required := func(op corev1.NodeSelectorOperator, values ...string) func(*appsv1.DaemonSet) {
		return func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: op, Values: values}},
				}}},
			}}
		}
	}
	preferred := func(ds *appsv1.DaemonSet) {
		ds.Spec.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 1, Preference: corev1.NodeSelectorTerm{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"b"}}},
			}}},
		}}
	}
	zoneA := map[string]string{"zone": "a", "cache": "yes"}
	for _, tc := range []struct {
		name string
		ds   *appsv1.DaemonSet
		node *corev1.Node
		want bool
	}{
		{"no constraints", daemonSetFixture(), gcNode("n", nil), true},
		{"nodeSelector matches", daemonSetFixture(withNodeSelector(map[string]string{"cache": "yes"})), gcNode("n", zoneA), true},
		{"nodeSelector does not match", daemonSetFixture(withNodeSelector(map[string]string{"cache": "no"})), gcNode("n", zoneA), false},
		{"nodeSelector label missing", daemonSetFixture(withNodeSelector(map[string]string{"cache": "yes"})), gcNode("n", nil), false},
		{"required affinity matches", daemonSetFixture(required(corev1.NodeSelectorOpIn, "a", "b")), gcNode("n", zoneA), true},
		{"required affinity does not match", daemonSetFixture(required(corev1.NodeSelectorOpNotIn, "a")), gcNode("n", zoneA), false},
		{"preferred affinity is not required", daemonSetFixture(preferred), gcNode("n", zoneA), true},
		{"template names another node", daemonSetFixture(func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.NodeName = "other" }), gcNode("n", nil), false},
		{"untolerated NoSchedule taint", daemonSetFixture(), gcNode("n", nil, taint("gpu", corev1.TaintEffectNoSchedule)), false},
		{"untolerated NoExecute taint", daemonSetFixture(), gcNode("n", nil, taint("gpu", corev1.TaintEffectNoExecute)), false},
		{"untolerated PreferNoSchedule taint", daemonSetFixture(), gcNode("n", nil, taint("gpu", corev1.TaintEffectPreferNoSchedule)), true},
		{"tolerated NoSchedule taint", daemonSetFixture(tolerate("gpu", corev1.TaintEffectNoSchedule)), gcNode("n", nil, taint("gpu", corev1.TaintEffectNoSchedule)), true},
		{"toleration of another effect", daemonSetFixture(tolerate("gpu", corev1.TaintEffectNoExecute)), gcNode("n", nil, taint("gpu", corev1.TaintEffectNoSchedule)), false},
		{"tolerates every taint", daemonSetFixture(tolerate("", "")), gcNode("n", nil, taint("gpu", corev1.TaintEffectNoExecute)), true},
		{"cordoned (the controller's own toleration)", daemonSetFixture(), gcNode("n", nil, taint(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule)), true},
		{"not ready (the controller's own toleration)", daemonSetFixture(), gcNode("n", nil, taint(corev1.TaintNodeNotReady, corev1.TaintEffectNoExecute)), true},
		{"network unavailable, pod network", daemonSetFixture(), gcNode("n", nil, taint(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule)), false},
		{"network unavailable, host network", daemonSetFixture(func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.HostNetwork = true }),
			gcNode("n", nil, taint(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := targets(klog.Background(), tc.ds, tc.node); got != tc.want {
				t.Errorf("targets = %v, want %v", got, tc.want)
			}
		})
	}
}

// On exit, a daemon deletes its node's own prefetch pods only when its pod
// is going away and the DaemonSet no longer targets the node.
func TestLeaveNode(t *testing.T) {
	excluded := withNodeSelector(map[string]string{"cache": "yes"})
	self := func(deleted bool) *corev1.Pod {
		p := daemonPod("daemon-n1", "n1")
		if deleted {
			p.DeletionTimestamp = ptr.To(metav1.NewTime(t0))
		}
		return p
	}
	deletingSelf := self(true)
	mine := []string{"n1-a", "n1-b"}
	for _, tc := range []struct {
		name string
		kube []runtime.Object // the daemon's pod, its DaemonSet and its node
		want []string
	}{
		{"pod deleted, nodeSelector excludes the node", []runtime.Object{deletingSelf, daemonSetFixture(excluded), gcNode("n1", nil)}, mine},
		{"pod deleted, untolerated taint", []runtime.Object{deletingSelf, daemonSetFixture(),
			gcNode("n1", nil, corev1.Taint{Key: "gpu", Effect: corev1.TaintEffectNoSchedule})}, mine},
		{"pod gone, node excluded", []runtime.Object{daemonSetFixture(excluded), gcNode("n1", nil)}, mine},
		{"pod deleted, node gone", []runtime.Object{deletingSelf, daemonSetFixture(excluded)}, mine},
		{"pod deleted, node still a target (rolling update, eviction)", []runtime.Object{deletingSelf, daemonSetFixture(excluded), gcNode("n1", map[string]string{"cache": "yes"})}, nil},
		{"pod stays (container restart), node excluded", []runtime.Object{self(false), daemonSetFixture(excluded), gcNode("n1", nil)}, nil},
		{"DaemonSet gone (uninstall)", []runtime.Object{deletingSelf, gcNode("n1", nil)}, nil},
		{"DaemonSet replaced", []runtime.Object{deletingSelf, daemonSetFixture(excluded, func(ds *appsv1.DaemonSet) { ds.UID = "new-uid" }), gcNode("n1", nil)}, nil},
		{"DaemonSet being deleted", []runtime.Object{deletingSelf, daemonSetFixture(excluded, func(ds *appsv1.DaemonSet) {
			ds.DeletionTimestamp = ptr.To(metav1.NewTime(t0))
		}), gcNode("n1", nil)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, _, meta, _ := newTestGC("n1", tc.kube,
				prefetchMeta("n1-a", "n1", owner.UID, t0), prefetchMeta("n1-b", "n1", owner.UID, t0),
				prefetchMeta("n1-foreign", "n1", "other-ds", t0), deleting(prefetchMeta("n1-going", "n1", owner.UID, t0)),
				prefetchMeta("n2-a", "n2", owner.UID, t0))
			n, err := g.leaveNode(context.Background(), "daemon-n1")
			if err != nil {
				t.Fatal(err)
			}
			if got := deletedPods(meta); !slices.Equal(got, tc.want) || n != len(tc.want) {
				t.Errorf("deleted %v (reported %d), want %v", got, n, tc.want)
			}
		})
	}
}

// A read that fails keeps the pods.
func TestLeaveNodeKeepsPodsWhenInDoubt(t *testing.T) {
	g, client, meta, _ := newTestGC("n1", []runtime.Object{daemonSetFixture(withNodeSelector(map[string]string{"cache": "yes"})), gcNode("n1", nil)},
		prefetchMeta("n1-a", "n1", owner.UID, t0))
	client.PrependReactor("get", "daemonsets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, context.DeadlineExceeded
	})
	if _, err := g.leaveNode(context.Background(), "daemon-n1"); err == nil || !strings.Contains(err.Error(), "get on daemonsets") {
		t.Errorf("error %v, want one that names the permission", err)
	}
	if got := deletedPods(meta); len(got) > 0 {
		t.Errorf("deleted %v", got)
	}
}

// The sweep deletes the old prefetch pods of nodes the DaemonSet has left and
// where no daemon runs, once two sweeps in a row agree.
func TestSweep(t *testing.T) {
	target := map[string]string{"cache": "yes"}
	gone := daemonPod("daemon-tainted", "tainted")
	gone.DeletionTimestamp = ptr.To(metav1.NewTime(t0))
	old := t0.Add(-time.Hour)
	g, client, meta, rec := newTestGC("home", []runtime.Object{
		daemonSetFixture(withNodeSelector(target)),
		gcNode("home", target), daemonPod("daemon-home", "home"),
		gcNode("still-running", nil), daemonPod("daemon-still-running", "still-running"),
		gcNode("starting", target),
		gcNode("left", nil),
		gcNode("young", nil),
		gcNode("tainted", target, corev1.Taint{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}), gone,
		gcNode("flapping", nil),
	},
		prefetchMeta("home-a", "home", owner.UID, old),
		prefetchMeta("still-running-a", "still-running", owner.UID, old),
		prefetchMeta("starting-a", "starting", owner.UID, old),
		prefetchMeta("left-a", "left", owner.UID, old), prefetchMeta("left-b", "left", owner.UID, old),
		prefetchMeta("left-foreign", "left", "other-ds", old),
		prefetchMeta("gone-a", "gone", owner.UID, old),
		prefetchMeta("young-a", "young", owner.UID, t0.Add(time.Minute)),
		prefetchMeta("tainted-a", "tainted", owner.UID, old),
		prefetchMeta("flapping-a", "flapping", owner.UID, old),
	)
	now := t0
	g.now = func() time.Time { return now }
	ctx := context.Background()
	sweep := func(what string, change func(), want ...string) {
		t.Helper()
		if change != nil {
			change()
		}
		meta.ClearActions()
		if err := g.sweep(ctx); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := deletedPods(meta); !slices.Equal(got, want) {
			t.Errorf("%s: deleted %v, want %v", what, got, want)
		}
		now = now.Add(g.interval)
	}
	setLabels := func(node string, labels map[string]string) func() {
		return func() {
			if _, err := client.CoreV1().Nodes().Update(ctx, gcNode(node, labels), metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	sweep("first sweep", nil)
	sweep("second sweep", setLabels("flapping", target), "gone-a", "left-a", "left-b", "tainted-a")
	sweep("third sweep", setLabels("flapping", nil), "young-a")
	sweep("fourth sweep", nil, "flapping-a")

	if n := len(rec.Events); n != 5 {
		t.Errorf("%d Events, want one per node cleaned (5)", n)
	}
	for len(rec.Events) > 0 {
		if e := <-rec.Events; !strings.Contains(e, ReasonPrefetchPodsRemoved) {
			t.Errorf("Event %q", e)
		}
	}
}

// Only the daemon holding the reporter Lease sweeps, and one that held it,
// lost it and leads again waits two sweeps again.
func TestSweepOnlyWhileLeading(t *testing.T) {
	g, client, meta, _ := newTestGC("home", []runtime.Object{daemonSetFixture(withNodeSelector(map[string]string{"cache": "yes"})), gcNode("left", nil)},
		prefetchMeta("left-a", "left", owner.UID, t0.Add(-time.Hour)))
	g.now = func() time.Time { return t0 }
	ctx := context.Background()
	for i, step := range []struct {
		leading   bool
		wantCalls bool
		want      []string
	}{
		{leading: false},
		{leading: true, wantCalls: true},
		{leading: false},
		{leading: true, wantCalls: true},
		{leading: true, wantCalls: true, want: []string{"left-a"}},
	} {
		client.ClearActions()
		meta.ClearActions()
		g.tick(ctx, step.leading)
		calls := len(client.Actions()) + len(meta.Actions())
		if (calls > 0) != step.wantCalls {
			t.Errorf("tick %d (leading %v): %d API calls", i, step.leading, calls)
		}
		if got := deletedPods(meta); !slices.Equal(got, step.want) {
			t.Errorf("tick %d (leading %v): deleted %v, want %v", i, step.leading, got, step.want)
		}
	}
}

// A daemon outside a DaemonSet has no node to leave; one inside cleans up
// within its pod's termination grace period.
func TestNodeGCSetup(t *testing.T) {
	podOwner := metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: "daemon", UID: "pod-uid"}
	if g := NewForNode(fake.NewClientset(), nil, prefetch.Config{Owner: &podOwner}, nil, time.Minute); g != nil {
		t.Error("a collector for a daemon that runs under no DaemonSet")
	}
	for _, tc := range []struct {
		grace *int64
		want  time.Duration
	}{
		{nil, 28 * time.Second},
		{ptr.To[int64](10), 8 * time.Second},
		{ptr.To[int64](1), time.Second},
	} {
		p := &corev1.Pod{Spec: corev1.PodSpec{TerminationGracePeriodSeconds: tc.grace}}
		if got := exitBudget(p); got != tc.want {
			t.Errorf("grace %v: budget %v, want %v", tc.grace, got, tc.want)
		}
	}
}

// The planner sweeps for the live DaemonSet of its name, whichever its UID:
// it runs under no DaemonSet itself.
func TestPlannerSweepFollowsTheDaemonSet(t *testing.T) {
	g, _, meta, _ := newTestGC("", []runtime.Object{daemonSetFixture(withNodeSelector(map[string]string{"cache": "yes"})), gcNode("left", nil)},
		prefetchMeta("left-a", "left", owner.UID, t0.Add(-time.Hour)),
		prefetchMeta("left-foreign", "left", "other-ds", t0.Add(-time.Hour)))
	planner := NewForPlanner(g.client, g.meta, "icd", g.recorder, g.interval)
	planner.prefetch.Owner.Name = owner.Name // the fixture's DaemonSet
	planner.now = func() time.Time { return t0 }
	ctx := context.Background()
	planner.tick(ctx, true)
	planner.tick(ctx, true)
	if got := deletedPods(meta); !slices.Equal(got, []string{"left-a"}) {
		t.Errorf("deleted %v; want the DaemonSet's pod of the node it left, not another owner's", got)
	}
	if planner.prefetch.Owner.UID != owner.UID {
		t.Errorf("followed UID %q; want the live DaemonSet's %q", planner.prefetch.Owner.UID, owner.UID)
	}
}
