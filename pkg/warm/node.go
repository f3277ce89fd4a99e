package warm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
)

// NodeConfig is what a Node writer works with, besides its client.
type NodeConfig struct {
	// Name is the daemon's own node.
	Name string
	// TaintKey is the startup taint to remove (--startup-taint); "" removes
	// none. Every taint with this key goes (whatever its effect), no other.
	TaintKey string
	// Recorder records the Event on the Node when the taint goes; nil
	// records none.
	Recorder record.EventRecorder
	// FieldManager names the writes.
	FieldManager string
}

// Node writes the warm state onto one Node: ConditionType on its status, and,
// once, the removal of the startup taint. It remembers what it last saw on
// the node, so that a sync that changes nothing costs no request; Apply is
// safe for concurrent use, though the daemon's single worker is its only
// caller.
//
// The condition follows the node's warm state, not the images: its message
// carries no count (State.Condition), and once the node has warmed up the
// condition stays True while images wanted since are pulled, fail or time
// out. Otherwise every tenant's edit of an image list would be two Node
// writes on every node (False while the new image pulls, True once it is
// cached), or one per edit on an old node, where a new image is at once past
// the warm-up timeout.
type Node struct {
	client kubernetes.Interface
	cfg    NodeConfig
	now    func() time.Time

	mu sync.Mutex
	// known is the condition as last read or written (nil: not known yet).
	// Something else changing it is not noticed until the state changes,
	// which spares a read per sync.
	known *corev1.NodeCondition
	// taintDone: the taint was removed, or found absent when it was due to
	// go. It is a startup taint: once gone, it is not looked for again.
	taintDone bool
	// warmedUp: the node has warmed up, so a state that is not warm writes
	// no condition. Set when a True condition is written, or read from the
	// node while the startup taint is not on it: a node tainted again is
	// warming up again, and a restarted daemon does not turn a warm node's
	// condition False while its sources sync.
	warmedUp bool
}

// NewNode returns the writer for the node cfg.Name.
func NewNode(client kubernetes.Interface, cfg NodeConfig) *Node {
	return &Node{client: client, cfg: cfg, now: time.Now}
}

// Result says what Apply wrote.
type Result struct {
	// ConditionWritten: the condition was patched.
	ConditionWritten bool
	// TaintRemoved: the startup taint was removed (and the Event recorded).
	TaintRemoved bool
}

// Apply brings the node in line with st: it patches the condition when its
// status, reason or message differ from the node's (unless the node has
// warmed up and st is not warm), and when st.ReleaseTaint removes the
// startup taint if the node has it. It reads the node only when something
// may have to be written.
func (n *Node) Apply(ctx context.Context, st State) (Result, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var res Result
	want := st.Condition()
	needCondition := n.known == nil || (!sameCondition(*n.known, want) && (st.Warm || !n.warmedUp))
	needTaint := st.ReleaseTaint && n.cfg.TaintKey != "" && !n.taintDone
	if !needCondition && !needTaint {
		return res, nil
	}
	// A quorum read, not the watch cache: a stale condition could make a
	// needed write look like a no-op.
	node, err := n.client.CoreV1().Nodes().Get(ctx, n.cfg.Name, metav1.GetOptions{})
	if err != nil {
		return res, fmt.Errorf("reading node %s%s: %w", n.cfg.Name, rbacHint(err, "get on nodes"), err)
	}
	if c := findCondition(node); c != nil && c.Status == corev1.ConditionTrue && !n.hasTaint(node) {
		n.warmedUp = true
	}
	// Both are tried even when one fails: a condition the daemon may not
	// write must not keep the node tainted, nor the other way round.
	var condErr, taintErr error
	if needCondition {
		var updated *corev1.Node
		updated, res.ConditionWritten, condErr = n.setCondition(ctx, node, want, st.Warm)
		if res.ConditionWritten {
			node = updated // with the resourceVersion the taint patch needs
		}
	}
	if needTaint {
		res.TaintRemoved, taintErr = n.removeTaint(ctx, node, st)
	}
	return res, errors.Join(condErr, taintErr)
}

// sameCondition compares what the condition says, not when.
func sameCondition(a, b corev1.NodeCondition) bool {
	return a.Type == b.Type && a.Status == b.Status && a.Reason == b.Reason && a.Message == b.Message
}

// findCondition returns the node's ConditionType condition, nil if none.
func findCondition(node *corev1.Node) *corev1.NodeCondition {
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == ConditionType {
			return &node.Status.Conditions[i]
		}
	}
	return nil
}

// hasTaint says whether node carries the startup taint (never, without a
// taint key).
func (n *Node) hasTaint(node *corev1.Node) bool {
	if n.cfg.TaintKey == "" {
		return false
	}
	for _, t := range node.Spec.Taints {
		if t.Key == n.cfg.TaintKey {
			return true
		}
	}
	return false
}

// setCondition patches want onto node's status unless it is there already,
// or the node has warmed up and want is not warm, and returns the node as
// patched. The strategic-merge patch holds this one condition: conditions
// merge by type, so the kubelet's conditions are left as they are (a patch
// or update of the whole list would overwrite those written since our
// read).
func (n *Node) setCondition(ctx context.Context, node *corev1.Node, want corev1.NodeCondition, warm bool) (*corev1.Node, bool, error) {
	now := metav1.NewTime(n.now())
	want.LastHeartbeatTime, want.LastTransitionTime = now, now
	if c := findCondition(node); c != nil {
		if sameCondition(*c, want) || (n.warmedUp && !warm) {
			n.known = c.DeepCopy()
			return node, false, nil
		}
		if c.Status == want.Status {
			want.LastTransitionTime = c.LastTransitionTime
		}
	}
	patch, err := json.Marshal(map[string]any{
		"status": map[string]any{"conditions": []corev1.NodeCondition{want}},
	})
	if err != nil {
		return nil, false, fmt.Errorf("encoding the %s condition of node %s: %w", ConditionType, n.cfg.Name, err)
	}
	updated, err := n.client.CoreV1().Nodes().Patch(ctx, n.cfg.Name, types.StrategicMergePatchType, patch,
		metav1.PatchOptions{FieldManager: n.cfg.FieldManager}, "status")
	if err != nil {
		return nil, false, fmt.Errorf("setting condition %s on node %s%s: %w",
			ConditionType, n.cfg.Name, rbacHint(err, "patch on nodes/status"), err)
	}
	n.known = &want
	n.warmedUp = n.warmedUp || warm
	return updated, true, nil
}

// removeTaint removes every taint with the configured key from the node,
// and no other, then records why on the node. The patch carries the
// resourceVersion it was computed from: taints are an atomic list, so the
// patch holds the whole remaining list, and the precondition makes a
// concurrent change of the node a conflict (409), retried on a fresh read,
// instead of a lost taint. (A JSON patch "test" op would fail with 422
// Invalid, which cannot be told from a real error, and a "remove" by index
// breaks the same way when the list moved.)
func (n *Node) removeTaint(ctx context.Context, node *corev1.Node, st State) (bool, error) {
	removed := false
	first := true
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !first {
			var err error
			node, err = n.client.CoreV1().Nodes().Get(ctx, n.cfg.Name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("reading node %s: %w", n.cfg.Name, err)
			}
		}
		first = false
		kept := make([]corev1.Taint, 0, len(node.Spec.Taints))
		for _, t := range node.Spec.Taints {
			if t.Key != n.cfg.TaintKey {
				kept = append(kept, t)
			}
		}
		if len(kept) == len(node.Spec.Taints) {
			return nil // a node without the taint is left alone
		}
		patch, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": node.ResourceVersion},
			"spec":     map[string]any{"taints": kept},
		})
		if err != nil {
			return fmt.Errorf("encoding the taints of node %s: %w", n.cfg.Name, err)
		}
		updated, err := n.client.CoreV1().Nodes().Patch(ctx, n.cfg.Name, types.MergePatchType, patch,
			metav1.PatchOptions{FieldManager: n.cfg.FieldManager})
		if err != nil {
			return err
		}
		node, removed = updated, true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("removing taint %s from node %s%s: %w",
			imageref.Shorten(n.cfg.TaintKey), n.cfg.Name, rbacHint(err, "patch on nodes"), err)
	}
	n.taintDone = true
	if removed && n.cfg.Recorder != nil {
		eventType := corev1.EventTypeNormal
		if !st.Warm {
			eventType = corev1.EventTypeWarning
		}
		n.cfg.Recorder.Eventf(node, eventType, ReasonTaintRemoved, "Removed startup taint %s: %s",
			imageref.Shorten(n.cfg.TaintKey), st.TaintReleaseReason())
	}
	return removed, nil
}

// rbacHint names the permission the daemon lacks when err is Forbidden:
// the way out is its ClusterRole.
func rbacHint(err error, permission string) string {
	if apierrors.IsForbidden(err) {
		return " (the daemon's ClusterRole must grant " + permission + ")"
	}
	return ""
}
