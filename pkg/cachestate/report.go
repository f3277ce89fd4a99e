package cachestate

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
)

// AnnotationReport is the annotation on each daemon pod that holds its
// node's image statuses, as Summarize reads them from the node's prefetch
// pods (see EncodeReport). The plugin's status reads these reports, one
// small object per node, instead of every prefetch pod of the cluster.
const AnnotationReport = "image-cache-daemon/images"

// MaxReportBytes bounds an encoded report: three quarters of the 256 KiB
// that all the annotations of an object may hold, the rest left to the
// daemon's health report and the pod's own. The default --max-images of
// 1,000 fits with room to spare. A node whose statuses do not fit publishes
// no report, and status reads its prefetch pods instead.
const MaxReportBytes = 192 << 10

// maxReportMessage bounds one message in a report: the whole one stays on
// the prefetch pod (kubectl describe shows it).
const maxReportMessage = 256

// reportVersion is the version of the encoding below.
const reportVersion = 1

// report is the encoding of a node's image statuses: one tuple per image,
// [image, state, digest, pod, since, reason, message], with its empty
// trailing fields left out. Tuples rather than objects keep 1,000 images in
// the room an annotation has.
type report struct {
	Version int        `json:"v"`
	Images  [][]string `json:"images"`
}

// EncodeReport encodes a node's image statuses (their Node is left out: the
// report is on the daemon pod of that node). ok is false when they do not
// fit in MaxReportBytes.
func EncodeReport(states []ImageStatus) (raw string, ok bool) {
	r := report{Version: reportVersion, Images: make([][]string, 0, len(states))}
	for _, st := range states {
		since := ""
		if !st.Since.IsZero() {
			since = st.Since.UTC().Format(time.RFC3339)
		}
		t := []string{st.Image, string(st.State), st.Digest, st.Pod, since, st.Reason, printable(st.Message, maxReportMessage)}
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

// DecodeReport reads a report that EncodeReport wrote, for node. Anyone who
// may edit pods in the namespace can write one, so every field is checked
// and a report that does not read is refused whole.
func DecodeReport(node, raw string) ([]ImageStatus, error) {
	if len(raw) > MaxReportBytes {
		return nil, fmt.Errorf("the report is %d bytes, more than %d", len(raw), MaxReportBytes)
	}
	var r report
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return nil, fmt.Errorf("the report does not read: %w", err)
	}
	if r.Version != reportVersion {
		return nil, fmt.Errorf("the report has version %d; this plugin reads version %d", r.Version, reportVersion)
	}
	out := make([]ImageStatus, 0, len(r.Images))
	for i, t := range r.Images {
		if len(t) < 2 || len(t) > 7 {
			return nil, fmt.Errorf("image %d of the report has %d fields, not 2 to 7", i, len(t))
		}
		for _, f := range t {
			if strings.ContainsFunc(f, unicode.IsControl) {
				return nil, fmt.Errorf("image %d of the report holds a control character", i)
			}
		}
		t = append(t, make([]string, 7-len(t))...)
		st := ImageStatus{Node: node, Image: t[0], State: State(t[1]), Digest: t[2], Pod: t[3], Reason: t[5], Message: t[6]}
		if st.Image == "" {
			return nil, fmt.Errorf("image %d of the report has no image", i)
		}
		switch st.State {
		case Cached, Pulling, Failed, Pending:
		default:
			return nil, fmt.Errorf("image %d of the report has the unknown state %q", i, st.State)
		}
		if t[4] != "" {
			since, err := time.Parse(time.RFC3339, t[4])
			if err != nil {
				return nil, fmt.Errorf("image %d of the report: %w", i, err)
			}
			st.Since = since
		}
		out = append(out, st)
	}
	// As Summarize returns them: sorted, one per image.
	slices.SortStableFunc(out, func(a, b ImageStatus) int { return strings.Compare(a.Image, b.Image) })
	for i := 1; i < len(out); i++ {
		if out[i].Image == out[i-1].Image {
			return nil, fmt.Errorf("the report names image %s twice", out[i].Image)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// printable is s with its control characters (a terminal's escape
// sequences, line breaks) made spaces, cut to at most n bytes, marked.
func printable(s string, n int) string {
	if len(s) > n {
		s = imageref.Prefix(s, n-len("...")) + "..."
	}
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}
