package warm

import (
	"cmp"
	"context"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
)

const (
	nodeName = "node-1"
	key      = DefaultTaintKey
)

var (
	tWrite   = t0.Add(time.Hour) // the writer's clock
	earlier  = metav1.NewTime(t0.Add(-time.Hour))
	kubelets = []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: earlier, LastTransitionTime: earlier},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", LastHeartbeatTime: earlier, LastTransitionTime: earlier},
	}
	startup  = corev1.Taint{Key: key, Effect: corev1.TaintEffectNoSchedule}
	other    = corev1.Taint{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}
	warmSt   = State{Warm: true, Status: corev1.ConditionTrue, Reason: ReasonWarm, Message: "all 2 wanted images are cached", ReleaseTaint: true}
	warming  = State{Status: corev1.ConditionFalse, Reason: ReasonWarming, Message: "warming: 1/2 wanted images cached; waiting for b:1"}
	timedOut = State{Status: corev1.ConditionFalse, Reason: ReasonTimedOut, Timeout: 10 * time.Minute, TimedOut: true, ReleaseTaint: true,
		Message: "1/2 wanted images cached when the 10m0s warm-up timeout passed; missing: b:1"}
)

var nodesGVR = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}

// node returns node-1 with the kubelet's conditions, ours if given, and taints.
func node(ours *corev1.NodeCondition, taints ...corev1.Taint) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName, ResourceVersion: "1"},
		Spec:       corev1.NodeSpec{Taints: taints},
		Status:     corev1.NodeStatus{Conditions: append([]corev1.NodeCondition(nil), kubelets...)},
	}
	if ours != nil {
		n.Status.Conditions = append(n.Status.Conditions, *ours)
	}
	return n
}

// cond is our condition as a State writes it, with its times.
func cond(st State, transition, heartbeat metav1.Time) *corev1.NodeCondition {
	c := st.Condition()
	c.LastTransitionTime, c.LastHeartbeatTime = transition, heartbeat
	return &c
}

// counted is the condition an earlier release wrote while warming, with the
// counts in its message.
func counted(transition metav1.Time) *corev1.NodeCondition {
	return &corev1.NodeCondition{Type: ConditionType, Status: corev1.ConditionFalse, Reason: ReasonWarming,
		Message: "warming: 0/2 wanted images cached; waiting for a:1, b:1", LastTransitionTime: transition, LastHeartbeatTime: transition}
}

type fixture struct {
	client *fake.Clientset
	w      *Node
	events chan string
}

func newFixture(t testing.TB, n *corev1.Node, taintKey string) *fixture {
	t.Helper()
	client := fake.NewClientset(n)
	serveResourceVersions(client)
	rec := record.NewFakeRecorder(10)
	w := NewNode(client, NodeConfig{Name: nodeName, TaintKey: taintKey, Recorder: rec, FieldManager: "image-cache-daemon"})
	w.now = func() time.Time { return tWrite }
	return &fixture{client: client, w: w, events: rec.Events}
}

// apply runs Apply and returns the actions it made.
func (f *fixture) apply(t testing.TB, st State) (Result, []k8stesting.Action) {
	t.Helper()
	f.client.ClearActions()
	res, err := f.w.Apply(context.Background(), st)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res, f.client.Actions()
}

func (f *fixture) node(t testing.TB) *corev1.Node {
	t.Helper()
	obj, err := f.client.Tracker().Get(nodesGVR, "", nodeName)
	if err != nil {
		t.Fatalf("reading the node back: %v", err)
	}
	return obj.(*corev1.Node)
}

// action is what a test expects of one API action.
type action struct {
	verb, subresource string
	patchType         types.PatchType
}

func (a action) String() string {
	return a.verb + " nodes/" + a.subresource + " " + string(a.patchType)
}

var (
	get         = action{verb: "get"}
	patchStatus = action{verb: "patch", subresource: "status", patchType: types.StrategicMergePatchType}
	patchTaints = action{verb: "patch", patchType: types.MergePatchType}
)

// checkActions compares the actions made with want, each on node-1.
func checkActions(t testing.TB, got []k8stesting.Action, want ...action) {
	t.Helper()
	var gotA []action
	for _, a := range got {
		if a.GetResource() != nodesGVR {
			t.Errorf("action %s on %v, want only nodes", a.GetVerb(), a.GetResource())
		}
		x := action{verb: a.GetVerb(), subresource: a.GetSubresource()}
		// PatchAction first: a patch has a name too, so it is a GetAction.
		switch a := a.(type) {
		case k8stesting.PatchAction:
			x.patchType = a.GetPatchType()
			if a.GetName() != nodeName {
				t.Errorf("patch of node %q, want %q", a.GetName(), nodeName)
			}
		case k8stesting.GetAction:
			if a.GetName() != nodeName {
				t.Errorf("get of node %q, want %q", a.GetName(), nodeName)
			}
		}
		gotA = append(gotA, x)
	}
	if !reflect.DeepEqual(gotA, want) && (len(gotA) > 0 || len(want) > 0) {
		t.Errorf("actions:\n got %v\nwant %v", gotA, want)
	}
}

// patchBody decodes the patch of action i.
func patchBody(t *testing.T, actions []k8stesting.Action, i int) map[string]any {
	t.Helper()
	var body map[string]any
	if err := json.Unmarshal(actions[i].(k8stesting.PatchAction).GetPatch(), &body); err != nil {
		t.Fatalf("decoding patch %d: %v", i, err)
	}
	return body
}

// resourceVersion is the metadata.resourceVersion of a patch ("" if none).
func resourceVersion(body map[string]any) string {
	meta, _ := body["metadata"].(map[string]any)
	rv, _ := meta["resourceVersion"].(string)
	return rv
}

// othersConditions are the node's conditions but ours, in order.
func othersConditions(n *corev1.Node) []corev1.NodeCondition {
	var others []corev1.NodeCondition
	for _, c := range n.Status.Conditions {
		if c.Type != ConditionType {
			others = append(others, c)
		}
	}
	return others
}

func ourCondition(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == ConditionType {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func TestApplyCondition(t *testing.T) {
	now := metav1.NewTime(tWrite)
	for _, tc := range []struct {
		name    string
		ours    *corev1.NodeCondition // on the node before
		st      State
		want    *corev1.NodeCondition // on the node after
		actions []action
	}{
		{"a first condition is added", nil, warming, cond(warming, now, now), []action{get, patchStatus}},
		{"the same status keeps its transition time", counted(earlier), warming, cond(warming, earlier, now), []action{get, patchStatus}},
		{"a new status is a transition", cond(warming, earlier, earlier), warmSt, cond(warmSt, now, now), []action{get, patchStatus}},
		{"a new reason is written", cond(State{Status: corev1.ConditionFalse, Reason: ReasonImagesFailed}, earlier, earlier),
			warming, cond(warming, earlier, now), []action{get, patchStatus}},
		{"nothing changed: no write", cond(warming, earlier, earlier), warming, cond(warming, earlier, earlier), []action{get}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, node(tc.ours), "")
			res, actions := f.apply(t, tc.st)
			checkActions(t, actions, tc.actions...)
			if res.ConditionWritten != (len(tc.actions) > 1) || res.TaintRemoved {
				t.Errorf("result %+v", res)
			}
			after := f.node(t)
			if got := ourCondition(after); !equality.Semantic.DeepEqual(got, tc.want) {
				t.Errorf("condition:\n got %+v\nwant %+v", got, tc.want)
			}
			if got := othersConditions(after); !equality.Semantic.DeepEqual(got, kubelets) {
				t.Errorf("the kubelet's conditions changed: %+v", got)
			}
			if len(tc.actions) > 1 {
				// The patch names our condition alone, so that it
				// merges by type and leaves the kubelet's alone.
				conds := patchBody(t, actions, 1)["status"].(map[string]any)["conditions"].([]any)
				if len(conds) != 1 || conds[0].(map[string]any)["type"] != string(ConditionType) {
					t.Errorf("the patch holds conditions %v, want only %s", conds, ConditionType)
				}
				if fm := actions[1].(k8stesting.PatchActionImpl).PatchOptions.FieldManager; fm != "image-cache-daemon" {
					t.Errorf("field manager %q", fm)
				}
			}

			// What was read or written is known: the same state again
			// makes no request at all.
			_, again := f.apply(t, tc.st)
			checkActions(t, again)
		})
	}
}

func TestApplyTaint(t *testing.T) {
	now := metav1.NewTime(tWrite)
	noExecute := corev1.Taint{Key: key, Effect: corev1.TaintEffectNoExecute}
	for _, tc := range []struct {
		name     string
		taintKey string
		ours     *corev1.NodeCondition
		taints   []corev1.Taint
		st       State
		actions  []action
		want     []corev1.Taint // on the node after
		event    string         // prefix of the Event; "" for none
		rv       string         // the taint patch's resourceVersion; "1" when ""
	}{
		{
			name: "warm: only the startup taint goes", taintKey: key, ours: cond(warmSt, earlier, earlier),
			taints: []corev1.Taint{other, startup}, st: warmSt,
			actions: []action{get, patchTaints}, want: []corev1.Taint{other},
			event: "Normal StartupTaintRemoved Removed startup taint " + key + ": the node is warm: all 2 wanted images are cached",
		},
		{
			name: "timed out: the taint goes, with a warning", taintKey: key, ours: cond(timedOut, earlier, earlier),
			taints: []corev1.Taint{startup, other}, st: timedOut,
			actions: []action{get, patchTaints}, want: []corev1.Taint{other},
			event: "Warning StartupTaintRemoved Removed startup taint " + key + ": timed out after 10m0s: 1/2 wanted images cached",
		},
		{
			name: "every effect of the key goes", taintKey: key, ours: cond(warmSt, earlier, earlier),
			taints: []corev1.Taint{startup, other, noExecute}, st: warmSt,
			actions: []action{get, patchTaints}, want: []corev1.Taint{other},
			event: "Normal StartupTaintRemoved",
		},
		{
			name: "the last taint goes", taintKey: key, ours: cond(warmSt, earlier, earlier),
			taints: []corev1.Taint{startup}, st: warmSt,
			actions: []action{get, patchTaints}, want: nil,
			event: "Normal StartupTaintRemoved",
		},
		{
			name: "condition and taint in one sync", taintKey: key,
			taints: []corev1.Taint{startup}, st: warmSt,
			actions: []action{get, patchStatus, patchTaints}, want: nil,
			event: "Normal StartupTaintRemoved",
			rv:    "2", // the node as the status patch left it: no conflict
		},
		{
			name: "a node without the taint is left alone", taintKey: key, ours: cond(warmSt, earlier, earlier),
			taints: []corev1.Taint{other}, st: warmSt,
			actions: []action{get}, want: []corev1.Taint{other},
		},
		{
			name: "warming: the taint stays, unread", taintKey: key, ours: cond(warming, earlier, earlier),
			taints: []corev1.Taint{startup}, st: warming,
			actions: []action{get}, want: []corev1.Taint{startup},
		},
		{
			name: "no taint key: no taint is touched", ours: cond(warmSt, earlier, earlier),
			taints: []corev1.Taint{startup}, st: warmSt,
			actions: []action{get}, want: []corev1.Taint{startup},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, node(tc.ours, tc.taints...), tc.taintKey)
			res, actions := f.apply(t, tc.st)
			checkActions(t, actions, tc.actions...)
			removed := tc.actions[len(tc.actions)-1] == patchTaints
			if res.TaintRemoved != removed {
				t.Errorf("TaintRemoved = %v, want %v", res.TaintRemoved, removed)
			}
			after := f.node(t)
			if !reflect.DeepEqual(after.Spec.Taints, tc.want) && len(after.Spec.Taints)+len(tc.want) > 0 {
				t.Errorf("taints after: %+v, want %+v", after.Spec.Taints, tc.want)
			}
			if tc.ours == nil {
				if got := ourCondition(after); !equality.Semantic.DeepEqual(got, cond(tc.st, now, now)) {
					t.Errorf("condition %+v", got)
				}
			}
			if removed {
				// The patch carries the resourceVersion it was made
				// from, and the taints alone.
				want := cmp.Or(tc.rv, "1")
				body := patchBody(t, actions, len(actions)-1)
				if rv := resourceVersion(body); rv != want {
					t.Errorf("the taint patch has resourceVersion %q, want the one read (%s)", rv, want)
				}
				spec, _ := body["spec"].(map[string]any)
				if _, ok := spec["taints"]; len(body) != 2 || len(spec) != 1 || !ok {
					t.Errorf("the taint patch holds %v, want metadata.resourceVersion and spec.taints alone", body)
				}
			}
			select {
			case ev := <-f.events:
				if tc.event == "" || !strings.HasPrefix(ev, tc.event) {
					t.Errorf("event %q, want %q", ev, tc.event)
				}
			default:
				if tc.event != "" {
					t.Errorf("no event, want %q", tc.event)
				}
			}

			// A startup taint is looked for once: gone or absent, the
			// same state makes no request. Still warming, it is not
			// looked for, and the condition is known.
			_, again := f.apply(t, tc.st)
			checkActions(t, again)
		})
	}
}

// serveResourceVersions makes the fake treat resourceVersions as the API
// server does, which its tracker does not: every write of a node bumps it,
// and a patch of nodes that carries one is refused with a conflict (409)
// unless it is the stored one.
func serveResourceVersions(client *fake.Clientset) {
	tracker := client.Tracker()
	client.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchAction)
		obj, err := tracker.Get(nodesGVR, "", p.GetName())
		if err != nil {
			return true, nil, err
		}
		stored := obj.(*corev1.Node).ResourceVersion
		if p.GetSubresource() == "" {
			var body map[string]any
			if err := json.Unmarshal(p.GetPatch(), &body); err != nil {
				return true, nil, err
			}
			if rv := resourceVersion(body); rv != "" && rv != stored {
				return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, p.GetName(),
					errorString("the object has been modified"))
			}
		}
		_, obj, err = k8stesting.ObjectReaction(tracker)(a)
		if err != nil {
			return true, nil, err
		}
		n := obj.(*corev1.Node).DeepCopy()
		rv, _ := strconv.Atoi(stored)
		n.ResourceVersion = strconv.Itoa(rv + 1)
		return true, n, tracker.Update(nodesGVR, n, "")
	})
}

// concurrentTaint has another writer add a taint right after the writer's
// first read of the node.
func concurrentTaint(t *testing.T, f *fixture, added corev1.Taint) {
	t.Helper()
	tracker := f.client.Tracker()
	reads := 0
	f.client.PrependReactor("get", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		reads++
		if reads != 1 {
			return false, nil, nil
		}
		obj, err := tracker.Get(nodesGVR, "", nodeName)
		if err != nil {
			return true, nil, err
		}
		read := obj.(*corev1.Node)
		changed := read.DeepCopy()
		changed.Spec.Taints = append(changed.Spec.Taints, added)
		changed.ResourceVersion = "2"
		if err := tracker.Update(nodesGVR, changed, ""); err != nil {
			t.Fatalf("the other writer: %v", err)
		}
		return true, read, nil
	})
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestApplyTaintConflict(t *testing.T) {
	added := corev1.Taint{Key: "node.kubernetes.io/unschedulable", Effect: corev1.TaintEffectNoSchedule}
	f := newFixture(t, node(cond(warmSt, earlier, earlier), startup, other), key)
	concurrentTaint(t, f, added)

	res, actions := f.apply(t, warmSt)
	checkActions(t, actions, get, patchTaints, get, patchTaints)
	if !res.TaintRemoved {
		t.Errorf("result %+v, want the taint removed", res)
	}
	for i, rv := range map[int]string{1: "1", 3: "2"} {
		if got := resourceVersion(patchBody(t, actions, i)); got != rv {
			t.Errorf("patch %d has resourceVersion %q, want %s", i, got, rv)
		}
	}
	if got, want := f.node(t).Spec.Taints, []corev1.Taint{other, added}; !reflect.DeepEqual(got, want) {
		t.Errorf("taints after: %+v, want %+v (the concurrent writer's taint kept)", got, want)
	}
	if n := len(f.events); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
}

func TestApplyErrors(t *testing.T) {
	forbidden := func(sub string) k8stesting.ReactionFunc {
		return func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetSubresource() != sub {
				return false, nil, nil
			}
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, nodeName, errorString("RBAC"))
		}
	}
	conflict := func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, nodeName, errorString("modified"))
	}
	for _, tc := range []struct {
		name    string
		verb    string
		react   k8stesting.ReactionFunc
		actions []action
		errText string
		removed bool // the taint went despite the error
		written bool // the condition was written despite the error
	}{
		{"no patch on nodes/status: the taint still goes", "patch", forbidden("status"),
			[]action{get, patchStatus, patchTaints}, "(the daemon's ClusterRole must grant patch on nodes/status)", true, false},
		{"no patch on nodes: the condition is still written", "patch", forbidden(""),
			[]action{get, patchStatus, patchTaints}, "(the daemon's ClusterRole must grant patch on nodes)", false, true},
		{"no get on nodes", "get", forbidden(""), []action{get}, "(the daemon's ClusterRole must grant get on nodes)", false, false},
		{"conflicts without end are given up", "patch", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetSubresource() != "" {
				return false, nil, nil
			}
			return conflict(a)
		}, []action{get, patchStatus, patchTaints, get, patchTaints, get, patchTaints, get, patchTaints, get, patchTaints},
			"removing taint " + key + " from node node-1: ", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, node(nil, startup), key)
			f.client.PrependReactor(tc.verb, "nodes", tc.react)
			res, err := f.w.Apply(context.Background(), warmSt)
			if err == nil || !strings.Contains(err.Error(), tc.errText) {
				t.Fatalf("Apply error %v, want one saying %q", err, tc.errText)
			}
			checkActions(t, f.client.Actions(), tc.actions...)
			if res.TaintRemoved != tc.removed || res.ConditionWritten != tc.written {
				t.Errorf("result %+v, want removed %v, written %v", res, tc.removed, tc.written)
			}

			// What failed is tried again at the next sync.
			f.client.ReactionChain = f.client.ReactionChain[1:]
			f.client.ClearActions()
			res, err = f.w.Apply(context.Background(), warmSt)
			if err != nil {
				t.Fatalf("Apply again: %v", err)
			}
			if res.TaintRemoved == tc.removed || res.ConditionWritten == tc.written {
				t.Errorf("the retry wrote %+v, want what failed before", res)
			}
		})
	}
}
