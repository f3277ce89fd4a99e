// Package warm decides whether this node is warm (every wanted image cached
// on it) and writes that onto the node: a condition on the Node's status, and
// the removal of the startup taint that kept workloads off the node while it
// warmed up. Evaluate is the pure decision; Node carries it out.
package warm

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// ConditionType is the Node condition the daemon keeps on its own node: True
// when every wanted image is cached there. A NodeReadinessRule
// (readiness.node.x-k8s.io) watches it. It is in the project's own domain so
// that it can never collide with the kubelet's conditions; the API server
// validates no node condition type (ValidateNode and ValidateNodeUpdate in
// k8s.io/kubernetes pkg/apis/core/validation check none), and prefixed types
// such as network.kubernetes.io/CNIReady are the node-readiness-controller's
// own examples.
const ConditionType corev1.NodeConditionType = "imagecache.dcherman.github.io/Warm"

// DefaultTaintKey is the suggested startup taint (--startup-taint): a node
// registered with it (kubelet --register-with-taints, Karpenter
// startupTaints) takes no workload until the daemon removes it. It is not in
// the readiness.k8s.io domain on purpose: that domain belongs to the
// node-readiness-controller, which re-adds its taints to a node until its
// rule's conditions hold, so it would undo the daemon's removal after a
// timeout.
const DefaultTaintKey = "imagecache.dcherman.github.io/warming"

// DefaultTaintEffect is the effect DefaultTaintKey is meant to be registered
// with: NoSchedule keeps new pods off without evicting any, and leaves the
// prefetch pods alone, which are bound to the node by name past the
// scheduler (the kubelet itself rejects a pod only for a NoExecute taint).
const DefaultTaintEffect = corev1.TaintEffectNoSchedule

// DefaultTimeout is the suggested --warm-timeout: below cluster-autoscaler's
// default --max-node-startup-time (15m), during which it counts a node with
// a startup taint as starting, so that a slow pull never makes the
// autoscaler see a node that failed to start.
const DefaultTimeout = 10 * time.Minute

// Reasons of the condition: CamelCase, as condition reasons are.
const (
	// ReasonWarm: every wanted image is cached (status True).
	ReasonWarm = "Warm"
	// ReasonNothingWanted: no image is wanted, so the node is warm (status True).
	ReasonNothingWanted = "NothingWanted"
	// ReasonWarming: images are still being pulled, within the warm-up
	// timeout (status False; the taint stays).
	ReasonWarming = "Warming"
	// ReasonImagesFailed: at least one image failed to pull (status False;
	// the taint is released, since a failed pull may never succeed).
	ReasonImagesFailed = "ImagesFailed"
	// ReasonTimedOut: the warm-up timeout passed before every image was
	// cached (status False; the taint is released).
	ReasonTimedOut = "TimedOut"
)

// ReasonTaintRemoved is the reason of the Event recorded on the Node when the
// daemon removes the startup taint; its message says why.
const ReasonTaintRemoved = "StartupTaintRemoved"

// maxNamed is how many images a message names; with each name cut to
// imageref.MaxQuoted bytes, messages stay well under the 1 KiB an Event
// message may hold.
const maxNamed = 3

// maxReason is the longest failure reason a message quotes: the kubelet's
// reasons are single CamelCase words (ErrImagePull, ImagePullBackOff); a
// longer one is left out rather than let it crowd out the image names.
const maxReason = 40

// State is this node's warm state, as Evaluate decides it.
type State struct {
	// Warm: every wanted image is cached (or none is wanted).
	Warm bool
	// Status is the condition's status: True when Warm, else False.
	Status corev1.ConditionStatus
	// Reason is one of the Reason constants; Message says it for people,
	// with the counts and at most a few images, each cut short. Message
	// changes with every count, so it goes where a change costs little:
	// the daemon's own report and the Event on the node when the taint
	// goes; the Node condition says Condition, which carries no count.
	Reason, Message string
	// Cached of Total wanted images are on the node.
	Cached, Total int
	// Failed are the wanted images whose pull failed, sorted.
	Failed []string
	// TimedOut: the warm-up timeout passed and the node is not warm (even
	// when Reason is ImagesFailed, which takes precedence).
	TimedOut bool
	// ReleaseTaint: the startup taint must go, because the node is warm,
	// images failed, or the timeout passed.
	ReleaseTaint bool
	// Elapsed is how long the warm-up has run (now - started, never negative).
	Elapsed time.Duration
	// Timeout is the warm-up timeout Evaluate was given (0: none).
	Timeout time.Duration
}

// Input is what Evaluate decides from.
type Input struct {
	// Now is the time of the decision.
	Now time.Time
	// Started is when the node's warm-up began. The Node's
	// creationTimestamp is the honest clock: the startup taint is there
	// from the node's registration, not from the daemon's start, and a
	// restarted daemon must not restart the timeout. Zero: unknown, so
	// the warm-up never times out.
	Started time.Time
	// Timeout is the warm-up timeout (--warm-timeout); 0: none.
	Timeout time.Duration
	// Wanted are the images this node should cache (normalised; a
	// duplicate counts once): the wanted images within its limits, since
	// those left out will never be cached here.
	Wanted []string
	// Partial: not every source of wanted images has synced, so Wanted
	// may lack images. The node is then never warm (which would release
	// the taint on a guess); failures and the timeout still count.
	Partial bool
	// States are the statuses of this node's images (cachestate.Summarize
	// over its prefetch pods; where an image has several, the first
	// counts). A wanted image without one is not cached yet.
	States []wire.ImageStatus
}

// Evaluate decides the warm state of one node. Time and memory are linear in
// len(in.Wanted) + len(in.States).
func Evaluate(in Input) State {
	st := State{Timeout: in.Timeout}
	if !in.Started.IsZero() {
		st.Elapsed = max(in.Now.Sub(in.Started), 0)
	}

	byImage := make(map[string]wire.ImageStatus, len(in.States))
	for _, s := range in.States {
		if _, seen := byImage[s.Image]; !seen {
			byImage[s.Image] = s
		}
	}

	images := dedupe(in.Wanted)
	st.Total = len(images)
	var missing []string // not cached and not failed
	for _, img := range images {
		switch byImage[img].State {
		case wire.Cached:
			st.Cached++
		case wire.Failed:
			st.Failed = append(st.Failed, img)
		default:
			missing = append(missing, img)
		}
	}

	switch {
	case in.Partial:
	case st.Total == 0:
		st.Warm, st.Reason = true, ReasonNothingWanted
		st.Message = "no image is wanted on this node"
	case st.Cached == st.Total:
		st.Warm, st.Reason = true, ReasonWarm
		st.Message = fmt.Sprintf("all %d wanted images are cached", st.Total)
	}
	if st.Warm {
		st.Status, st.ReleaseTaint = corev1.ConditionTrue, true
		return st
	}

	st.Status = corev1.ConditionFalse
	st.TimedOut = in.Timeout > 0 && !in.Started.IsZero() && st.Elapsed >= in.Timeout
	switch {
	case len(st.Failed) > 0:
		st.Reason, st.ReleaseTaint = ReasonImagesFailed, true
		named := firstNames(st.Failed)
		for i, img := range st.Failed[:len(named)] {
			if r := byImage[img].Reason; r != "" && len(r) <= maxReason {
				named[i] += " (" + r + ")"
			}
		}
		st.Message = fmt.Sprintf("%d/%d wanted images cached; %d failed: %s", st.Cached, st.Total,
			len(st.Failed), list(named, len(st.Failed)))
		if len(missing) > 0 {
			st.Message += fmt.Sprintf("; %d more not cached yet", len(missing))
		}
		if in.Partial {
			st.Message += "; " + unsynced
		}
	case st.TimedOut:
		st.Reason, st.ReleaseTaint = ReasonTimedOut, true
		st.Message = fmt.Sprintf("%d/%d wanted images cached when the %s warm-up timeout passed", st.Cached, st.Total, in.Timeout)
		if len(missing) > 0 {
			st.Message += "; missing: " + list(firstNames(missing), len(missing))
		}
		if in.Partial {
			st.Message += "; " + unsynced
		}
	default:
		// No elapsed time in the message: it would change on every sync
		// and make every sync a write.
		st.Reason = ReasonWarming
		waiting := list(firstNames(missing), len(missing))
		if in.Partial {
			waiting = strings.TrimPrefix(waiting+", and every source of wanted images to sync", ", and ")
		}
		st.Message = fmt.Sprintf("warming: %d/%d wanted images cached; waiting for %s", st.Cached, st.Total, waiting)
	}
	return st
}

// unsynced says why a partial view cannot make the node warm.
const unsynced = "not every source of wanted images has synced (kubectl imagecache status says why)"

// statusLister is where the condition sends people for the images and counts
// it leaves out.
const statusLister = " (kubectl imagecache status lists the images)"

// conditionMessages are what the Node condition says for each reason: a
// sentence with no count and no image name, so that the condition changes
// only when the node's warm state does. A condition that counted images
// made each tenant's edit of an image list a Node write on every node (and
// an update to everything that watches Nodes). The counts and names are in
// State.Message.
var conditionMessages = map[string]string{
	ReasonWarm: "the node warmed up: every wanted image was cached; images wanted since are pulled without changing this condition" +
		statusLister,
	ReasonNothingWanted: "the node warmed up: no image was wanted; images wanted since are pulled without changing this condition" +
		statusLister,
	ReasonWarming: "wanted images are still being pulled, or a source of them has not synced; a startup taint stays until they are cached, one fails, or the warm-up timeout passes" +
		statusLister,
	ReasonImagesFailed: "wanted images failed to pull, which a retry may never fix, so the node is not warm and a startup taint is released" +
		statusLister,
	ReasonTimedOut: "the warm-up timeout passed before every wanted image was cached, so the node is not warm and a startup taint is released" +
		statusLister,
}

// Condition is the Node condition that says s (without its times): its
// status and reason, and a message that depends on the reason alone.
func (s State) Condition() corev1.NodeCondition {
	return corev1.NodeCondition{Type: ConditionType, Status: s.Status, Reason: s.Reason, Message: conditionMessages[s.Reason]}
}

// RecheckAfter is when the state changes by time alone: the time left until
// the warm-up times out, while the node warms with a timeout; else 0. Nothing
// but the clock turns Warming into TimedOut, so the caller must sync again
// by then, whatever the prefetch pods do.
func (s State) RecheckAfter() time.Duration {
	if s.Reason != ReasonWarming || s.Timeout <= 0 || s.Elapsed >= s.Timeout {
		return 0
	}
	return s.Timeout - s.Elapsed
}

// TaintReleaseReason says, for the Event on the Node, why the startup taint
// goes: the node is warm, images failed, or the timeout passed.
func (s State) TaintReleaseReason() string {
	switch s.Reason {
	case ReasonWarm, ReasonNothingWanted:
		return "the node is warm: " + s.Message
	case ReasonImagesFailed:
		return "images failed to pull, which a retry may never fix: " + s.Message
	case ReasonTimedOut:
		return fmt.Sprintf("timed out after %s: %s", s.Timeout, s.Message)
	}
	return s.Reason + ": " + s.Message
}

// dedupe returns the distinct images, sorted, so that messages name the
// same images from one sync to the next.
func dedupe(images []string) []string {
	seen := make(map[string]bool, len(images))
	out := make([]string, 0, len(images))
	for _, img := range images {
		if !seen[img] {
			seen[img] = true
			out = append(out, img)
		}
	}
	sort.Strings(out)
	return out
}

// firstNames returns the first maxNamed of images, each cut short: what a
// message names.
func firstNames(images []string) []string {
	named := make([]string, min(len(images), maxNamed))
	for i := range named {
		named[i] = imageref.Shorten(images[i])
	}
	return named
}

// list joins named and says how many of total it leaves out:
// "a, b, c and 4 more".
func list(named []string, total int) string {
	s := strings.Join(named, ", ")
	if total > len(named) {
		s += fmt.Sprintf(" and %d more", total-len(named))
	}
	return s
}
