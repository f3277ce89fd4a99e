package cli

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// readWantedSet reads the set the planner published in ns (one GET, and
// one per part when it has several), with its head's ConfigMap (for when
// it was written): list prints it, status and add --wait take the tags'
// current digests from it.
func readWantedSet(ctx context.Context, client kubernetes.Interface, ns string) (*wanted.Set, *corev1.ConfigMap, error) {
	set, cm, err := wanted.Get(ctx, client, ns)
	switch {
	case apierrors.IsNotFound(err) && cm == nil:
		return nil, nil, fmt.Errorf("the planner has published no wanted set in namespace %s yet (kubectl -n %s get deployment %s)",
			ns, ns, wanted.Planner)
	case apierrors.IsForbidden(err):
		return nil, nil, fmt.Errorf("reading the planner's wanted set needs get on configmap/%s -n %s (and its parts, %s...): %w",
			wanted.ConfigMap, ns, wanted.PartName(1), err)
	case err != nil && cm == nil:
		return nil, nil, fmt.Errorf("reading the planner's wanted set: %w", err)
	case err != nil:
		return nil, nil, err
	}
	return set, cm, nil
}

// setReader reads the published set again at most every `every`: a watch
// that redraws every second must not GET a set of up to 768 KiB each time.
// Not safe for concurrent use.
type setReader struct {
	client kubernetes.Interface
	ns     string
	every  time.Duration

	read time.Time
	set  *wanted.Set
	err  error
}

// get returns the set last read, read again when it is `every` old.
func (r *setReader) get(ctx context.Context) (*wanted.Set, error) {
	if r.read.IsZero() || time.Since(r.read) >= r.every {
		r.set, _, r.err = readWantedSet(ctx, r.client, r.ns)
		r.read = time.Now()
	}
	return r.set, r.err
}

// noDigest is the reason given for an image the set names with neither a
// digest nor a reason: a planner that checks no digest.
const noDigest = "the planner published no digest (a planner older than the plugin?)"

// currentDigests are the wanted set's images by reference: what each tag
// points to now, or why the planner does not know. A nil set knows none.
type currentDigests map[string]wanted.Image

func newCurrentDigests(set *wanted.Set) currentDigests {
	if set == nil {
		return nil
	}
	c := make(currentDigests, len(set.Images))
	for _, im := range set.Images {
		c[im.Image] = im
	}
	return c
}

// of returns the digest img's tag points to now ("" when not known) or why
// the planner could not check it ("" when it is not in the set). A
// reference pinned by digest is its own current digest, set or no set
// (wanted.Decode refuses a set that says otherwise).
func (c currentDigests) of(img string) (digest, unchecked string) {
	if pin := imageref.Pinned(img); imageref.IsDigest(pin) {
		return pin, ""
	}
	im, ok := c[img]
	if !ok {
		return "", ""
	}
	return checkOf(im)
}

// checkOf is the digest the set gives im's tag, or why it gives none.
func checkOf(im wanted.Image) (digest, unchecked string) {
	switch {
	case im.Digest != "":
		return im.Digest, ""
	case im.Unchecked != "":
		return "", im.Unchecked
	}
	return "", noDigest
}

// addDigests gives each row the digest its tag points to now (from the
// planner's set, or the reference's own pin) and counts the nodes that
// hold another (Stale; nil when the current digest is not known); rows of
// images the planner could not check say why.
func addDigests(rows []imageRow, statuses []wire.ImageStatus, digests currentDigests) {
	byImage := make(map[string]*imageRow, len(rows))
	for i := range rows {
		r := &rows[i]
		byImage[r.Image] = r
		r.Digest, r.Unchecked = digests.of(r.Image)
		if r.Digest != "" {
			r.Stale = new(int)
		}
	}
	for _, st := range statuses {
		if r := byImage[st.Image]; r != nil && cachestate.Stale(st, r.Digest) {
			*r.Stale++
		}
	}
}

// staleCell is a row's STALE column: "-" when the tag's current digest is
// not known.
func staleCell(r imageRow) string {
	if r.Stale == nil {
		return "-"
	}
	return fmt.Sprint(*r.Stale)
}

// uncheckedImage is an image whose tag the planner could not check, and
// why.
type uncheckedImage struct{ image, why string }

// uncheckedLines say which images the planner could not check and why: a
// line per reason (after an install every tag shares "not checked yet";
// a registry that refuses, all of its tags), naming its first few images,
// for the first namedAtMost reasons; then how many images more.
func uncheckedLines(unchecked []uncheckedImage) []string {
	var reasons []string
	byReason := map[string][]string{}
	for _, u := range unchecked {
		if _, ok := byReason[u.why]; !ok {
			reasons = append(reasons, u.why)
		}
		byReason[u.why] = append(byReason[u.why], imageref.Familiar(u.image))
	}
	var out []string
	more := 0
	for i, why := range reasons {
		if i >= namedAtMost {
			more += len(byReason[why])
			continue
		}
		out = append(out, fmt.Sprintf("not checked (pulled again every resync): %s: %s", firstOf(byReason[why], ", "), imageref.Shorten(why)))
	}
	if more > 0 {
		out = append(out, fmt.Sprintf("not checked: and %s, for other reasons (kubectl imagecache list -o json names each)", plural(more, "more image")))
	}
	return out
}

// uncheckedOf are the rows whose tag the planner could not check.
func uncheckedOf(rows []imageRow) []uncheckedImage {
	var out []uncheckedImage
	for _, r := range rows {
		if r.Unchecked != "" {
			out = append(out, uncheckedImage{image: r.Image, why: r.Unchecked})
		}
	}
	return out
}
