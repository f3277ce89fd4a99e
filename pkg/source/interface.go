package source

import (
	"context"
	"sort"
)

// Want is one image wanted by one object.
type Want struct {
	// Image is the normalised reference (see pkg/imageref).
	Image string
	// Origin names what wants it, as a user reads it: "ConfigMap ns/name",
	// "WorkflowTemplate ns/name", "flag --image".
	Origin string
	// Namespace is the namespace of the object that wants it, the tenant
	// whose share of --max-images it takes ("" for cluster-scoped objects).
	Namespace string
	// Static marks the --image flag's images, which are served first.
	Static bool
}

// A Source finds wanted images. Every source passes the same conformance
// test (conformance_test.go).
type Source interface {
	// Name is the source's short name, used in logs and metric labels.
	Name() string
	// Run watches until ctx ends, and returns only when everything it
	// started has stopped; onChange is called, cheaply and possibly often,
	// whenever Wanted may have changed.
	Run(ctx context.Context, onChange func())
	// HasSynced reports whether the source has seen its initial state, so
	// that the daemon never deletes pods on the strength of a partial view.
	HasSynced() bool
	// Wanted returns the images the source wants now.
	Wanted() []Want
	// Health says whether the source can read what it should.
	Health() Health
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

// maxSkippedSample is how many skipped objects a Health names.
const maxSkippedSample = 5

// OK reports whether the source does its job: synced, and nothing keeps it
// from reading. A missing CRD is OK: there is nothing to read.
func (h Health) OK() bool { return h.Synced && h.Problem == "" }

// Images groups wants by image: each image with the sorted, distinct origins
// that want it. The result's images are sorted.
func Images(wants []Want) []Image {
	byImage := map[string]map[string]struct{}{}
	for _, w := range wants {
		if byImage[w.Image] == nil {
			byImage[w.Image] = map[string]struct{}{}
		}
		byImage[w.Image][w.Origin] = struct{}{}
	}
	out := make([]Image, 0, len(byImage))
	for img, origins := range byImage {
		o := make([]string, 0, len(origins))
		for origin := range origins {
			o = append(o, origin)
		}
		sort.Strings(o)
		out = append(out, Image{Image: img, Origins: o})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Image < out[j].Image })
	return out
}

// Image is a wanted image with everything that wants it.
type Image struct {
	Image   string   `json:"image"`
	Origins []string `json:"origins"`
}

// HealthAnnotation is the annotation on each daemon pod that holds its
// HealthReport as JSON: `kubectl imagecache status` reads it.
const HealthAnnotation = "image-cache-daemon/health"

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

// Warmth is whether a node has every wanted image, as its Node condition
// says, and how long it took to get there.
type Warmth struct {
	Warm    bool   `json:"warm"`
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
	// Took is the warm-up time, when this daemon saw the node warm up.
	Took string `json:"took,omitempty"`
}
