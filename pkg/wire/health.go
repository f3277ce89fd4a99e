package wire

// HealthReport is what a daemon publishes about its sources.
type HealthReport struct {
	Sources []Health `json:"sources"`
	// OverLimit is the number of wanted images left out by the daemon's
	// limits (--max-images, --max-prefetch-pods); OverLimitSample names a
	// few of them with what wants them.
	OverLimit       int     `json:"overLimit,omitempty"`
	OverLimitSample []Image `json:"overLimitSample,omitempty"`
	// Warm is the node's warm condition as the daemon last wrote it.
	Warm *Warmth `json:"warm,omitempty"`
}

// Health is where a source stands, as status and readiness show it.
type Health struct {
	// Source is the source's Name.
	Source string `json:"source"`
	// Synced: the source has read its initial state.
	Synced bool `json:"synced"`
	// Missing: the resource is not served (an Argo CRD is not installed);
	// the source waits for it. Not a fault: a cluster without Argo has none.
	Missing bool `json:"missing,omitempty"`
	// Problem says what keeps the source from reading (a forbidden or
	// failing LIST or WATCH), empty when nothing does.
	Problem string `json:"problem,omitempty"`
	// Objects is the number of objects read; Skipped of those, the ones
	// with problems (reported on each object as an Event).
	Objects int `json:"objects,omitempty"`
	Skipped int `json:"skipped,omitempty"`
	// SkippedSample names the first few of them, "Kind namespace/name".
	SkippedSample []string `json:"skippedSample,omitempty"`
	// Unread counts the entries of objects that were not read: those past
	// --max-images in one object, which could never all be cached.
	Unread int `json:"unread,omitempty"`
}

// OK reports whether the source does its job: synced, and nothing keeps it
// from reading. A missing CRD is OK: there is nothing to read.
func (h Health) OK() bool { return h.Synced && h.Problem == "" }

// Image is a wanted image with everything that wants it.
type Image struct {
	Image   string   `json:"image"`
	Origins []string `json:"origins"`
}

// Warmth is whether a node has every wanted image, as its Node condition
// says, and how long it took to get there.
type Warmth struct {
	Warm    bool   `json:"warm"`
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
	// Took is the warm-up time, when this daemon saw the node warm up.
	Took string `json:"took,omitempty"`
}
