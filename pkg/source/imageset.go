package source

import (
	"sort"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
)

// imageSet is the normalise-and-dedupe step every parser ends with, so that
// "alpine" from a ConfigMap and "docker.io/library/alpine:latest" from a
// workflow template are one wanted image.
type imageSet map[string]struct{}

// add normalises ref and keeps it. The error is imageref's, which names ref
// and says what is wrong with it; the caller adds where ref was found.
func (s imageSet) add(ref string) error {
	n, err := imageref.Normalize(ref)
	if err != nil {
		return err
	}
	s[n] = struct{}{}
	return nil
}

// sorted returns the images in a stable order (nil if there are none), so
// that a re-parse of an unchanged object compares equal to the last one.
func (s imageSet) sorted() []string {
	if len(s) == 0 {
		return nil
	}
	out := make([]string, 0, len(s))
	for img := range s {
		out = append(out, img)
	}
	sort.Strings(out)
	return out
}
