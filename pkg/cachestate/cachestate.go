// Package cachestate reads the per-(node, image) cache state from prefetch
// pods alone. It is the single place that interprets them: the daemon's
// metrics and the plugin's status both call it.
package cachestate

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// WardenInitName is the name of the init container of a prefetch pod,
// which installs the warden.
const WardenInitName = "warden"

// failedReasons are the kubelet's waiting reasons after which the container
// will not start without a change (a retry may still succeed later).
var failedReasons = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true,
	"RegistryUnavailable": true, "SignatureValidationFailed": true,
	"CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true,
	"CrashLoopBackOff": true,
}

// Node returns the node a prefetch pod is for: where it runs, else the node
// it was made for.
func Node(pod *corev1.Pod) string {
	if pod.Spec.NodeName != "" {
		return pod.Spec.NodeName
	}
	return pod.Annotations[wire.AnnotationNodeName]
}

// FromPod returns one status per image container of a prefetch pod.
func FromPod(pod *corev1.Pod) []wire.ImageStatus {
	statuses := make(map[string]corev1.ContainerStatus, len(pod.Status.ContainerStatuses))
	for _, cs := range pod.Status.ContainerStatuses {
		statuses[cs.Name] = cs
	}
	initFailed, initDone := initState(pod)
	out := make([]wire.ImageStatus, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		st := wire.ImageStatus{Node: Node(pod), Image: c.Image, Pod: pod.Name, State: wire.Pending}
		cs, seen := statuses[c.Name]
		switch {
		case initFailed != nil:
			st.State, st.Reason, st.Message = wire.Failed, initFailed.reason, initFailed.message
		case seen && cs.State.Terminated != nil:
			term := cs.State.Terminated
			if term.ExitCode == 0 {
				st.State, st.Digest, st.Since = wire.Cached, Digest(cs.ImageID), term.FinishedAt.Time
			} else {
				st.State, st.Reason = wire.Failed, term.Reason
				st.Message = fmt.Sprintf("exited with code %d: %s", term.ExitCode, term.Message)
			}
		case seen && cs.State.Waiting != nil && RateLimited(cs.State.Waiting):
			// The kubelet refused to start the pull under its own pull
			// budget: nothing is known about the image yet, and the kubelet
			// tries again after its back-off.
			st.State, st.Reason, st.Message = wire.Pending, cs.State.Waiting.Reason, cs.State.Waiting.Message
		case seen && cs.State.Waiting != nil && failedReasons[cs.State.Waiting.Reason]:
			st.State, st.Reason, st.Message = wire.Failed, cs.State.Waiting.Reason, cs.State.Waiting.Message
		case pod.Status.Phase == corev1.PodFailed:
			// A terminal pod never starts this container: the kubelet
			// rejected the pod at admission (OutOfpods, NodeAffinity, ...)
			// or evicted it, and only the pod's status says why.
			st.State = wire.Failed
			st.Reason, st.Message = podFailure(pod)
		case seen && cs.State.Running != nil:
			// The image is there; the warden has not exited yet.
			st.State, st.Digest = wire.Pulling, Digest(cs.ImageID)
		case pod.Spec.NodeName != "" && initDone:
			st.State = wire.Pulling
		}
		out = append(out, st)
	}
	return out
}

// rateLimitedMessage is what the kubelet says when a pull is over its
// registryPullQPS/registryBurst budget (ErrImagePull, then ImagePullBackOff
// with the same message).
const rateLimitedMessage = "pull QPS exceeded"

// RateLimited reports whether a waiting container only waits for the
// kubelet's pull budget: its pull was refused without being tried.
func RateLimited(w *corev1.ContainerStateWaiting) bool {
	return (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") && strings.Contains(w.Message, rateLimitedMessage)
}

type failure struct{ reason, message string }

// podFailure is why a pod in phase Failed stopped, never empty: a rejected
// pod reads e.g. "OutOfpods", "Pod was rejected: Node didn't have enough
// resource: pods".
func podFailure(pod *corev1.Pod) (reason, message string) {
	reason, message = pod.Status.Reason, pod.Status.Message
	if reason == "" {
		reason = string(corev1.PodFailed)
	}
	if message == "" {
		message = "the pod failed before this container ran"
	}
	return reason, message
}

// initState tells whether the warden init container failed (then no image
// can be fetched, and the user must see why) or is done.
func initState(pod *corev1.Pod) (*failure, bool) {
	if len(pod.Spec.InitContainers) == 0 {
		return nil, true
	}
	done := true
	for _, cs := range pod.Status.InitContainerStatuses {
		switch {
		case cs.State.Waiting != nil && failedReasons[cs.State.Waiting.Reason]:
			return &failure{cs.State.Waiting.Reason, "warden: " + cs.State.Waiting.Message}, false
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0:
			t := cs.State.Terminated
			return &failure{t.Reason, fmt.Sprintf("warden exited with code %d: %s", t.ExitCode, t.Message)}, false
		case cs.State.Terminated == nil:
			done = false
		}
	}
	if len(pod.Status.InitContainerStatuses) < len(pod.Spec.InitContainers) {
		done = false
	}
	return nil, done
}

// Digest extracts "sha256:..." from a container status imageID, which reads
// "docker.io/library/alpine@sha256:...", "sha256:..." or
// "docker-pullable://...@sha256:...".
func Digest(imageID string) string {
	if i := strings.LastIndex(imageID, "@"); i >= 0 {
		return imageID[i+1:]
	}
	if strings.HasPrefix(imageID, "sha256:") {
		return imageID
	}
	return ""
}

// Finished reports whether every image of a prefetch pod is cached or
// failed. A pod with a failed image stays Pending with its sandbox up, so the
// pod's phase cannot tell; a pod in phase Failed is always finished.
func Finished(pod *corev1.Pod) bool {
	for _, st := range FromPod(pod) {
		if st.State != wire.Cached && st.State != wire.Failed {
			return false
		}
	}
	return true
}

// Throttled reports whether a prefetch pod is stuck on the kubelet's pull
// budget: some image's pull was refused under registryPullQPS and no other
// image is still on its way, so the pod would only wait out the kubelet's
// image back-off. The daemon replaces such a pod at once, paced.
func Throttled(pod *corev1.Pod) bool {
	if pod.Status.Phase == corev1.PodFailed {
		return false
	}
	waiting := make(map[string]*corev1.ContainerStateWaiting, len(pod.Status.ContainerStatuses))
	for _, cs := range pod.Status.ContainerStatuses {
		waiting[cs.Name] = cs.State.Waiting
	}
	throttled := false
	for _, c := range pod.Spec.Containers {
		if w := waiting[c.Name]; w != nil && RateLimited(w) {
			throttled = true
		}
	}
	if !throttled {
		return false
	}
	for _, st := range FromPod(pod) {
		if st.State == wire.Pulling || (st.State == wire.Pending && st.Reason == "") {
			return false
		}
	}
	return true
}

// Summarize returns one status per (node, image) over many prefetch pods,
// sorted by node then image. Where several pods hold an image on one node,
// one speaks for it, chosen in this order:
//
//  1. a pod that is not being deleted, before one that is: a resync deletes
//     the pod it replaces, and the fresh pull is the current truth;
//  2. among those not being deleted, one where the image is Cached, before
//     one where it is not: the image is on the node, and a newer pod that
//     holds it too (one that merges small pods, or a duplicate) only adds a
//     record, so the image never reads less than cached while it is; when
//     the image failed in the newer pod (a resync's fresh pull), Reason and
//     Message say so;
//  3. the newest pod, then the first by name.
func Summarize(pods []*corev1.Pod) []wire.ImageStatus {
	sorted := append([]*corev1.Pod(nil), pods...)
	sort.SliceStable(sorted, func(i, j int) bool { return newer(sorted[i], sorted[j]) })
	type key struct{ node, image string }
	at := map[key]int{} // index in out of the status that speaks for key
	var out []wire.ImageStatus
	for _, p := range sorted {
		live := p.DeletionTimestamp == nil
		for _, st := range FromPod(p) {
			k := key{st.Node, st.Image}
			i, seen := at[k]
			switch {
			case !seen:
				at[k] = len(out)
				out = append(out, st)
			case live && st.State == wire.Cached && out[i].State != wire.Cached:
				// Pods come live first, so out[i] is from a live pod
				// too, a newer one where the image is not cached. When
				// its pull failed (a resync's fresh pull, a merge), the
				// image still reads cached, and the failure is said.
				if out[i].State == wire.Failed {
					st.Reason = out[i].Reason
					st.Message = fmt.Sprintf("pulling it again in pod %s failed: %s", out[i].Pod, out[i].Message)
				}
				out[i] = st
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node != out[j].Node {
			return out[i].Node < out[j].Node
		}
		return out[i].Image < out[j].Image
	})
	return out
}

// newer orders pods: live before deleting, then newest first, then by name.
func newer(a, b *corev1.Pod) bool {
	if (a.DeletionTimestamp == nil) != (b.DeletionTimestamp == nil) {
		return a.DeletionTimestamp == nil
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return b.CreationTimestamp.Before(&a.CreationTimestamp)
	}
	return a.Name < b.Name
}

// Stale reports whether st shows its image on the node under another
// digest than current, the digest its tag points to now ("" when not
// known: not stale). A node that holds it under no known digest, or a
// reference pinned by digest (never pulled again), is not stale. The node
// daemon's image_cache_stale_images and the plugin's STALE count by it.
func Stale(st wire.ImageStatus, current string) bool {
	return current != "" && st.Digest != "" && st.Digest != current &&
		(st.State == wire.Cached || st.State == wire.Pulling) && imageref.Pinned(st.Image) == ""
}
