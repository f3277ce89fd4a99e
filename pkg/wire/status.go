package wire

import "time"

// State is where an image stands on a node.
type State string

// The states, from the kubelet's container statuses.
const (
	// Cached: the container ran (the warden exited 0), so the image is on the node.
	Cached State = "cached"
	// Pulling: the pod is on the node and the kubelet is getting the image.
	Pulling State = "pulling"
	// Failed: the kubelet could not pull or start it; Reason and Message say why.
	Failed State = "failed"
	// Pending: the pod is not on the node yet, or its warden is not installed yet.
	Pending State = "pending"
)

// ImageStatus is one image's state on one node.
type ImageStatus struct {
	Node    string    `json:"node"`
	Image   string    `json:"image"`
	State   State     `json:"state"`
	Digest  string    `json:"digest,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Message string    `json:"message,omitempty"`
	Pod     string    `json:"pod"`
	Since   time.Time `json:"since,omitempty"`
}
