package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
)

// MaxReportBytes bounds an encoded report: three quarters of the 256 KiB
// that all the annotations of an object may hold, the rest left to the
// daemon's health report and the pod's own. The default --max-images of
// 1,000 fits with room to spare. A node whose statuses do not fit publishes
// no report, and status reads its prefetch pods instead.
const MaxReportBytes = 192 << 10

// maxReportMessage bounds one message in a report, and maxReportReason one
// reason: the whole ones stay on the prefetch pod (kubectl describe shows
// them). The kubelet's reasons are short words (ImagePullBackOff).
const (
	maxReportMessage = 256
	maxReportReason  = 128
)

// reportVersion is the version of the encoding below.
const reportVersion = 1

// report is the encoding of a node's image statuses: one tuple per image,
// [image, state, digest, pod, since, reason, message], with its empty
// trailing fields left out, sorted by image. Tuples rather than objects
// keep 1,000 images in the room an annotation has.
type report struct {
	Version int        `json:"v"`
	Images  [][]string `json:"images"`
}

// The fields of a tuple.
const (
	fieldImage = iota
	fieldState
	fieldDigest
	fieldPod
	fieldSince
	fieldReason
	fieldMessage
	tupleFields
)

// EncodeReport encodes a node's image statuses (their Node is left out: the
// report is on the daemon pod of that node). ok is false when they do not
// fit in MaxReportBytes.
//
// Every field is made what DecodeReport reads, so that one odd status (a
// pod someone else made, a kubelet message with an escape sequence) cannot
// make the whole report refused: reasons and messages go through
// imageref.Printable and are cut; a digest that is not sha256:<64 hex>, or
// on a status that has none, and a pod name that is not one, are left out;
// a status whose image is not a normalised reference, whose state is not
// one of the four, or whose image came before, is left out whole.
func EncodeReport(states []ImageStatus) (raw string, ok bool) {
	if !slices.IsSortedFunc(states, byImage) {
		states = slices.Clone(states)
		slices.SortStableFunc(states, byImage)
	}
	r := report{Version: reportVersion, Images: make([][]string, 0, len(states))}
	for i, st := range states {
		if !knownState(st.State) || (i > 0 && st.Image == states[i-1].Image) || !normalised(st.Image) {
			continue
		}
		digest := st.Digest
		if !hasDigest(st.State) || !imageref.IsDigest(digest) {
			digest = ""
		}
		pod := st.Pod
		if !validPod(pod) {
			pod = ""
		}
		since := ""
		if !st.Since.IsZero() {
			since = st.Since.UTC().Format(time.RFC3339)
		}
		t := []string{st.Image, string(st.State), digest, pod, since,
			printable(st.Reason, maxReportReason), printable(st.Message, maxReportMessage)}
		for len(t) > 2 && t[len(t)-1] == "" {
			t = t[:len(t)-1]
		}
		r.Images = append(r.Images, t)
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // "<>&" would take 6 bytes each
	if err := enc.Encode(r); err != nil {
		return "", false
	}
	raw = strings.TrimSuffix(b.String(), "\n")
	if len(raw) > MaxReportBytes {
		return "", false
	}
	return raw, true
}

func byImage(a, b ImageStatus) int { return strings.Compare(a.Image, b.Image) }

// DecodeReport reads a report that EncodeReport wrote, for node (see
// ReportReader).
func DecodeReport(node, raw string) ([]ImageStatus, error) {
	return new(ReportReader).Decode(node, raw)
}

// ReportReader reads the reports of many nodes, checking each distinct
// image reference once: most images are on every node, and a reference
// costs microseconds to parse. The zero value is ready; it is not safe for
// concurrent use.
type ReportReader struct {
	// images are the references read so far, each valid and normalised:
	// the images of every node's statuses share them.
	images map[string]string
}

// maxRememberedImages bounds what a ReportReader keeps (at most 1 KiB a
// reference): past it, references are checked each time.
const maxRememberedImages = 1 << 12

// Decode reads a report that EncodeReport wrote, for node. Anyone who may
// edit pods in the namespace can write one, so it is read strictly and a
// report that does not read is refused whole: one JSON object with the
// keys "v" and "images" once each and no other; each image a tuple of 2 to
// 7 strings without empty trailing ones, as EncodeReport writes it; images
// valid, normalised references in strictly increasing order (so none
// twice); states one of the four; digests sha256:<64 lowercase hex>, on
// cached or pulling images only; pods valid pod names; times as RFC 3339
// in UTC; reasons and messages no longer than EncodeReport makes them; and
// no field with a character imageref.Printable would escape (control, bidi,
// zero-width). Time and memory are linear in len(raw), which is at most
// MaxReportBytes.
func (rr *ReportReader) Decode(node, raw string) ([]ImageStatus, error) {
	if len(raw) > MaxReportBytes {
		return nil, fmt.Errorf("the report is %d bytes, more than %d", len(raw), MaxReportBytes)
	}
	r, err := readReport(raw)
	if err != nil {
		return nil, fmt.Errorf("the report does not read: %w", err)
	}
	if r.Version != reportVersion {
		return nil, fmt.Errorf("the report has version %d; this plugin reads version %d", r.Version, reportVersion)
	}
	if len(r.Images) == 0 {
		return nil, nil
	}
	out := make([]ImageStatus, 0, len(r.Images))
	lastPod := ""
	for i, t := range r.Images {
		st, err := rr.status(node, t, &lastPod)
		if err != nil {
			return nil, fmt.Errorf("image %d of the report: %w", i, err)
		}
		if i > 0 && st.Image <= out[i-1].Image {
			return nil, fmt.Errorf("image %d of the report, %s, does not come after %s: images are sorted, each once", i, st.Image, out[i-1].Image)
		}
		out = append(out, st)
	}
	return out, nil
}

// readReport reads the JSON of a report, refusing a key that is unknown or
// given twice (encoding/json alone takes the last of two, and matches keys
// without regard to case) and anything after the object.
func readReport(raw string) (*report, error) {
	dec := json.NewDecoder(strings.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("it is not a JSON object")
	}
	var r report
	var seenV, seenImages bool
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var seen *bool
		var into any
		switch key {
		case "v":
			seen, into = &seenV, &r.Version
		case "images":
			seen, into = &seenImages, &r.Images
		default:
			return nil, fmt.Errorf("unknown key %s", imageref.Quote(key))
		}
		if *seen {
			return nil, fmt.Errorf("the key %q is given twice", key)
		}
		*seen = true
		if err := dec.Decode(into); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("something follows the object")
	}
	switch {
	case !seenV:
		return nil, errors.New(`the key "v" is missing`)
	case !seenImages || r.Images == nil:
		return nil, errors.New(`the key "images" is missing or null`)
	}
	return &r, nil
}

// status reads one tuple; lastPod is the pod of the tuple before, whose
// name needs no second check.
func (rr *ReportReader) status(node string, t []string, lastPod *string) (ImageStatus, error) {
	if len(t) < 2 || len(t) > tupleFields {
		return ImageStatus{}, fmt.Errorf("%d fields, not 2 to %d", len(t), tupleFields)
	}
	if t[len(t)-1] == "" {
		return ImageStatus{}, errors.New("an empty last field (EncodeReport leaves it out)")
	}
	for _, f := range t {
		if imageref.Printable(f) != f {
			return ImageStatus{}, fmt.Errorf("the field %s holds a control, bidi or zero-width character", imageref.Quote(f))
		}
	}
	t = append(t, make([]string, tupleFields-len(t))...)
	image, err := rr.image(t[fieldImage])
	if err != nil {
		return ImageStatus{}, err
	}
	st := ImageStatus{Node: node, Image: image, State: State(t[fieldState]), Digest: t[fieldDigest], Pod: t[fieldPod],
		Reason: t[fieldReason], Message: t[fieldMessage]}
	switch {
	case !knownState(st.State):
		return st, fmt.Errorf("the unknown state %s", imageref.Quote(string(st.State)))
	case st.Digest != "" && !hasDigest(st.State):
		return st, fmt.Errorf("a digest on a %s image", st.State)
	case st.Digest != "" && !imageref.IsDigest(st.Digest):
		return st, fmt.Errorf("the digest %s is not sha256:<64 lowercase hex digits>", imageref.Quote(st.Digest))
	case st.Pod != *lastPod && !validPod(st.Pod):
		return st, fmt.Errorf("%s is no pod name", imageref.Quote(st.Pod))
	case len(st.Reason) > maxReportReason:
		return st, fmt.Errorf("a reason of %d bytes, more than %d", len(st.Reason), maxReportReason)
	case len(st.Message) > maxReportMessage:
		return st, fmt.Errorf("a message of %d bytes, more than %d", len(st.Message), maxReportMessage)
	}
	*lastPod = st.Pod
	if s := t[fieldSince]; s != "" {
		// As EncodeReport writes it: whole seconds, in UTC ("Z").
		since, err := time.Parse(time.RFC3339, s)
		if err != nil || len(s) != len("2006-01-02T15:04:05Z") || s[len(s)-1] != 'Z' {
			return st, fmt.Errorf("the time %s is not RFC 3339 in UTC", imageref.Quote(s))
		}
		st.Since = since
	}
	return st, nil
}

// image checks that s is a valid, normalised reference and returns the one
// copy of it the reader keeps.
func (rr *ReportReader) image(s string) (string, error) {
	if kept, ok := rr.images[s]; ok {
		return kept, nil
	}
	n, err := imageref.Normalize(s)
	if err != nil {
		return "", err
	}
	if n != s {
		return "", fmt.Errorf("the image %s is not normalised (%s)", imageref.Quote(s), imageref.Quote(n))
	}
	if rr.images == nil {
		rr.images = map[string]string{}
	}
	if len(rr.images) < maxRememberedImages {
		rr.images[s] = s
	}
	return s, nil
}

func knownState(s State) bool {
	switch s {
	case Cached, Pulling, Failed, Pending:
		return true
	}
	return false
}

// hasDigest reports whether a status in state s may carry a digest: the
// image is on the node (cachestate.FromPod reads it from a run container).
func hasDigest(s State) bool { return s == Cached || s == Pulling }

// validPod reports whether name is empty (no pod) or may name a pod.
func validPod(name string) bool {
	return name == "" || len(validation.IsDNS1123Subdomain(name)) == 0
}

// normalised reports whether s is a valid reference in its normalised form.
func normalised(s string) bool {
	n, err := imageref.Normalize(s)
	return err == nil && n == s
}

// printable is s made printable (imageref.Printable) and cut to at most n
// bytes, marked.
func printable(s string, n int) string {
	s = imageref.Printable(s)
	if len(s) > n {
		s = imageref.Prefix(s, n-len("...")) + "..."
	}
	return s
}
