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
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

const (
	// ConfigMap is the name of the ConfigMap, in the install namespace,
	// that holds the published set.
	ConfigMap = "image-cache-daemon-wanted"
	// Key is its binaryData key: the set as gzip-compressed JSON.
	Key = "wanted.json.gz"
	// MaxBytes is the most one of the set's ConfigMaps holds, compressed,
	// well within the 1 MiB an object may hold.
	MaxBytes = 768 << 10
	// MaxParts is how many ConfigMaps a set takes besides its head, at
	// most: PartName(1) to PartName(MaxParts). A set that would take more
	// is published cut: the images ranked last are left out, and counted
	// as over the limit.
	MaxParts = 15
	// maxJSONBytes bounds what decoding a set, all its parts together, may
	// expand to; partJSONBytes what a planner puts in one ConfigMap, so
	// that a head and MaxParts parts are within it.
	maxJSONBytes  = 16 << 20
	partJSONBytes = maxJSONBytes / (MaxParts + 1)
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
	Over       int          `json:"over,omitempty"`
	OverSample []wire.Image `json:"overSample,omitempty"`
	// Sources is the health of the planner's sources.
	Sources []wire.Health `json:"sources"`
	// Parts name the ConfigMaps that hold the images after these, in
	// order (PartName(1)...), when the set does not fit one.
	Parts []Part `json:"parts,omitempty"`
}

// Part is one of a set's other ConfigMaps: the SHA-256 of its data (hex),
// and how many images it holds.
type Part struct {
	SHA256 string `json:"sha256"`
	Images int    `json:"images"`
}

// part is what a part's ConfigMap holds.
type part struct {
	V      int     `json:"v"`
	Images []Image `json:"images"`
}

// PartName is the name of the set's i-th part (from 1).
func PartName(i int) string { return fmt.Sprintf("%s-%d", ConfigMap, i) }

// Names are the names of every ConfigMap a set may take, its head first.
func Names() []string {
	names := []string{ConfigMap}
	for i := 1; i <= MaxParts; i++ {
		names = append(names, PartName(i))
	}
	return names
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

// PlannerStale is how long after the planner's leader last renewed its
// Lease the planner counts as down (status says so, node daemons are not
// ready): three times the Lease's duration, well past a standby's takeover.
const PlannerStale = 3 * LeaseDuration

// PlannerDown reads the planner's Lease (nil: there is none): whether no
// planner leads, as of now, and when a leader last renewed it (zero when
// none ever led).
func PlannerDown(lease *coordinationv1.Lease, now time.Time) (down bool, renewed time.Time) {
	if lease == nil || lease.Spec.RenewTime == nil {
		return true, time.Time{}
	}
	return now.Sub(lease.Spec.RenewTime.Time) > PlannerStale, lease.Spec.RenewTime.Time
}

// NotChecked is the Unchecked reason of a tag the planner has not checked
// yet (it started, or the tag is new to it).
const NotChecked = "not checked yet"

// Build ranks wants as source.Select does within limit and returns the set
// to publish.
func Build(wants []source.Want, limit int, health []wire.Health) *Set {
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
		s.OverSample = append(s.OverSample, wire.Image{Image: im.Image, Origins: im.Origins})
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

// Encoded is a set as its ConfigMaps hold it: the head, in ConfigMap, and
// the parts it names, in PartName(1), PartName(2)...
type Encoded struct {
	Head  []byte
	Parts [][]byte
	// Over counts the images left out, --max-images's and those that fit
	// in no ConfigMap.
	Over int
}

// Size is the bytes of all the set's ConfigMaps.
func (e *Encoded) Size() int {
	n := len(e.Head)
	for _, p := range e.Parts {
		n += len(p)
	}
	return n
}

// Encode returns s as its ConfigMaps hold it. A set that does not fit one
// ConfigMap (MaxBytes compressed, partJSONBytes expanded) is split: the
// head holds the first images and names the parts that hold the others,
// each with the hash of its data, so a reader never joins parts of two
// different sets. When even 1+MaxParts ConfigMaps cannot hold it, the
// images ranked last are left out (counted in Over), as few as need be.
func Encode(s *Set) (*Encoded, error) {
	if s.Parts != nil {
		c := *s
		c.Parts = nil
		s = &c
	}
	head := func(images []Image, refs []Part) *Set {
		c := *s
		c.Images, c.Parts = images, refs
		return &c
	}
	n, b, err := fit(s.Images, func(images []Image) any { return head(images, nil) })
	if err != nil || n == len(s.Images) {
		return &Encoded{Head: b, Over: s.Over}, err
	}
	// The head's images: as many as fit beside the most parts it can name
	// (placeholders of the same size as the parts' hashes).
	refs := make([]Part, MaxParts)
	for i := range refs {
		sum := sha256.Sum256([]byte{byte(i)})
		refs[i] = Part{SHA256: hex.EncodeToString(sum[:]), Images: 1 << 20}
	}
	n, _, err = fit(s.Images, func(images []Image) any { return head(images, refs) })
	if err != nil {
		return nil, err
	}
	e := &Encoded{}
	var parts []Part
	rest := s.Images[n:]
	for len(rest) > 0 && len(parts) < MaxParts {
		k, data, err := fit(rest, func(images []Image) any { return &part{V: version, Images: images} })
		if err != nil {
			return nil, err
		}
		if k == 0 {
			break
		}
		sum := sha256.Sum256(data)
		parts = append(parts, Part{SHA256: hex.EncodeToString(sum[:]), Images: k})
		e.Parts = append(e.Parts, data)
		rest = rest[k:]
	}
	h := head(s.Images[:n], parts)
	h.Over += len(rest)
	e.Over = h.Over
	if e.Head, _, err = encode(h); err != nil {
		return nil, err
	}
	return e, nil
}

// fits reports whether data (json bytes expanded) fits one ConfigMap.
func fits(data []byte, json int) bool {
	return len(data) <= MaxBytes && json <= partJSONBytes
}

// fit returns the most of images, n, that fit one ConfigMap as wrap
// makes it, and that ConfigMap's data: the images' own JSON sizes pick n
// at once, and a search brings it down when compression does worse.
func fit(images []Image, wrap func([]Image) any) (int, []byte, error) {
	_, overhead, err := encode(wrap(nil))
	if err != nil {
		return 0, nil, err
	}
	hi, size := 0, overhead
	for hi < len(images) {
		b, err := json.Marshal(images[hi])
		if err != nil {
			return 0, nil, err
		}
		if size += len(b) + 1; size > partJSONBytes {
			break
		}
		hi++
	}
	// Most often they fit as they are: one encoding.
	b, n, err := encode(wrap(images[:hi]))
	if err != nil || fits(b, n) {
		return hi, b, err
	}
	// Else the most that fit is in [lo, hi): none fit (lo), hi do not.
	lo := 0
	for lo < hi-1 {
		mid := (lo + hi) / 2
		b, n, err := encode(wrap(images[:mid]))
		if err != nil {
			return 0, nil, err
		}
		if fits(b, n) {
			lo = mid
		} else {
			hi = mid
		}
	}
	b, _, err = encode(wrap(images[:lo]))
	return lo, b, err
}

// encode is v as gzip-compressed JSON, and the JSON's length.
func encode(v any) ([]byte, int, error) {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	cw := &countingWriter{w: zw}
	if err := json.NewEncoder(cw).Encode(v); err != nil {
		return nil, 0, fmt.Errorf("encoding the wanted set: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, 0, fmt.Errorf("compressing the wanted set: %w", err)
	}
	return b.Bytes(), cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += n
	return n, err
}

// PartSource returns the part of a set named name whose data has the
// SHA-256 sha: its images when the caller has them already (a part of the
// last set it read), else the data of the ConfigMap of that name.
type PartSource func(name, sha string) (images []Image, data []byte, err error)

// Decode reads a published set, strictly: the head, then each part it
// names, from getPart. A set that does not decode, names an image that is
// not a normalised reference, or whose parts are missing or not the ones
// the head names (the planner is writing it) is refused whole: a node then
// keeps the last good one. ErrPartMoved is the last case, which reading
// again soon may cure.
func Decode(head []byte, getPart PartSource) (*Set, error) {
	var s Set
	used, err := decodeJSON(head, maxJSONBytes, &s)
	if err != nil {
		return nil, err
	}
	if s.V != version {
		return nil, fmt.Errorf("the wanted set is of version %d; this daemon reads version %d", s.V, version)
	}
	if len(s.Parts) > MaxParts {
		return nil, fmt.Errorf("the wanted set names %d parts, more than %d", len(s.Parts), MaxParts)
	}
	for i, ref := range s.Parts {
		name := PartName(i + 1)
		if !imageref.IsDigest("sha256:"+ref.SHA256) || ref.Images < 1 {
			return nil, fmt.Errorf("the wanted set names part %s with hash %s and %d images", name, imageref.Quote(ref.SHA256), ref.Images)
		}
		if getPart == nil {
			return nil, fmt.Errorf("the wanted set has parts (configmap/%s...), which were not read", name)
		}
		known, data, err := getPart(name, ref.SHA256)
		if err != nil {
			return nil, fmt.Errorf("%w: reading configmap/%s: %w", ErrPartMoved, name, err)
		}
		if known != nil && len(known) == ref.Images {
			s.Images = append(s.Images, known...)
			continue
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != ref.SHA256 {
			return nil, fmt.Errorf("%w: configmap/%s is not the part the set names (the planner is writing the set)", ErrPartMoved, name)
		}
		var p part
		n, err := decodeJSON(data, maxJSONBytes-used, &p)
		if err != nil {
			return nil, fmt.Errorf("configmap/%s: %w", name, err)
		}
		used += n
		if p.V != version || len(p.Images) != ref.Images {
			return nil, fmt.Errorf("configmap/%s is of version %d with %d images; the set names it with %d", name, p.V, len(p.Images), ref.Images)
		}
		s.Images = append(s.Images, p.Images...)
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

// PartImages are the images of each part of s, by the part's hash (sharing
// s.Images' memory): what a reader passes back as known for the next set.
func (s *Set) PartImages() map[string][]Image {
	out := make(map[string][]Image, len(s.Parts))
	end := len(s.Images)
	for i := len(s.Parts) - 1; i >= 0 && end >= s.Parts[i].Images; i-- {
		out[s.Parts[i].SHA256] = s.Images[end-s.Parts[i].Images : end : end]
		end -= s.Parts[i].Images
	}
	return out
}

// ErrPartMoved: a part of the set is missing or not the one its head names.
var ErrPartMoved = errors.New("the wanted set is being written")

// decodeJSON decodes one ConfigMap's data into v, strictly, expanding it to
// at most limit bytes; it returns how many it expanded to.
func decodeJSON(b []byte, limit int, v any) (int, error) {
	if len(b) > MaxBytes {
		return 0, fmt.Errorf("the wanted set is %d bytes, more than %d", len(b), MaxBytes)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return 0, fmt.Errorf("the wanted set is not gzip: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, int64(limit)+1))
	if err != nil {
		return 0, fmt.Errorf("decompressing the wanted set: %w", err)
	}
	if len(raw) > limit {
		return 0, fmt.Errorf("the wanted set expands past %d bytes", maxJSONBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return 0, fmt.Errorf("the wanted set does not decode: %w", err)
	}
	if dec.More() {
		return 0, errors.New("the wanted set holds more than one value")
	}
	return len(raw), nil
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
