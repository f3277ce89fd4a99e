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
}

// A Source finds wanted images. Every source passes the same conformance
// test (conformance_test.go).
type Source interface {
	// Name is the source's short name, used in logs and metric labels.
	Name() string
	// Start begins watching in the background until ctx ends; onChange is
	// called, cheaply and possibly often, whenever Wanted may have changed.
	Start(ctx context.Context, onChange func())
	// HasSynced reports whether the source has seen its initial state, so
	// that the daemon never deletes pods on the strength of a partial view.
	HasSynced() bool
	// Wanted returns the images the source wants now.
	Wanted() []Want
}

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
