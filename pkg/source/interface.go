package source

import (
	"context"
	"sort"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
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
	Health() wire.Health
}

// maxSkippedSample is how many skipped objects a Health names.
const maxSkippedSample = 5

// Images groups wants by image: each image with the sorted, distinct origins
// that want it. The result's images are sorted.
func Images(wants []Want) []wire.Image {
	byImage := map[string]map[string]struct{}{}
	for _, w := range wants {
		if byImage[w.Image] == nil {
			byImage[w.Image] = map[string]struct{}{}
		}
		byImage[w.Image][w.Origin] = struct{}{}
	}
	out := make([]wire.Image, 0, len(byImage))
	for img, origins := range byImage {
		o := make([]string, 0, len(origins))
		for origin := range origins {
			o = append(o, origin)
		}
		sort.Strings(o)
		out = append(out, wire.Image{Image: img, Origins: o})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Image < out[j].Image })
	return out
}
