// Package wanted is the wanted set: what the planner decides and every node
// daemon caches. The planner reads the sources once for the cluster, ranks
// their images as source.Select does (the --image flag's first, then the
// namespaces round-robin) within --max-images, and publishes the result in
// one ConfigMap of the install namespace; a node daemon reads that ConfigMap
// only, so what it reads and may read does not grow with the tenants'
// objects, and its credentials read none of them.
package wanted

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/source"
)

const (
	// ConfigMap is the name of the ConfigMap, in the install namespace,
	// that holds the published set.
	ConfigMap = "image-cache-daemon-wanted"
	// Key is its binaryData key: the set as gzip-compressed JSON.
	Key = "wanted.json.gz"
	// MaxBytes is the most the compressed set takes, well within the 1 MiB
	// an object may hold. A set that would take more is published cut: the
	// images ranked last are left out, and counted as over the limit.
	MaxBytes = 768 << 10
	// maxJSONBytes bounds what decoding a set may expand to.
	maxJSONBytes = 16 << 20
	// maxOrigins is how many of an image's origins the set names; the
	// others are counted.
	maxOrigins = 3
	// overSample is how many of the images left out the set names.
	overSample = 3
	// version is the format's version.
	version = 1
)

// Set is the published wanted set.
type Set struct {
	V int `json:"v"`
	// Partial: a source had not read its objects yet when the set was
	// made (the planner waits for them a while, then publishes what it
	// has); a node caches it but deletes nothing on its strength.
	Partial bool `json:"partial,omitempty"`
	// Images are the images to cache, in rank order (the first are cached
	// first where a node's own limits cut the list).
	Images []Image `json:"images"`
	// Over counts the wanted images left out by --max-images (and by
	// MaxBytes); OverSample names the first few, with what wants them.
	Over       int            `json:"over,omitempty"`
	OverSample []source.Image `json:"overSample,omitempty"`
	// Sources is the health of the planner's sources.
	Sources []source.Health `json:"sources"`
}

// Image is one wanted image and what wants it.
type Image struct {
	Image string `json:"image"`
	// Origins name at most maxOrigins of what wants it; MoreOrigins
	// counts the others.
	Origins     []string `json:"origins"`
	MoreOrigins int      `json:"moreOrigins,omitempty"`
	// Digest is the manifest digest the image's tag points to, as the
	// planner read it from the registry (for a reference pinned by digest,
	// that digest, never checked); Since is when the planner first read it
	// (Unix seconds). A node pulls a tag again only when what it holds
	// differs from Digest.
	Digest string `json:"digest,omitempty"`
	Since  int64  `json:"since,omitempty"`
	// Unchecked says why the image has no Digest (the registry refused or
	// could not be reached, or the check has not run yet): nodes then pull
	// it again every --resync-period, as without a planner.
	Unchecked string `json:"unchecked,omitempty"`
}

// maxUnchecked bounds an Unchecked reason.
const maxUnchecked = 256

// LeaseDuration and RenewEvery are the timings of the planner's Lease
// (and of the node daemons' reporter Lease): a leader renews it every
// RenewEvery, and a standby takes it over LeaseDuration after the last
// renewal (kube-controller-manager's timings: about 15 s).
const (
	LeaseDuration = 15 * time.Second
	RenewDeadline = 10 * time.Second
	RenewEvery    = 2 * time.Second
)

// NotChecked is the Unchecked reason of a tag the planner has not checked
// yet (it started, or the tag is new to it).
const NotChecked = "not checked yet"

// Build ranks wants as source.Select does within limit and returns the set
// to publish.
func Build(wants []source.Want, limit int, health []source.Health) *Set {
	keep, over := source.Select(wants, limit)
	origins := make(map[string][]string, len(keep))
	for _, img := range keep {
		origins[img] = nil
	}
	for _, w := range wants {
		if o, ok := origins[w.Image]; ok && !slices.Contains(o, w.Origin) {
			origins[w.Image] = append(o, w.Origin)
		}
	}
	s := &Set{V: version, Images: make([]Image, 0, len(keep)), Over: len(over), Sources: health}
	for _, img := range keep {
		o := origins[img]
		slices.Sort(o)
		s.Images = append(s.Images, shortImage(img, o))
	}
	for _, o := range over[:min(len(over), overSample)] {
		im := shortImage(o.Image, o.Origins)
		s.OverSample = append(s.OverSample, source.Image{Image: im.Image, Origins: im.Origins})
	}
	return s
}

// shortImage is img with at most maxOrigins origins, each cut short.
func shortImage(img string, origins []string) Image {
	im := Image{Image: img, MoreOrigins: max(0, len(origins)-maxOrigins)}
	for _, o := range origins[:min(len(origins), maxOrigins)] {
		im.Origins = append(im.Origins, imageref.Shorten(o))
	}
	return im
}

// Encode returns s as the ConfigMap holds it, within MaxBytes: when the
// whole set does not fit, the images ranked last are left out (counted in
// Over), as few as need be.
func Encode(s *Set) ([]byte, error) {
	b, err := encode(s)
	if err != nil || len(b) <= MaxBytes {
		return b, err
	}
	// Binary search for the most images that fit.
	lo, hi := 0, len(s.Images) // lo fits (an empty set does), hi does not
	var best []byte
	for lo < hi-1 {
		mid := (lo + hi) / 2
		c, err := encode(cut(s, mid))
		if err != nil {
			return nil, err
		}
		if len(c) <= MaxBytes {
			lo, best = mid, c
		} else {
			hi = mid
		}
	}
	if best == nil {
		return encode(cut(s, lo))
	}
	return best, nil
}

// cut is s with its first n images only, the rest counted as over.
func cut(s *Set, n int) *Set {
	c := *s
	c.Images = s.Images[:n]
	c.Over += len(s.Images) - n
	return &c
}

func encode(s *Set) ([]byte, error) {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if err := json.NewEncoder(zw).Encode(s); err != nil {
		return nil, fmt.Errorf("encoding the wanted set: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing the wanted set: %w", err)
	}
	return b.Bytes(), nil
}

// Decode reads a published set, strictly: a set that does not decode, or
// names an image that is not a normalised reference, is refused whole (a
// node then keeps the last good one).
func Decode(b []byte) (*Set, error) {
	if len(b) > MaxBytes {
		return nil, fmt.Errorf("the wanted set is %d bytes, more than %d", len(b), MaxBytes)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("the wanted set is not gzip: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, maxJSONBytes+1))
	if err != nil {
		return nil, fmt.Errorf("decompressing the wanted set: %w", err)
	}
	if len(raw) > maxJSONBytes {
		return nil, fmt.Errorf("the wanted set expands past %d bytes", maxJSONBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var s Set
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("the wanted set does not decode: %w", err)
	}
	if dec.More() {
		return nil, errors.New("the wanted set holds more than one value")
	}
	if s.V != version {
		return nil, fmt.Errorf("the wanted set is of version %d; this daemon reads version %d", s.V, version)
	}
	seen := make(map[string]bool, len(s.Images))
	for _, im := range s.Images {
		if n, err := imageref.Normalize(im.Image); err != nil || n != im.Image {
			return nil, fmt.Errorf("the wanted set names %s, which is not a normalised image reference", imageref.Quote(im.Image))
		}
		if seen[im.Image] {
			return nil, fmt.Errorf("the wanted set names %s twice", imageref.Quote(im.Image))
		}
		seen[im.Image] = true
		if err := im.validDigest(); err != nil {
			return nil, fmt.Errorf("the wanted set's %s: %w", imageref.Quote(im.Image), err)
		}
	}
	return &s, nil
}

// validDigest checks the image's digest fields: a digest is sha256 of the
// right length, pinned references carry their own, a reason is printable
// and short, and an image has a digest or a reason, not both.
func (im Image) validDigest() error {
	switch {
	case im.Digest != "" && !imageref.IsDigest(im.Digest):
		return fmt.Errorf("digest %s is not sha256:<64 hex digits>", imageref.Quote(im.Digest))
	case im.Digest != "" && im.Unchecked != "":
		return errors.New("has both a digest and a reason for having none")
	case im.Since < 0:
		return fmt.Errorf("since %d is before 1970", im.Since)
	case len(im.Unchecked) > maxUnchecked || imageref.Printable(im.Unchecked) != im.Unchecked:
		return errors.New("the reason it has no digest is too long or not printable")
	}
	if pin := imageref.Pinned(im.Image); pin != "" && im.Digest != pin {
		return fmt.Errorf("is pinned to %s but the set gives digest %s", pin, imageref.Quote(im.Digest))
	}
	return nil
}

// Current is the digest the set gives for img, and since when ("" when the
// set has none: the image is unchecked, or not in the set). It searches the
// set: Index is for many lookups.
func (s *Set) Current(img string) (digest string, since time.Time) {
	return s.current(slices.IndexFunc(s.Images, func(im Image) bool { return im.Image == img }))
}

// Pending reports whether the set names img without a digest or a reason
// why there is none yet: its check has not run (or the set was written by
// a planner that checks no tags). A node then neither compares digests nor
// pulls it again for its age: a planner that just started (an upgrade)
// must not make every node pull everything again before its first checks.
func (s *Set) Pending(img string) bool {
	return s.pending(slices.IndexFunc(s.Images, func(im Image) bool { return im.Image == img }))
}

func (s *Set) pending(i int) bool {
	return i >= 0 && s.Images[i].Digest == "" && (s.Images[i].Unchecked == "" || s.Images[i].Unchecked == NotChecked)
}

// Index is the position of each image in s.Images.
func (s *Set) Index() map[string]int {
	idx := make(map[string]int, len(s.Images))
	for i, im := range s.Images {
		idx[im.Image] = i
	}
	return idx
}

// current is the digest of the image at i (-1: none) and since when.
func (s *Set) current(i int) (string, time.Time) {
	if i < 0 || s.Images[i].Digest == "" {
		return "", time.Time{}
	}
	return s.Images[i].Digest, time.Unix(s.Images[i].Since, 0)
}

// Wants are the set's images as a node's source.Select takes them: in rank
// order, all served first (Static), so a node takes the first as far as its
// own limits go.
func (s *Set) Wants() []source.Want {
	var out []source.Want
	for _, im := range s.Images {
		origins := im.Origins
		if len(origins) == 0 {
			origins = []string{"planner"}
		}
		for _, o := range origins {
			out = append(out, source.Want{Image: im.Image, Origin: o, Static: true})
		}
	}
	return out
}
