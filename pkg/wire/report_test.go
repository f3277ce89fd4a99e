package wire

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func reportStates(n int) []ImageStatus {
	since := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	var out []ImageStatus
	for i := range n {
		st := ImageStatus{Node: "node-a", Image: fmt.Sprintf("registry.example/team/app-%04d:v1", i), Pod: "icd-node-a-0123456789abcdef"}
		switch i % 4 {
		case 0:
			st.State, st.Digest, st.Since = Cached, "sha256:"+strings.Repeat("ab", 32), since
		case 1:
			st.State, st.Reason, st.Message = Failed, "ImagePullBackOff", `Back-off pulling image "x": not found`
		case 2:
			st.State, st.Since = Pulling, since
		case 3:
			st.State, st.Pod = Pending, ""
		}
		out = append(out, st)
	}
	return out
}

// What the daemon encodes, the plugin reads back as it was, for its node.
func TestReportRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 7, 100} {
		states := reportStates(n)
		raw, ok := EncodeReport(states)
		if !ok {
			t.Fatalf("%d images do not fit", n)
		}
		got, err := DecodeReport("node-a", raw)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			states = nil
		}
		if !reflect.DeepEqual(got, states) {
			t.Errorf("%d images: got\n%+v\nwant\n%+v", n, got, states)
		}
	}
}

// --max-images (1,000 by default) fits with room to spare; a report that
// does not fit is refused, and a long message is cut, marked.
func TestReportBounds(t *testing.T) {
	raw, ok := EncodeReport(reportStates(1000))
	if !ok {
		t.Fatal("1,000 images do not fit")
	}
	t.Logf("1,000 images: %d bytes", len(raw))
	long := make([]ImageStatus, 100)
	for i := range long {
		long[i] = ImageStatus{Image: fmt.Sprintf("r.example/%s:%d", strings.Repeat("x", 200), i), State: Failed, Message: strings.Repeat("é", 1000)}
	}
	raw, ok = EncodeReport(long)
	if !ok {
		t.Fatal("100 images with long messages do not fit")
	}
	got, err := DecodeReport("n", raw)
	if err != nil {
		t.Fatal(err)
	}
	if m := got[0].Message; len(m) > maxReportMessage || !strings.HasSuffix(m, "é...") {
		t.Errorf("message of %d bytes: %q", len(m), m)
	}
	huge := make([]ImageStatus, 1000)
	for i := range huge {
		huge[i] = ImageStatus{Image: fmt.Sprintf("r.example/%s:%d", strings.Repeat("x", 200), i), State: Failed, Message: strings.Repeat("m", 200)}
	}
	if _, ok := EncodeReport(huge); ok {
		t.Error("a report over MaxReportBytes was encoded")
	}
	if _, err := DecodeReport("n", `{"v":1,"images":[`+strings.Repeat(`["a","cached"],`, MaxReportBytes/15)+`["b","cached"]]}`); err == nil {
		t.Error("a report over MaxReportBytes was read")
	}
}

// validTuple is a tuple of a report that reads, with every field set.
const validTuple = `["registry.example/a:v1","cached","sha256:` + digest64 + `","icd-node-a-0123456789abcdef","2026-11-25T20:00:00Z","Reason","message"]`

const digest64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// A report that anyone who may edit pods could write is read strictly:
// each rule refuses the report whole.
func TestDecodeReportRefuses(t *testing.T) {
	if got, err := DecodeReport("n", `{"v":1,"images":[`+validTuple+`]}`); err != nil || len(got) != 1 {
		t.Fatalf("the valid tuple does not read: %v", err)
	}
	tuple := func(fields ...string) string {
		return `{"v":1,"images":[["` + strings.Join(fields, `","`) + `"]]}`
	}
	img := "registry.example/a:v1"
	for _, tc := range []struct{ name, raw string }{
		{"empty", ``},
		{"not JSON", `{`},
		{"an array", `[]`},
		{"newer version", `{"v":2,"images":[]}`},
		{"no version", `{"images":[]}`},
		{"no images", `{"v":1}`},
		{"null images", `{"v":1,"images":null}`},
		{"version twice", `{"v":1,"v":1,"images":[]}`},
		{"images twice", `{"v":1,"images":[` + validTuple + `],"images":[]}`},
		{"unknown key", `{"v":1,"images":[],"nodes":[]}`},
		{"key in another case", `{"V":1,"images":[]}`},
		{"trailing data", `{"v":1,"images":[]} {}`},
		{"version not an integer", `{"v":1.0,"images":[]}`},
		{"one field", `{"v":1,"images":[["a"]]}`},
		{"eight fields", tuple(img, "cached", "", "", "", "", "m", "x")},
		{"empty last field", tuple(img, "cached", "")},
		{"a number", `{"v":1,"images":[["registry.example/a:v1",1]]}`},
		{"null tuple", `{"v":1,"images":[null]}`},
		{"no image", tuple("", "cached")},
		{"not a reference", tuple("Not/Valid", "cached")},
		{"not normalised", tuple("alpine", "cached")},
		{"unknown state", tuple(img, "gone")},
		{"twice", `{"v":1,"images":[["registry.example/a:v1","cached"],["registry.example/a:v1","failed"]]}`},
		{"unsorted", `{"v":1,"images":[["registry.example/b:v1","cached"],["registry.example/a:v1","failed"]]}`},
		{"short digest", tuple(img, "cached", "sha256:abc")},
		{"upper-case digest", tuple(img, "cached", "sha256:"+strings.ToUpper(digest64))},
		{"other algorithm", tuple(img, "cached", "sha512:"+digest64+digest64)},
		{"digest of a failed image", tuple(img, "failed", "sha256:"+digest64)},
		{"bad pod name", tuple(img, "cached", "", "Pod_X")},
		{"bad time", tuple(img, "cached", "", "", "yesterday")},
		{"time not in UTC", tuple(img, "cached", "", "", "2026-11-25T21:00:00+01:00")},
		{"long reason", tuple(img, "failed", "", "", "", strings.Repeat("r", maxReportReason+1))},
		{"long message", tuple(img, "failed", "", "", "", "", strings.Repeat("m", maxReportMessage+1))},
		{"escape sequence", tuple(img, "failed", "", "", "", "", `\u001b[2J`)},
		{"line break in a reason", tuple(img, "failed", "", "", "", `a\nb`)},
		{"bidi override", tuple(img, "failed", "", "", "", "", "\u202eevil")},
		{"bidi isolate", tuple(img, "failed", "", "", "", "", `\u2066x\u2069`)},
		{"bidi mark", tuple(img, "failed", "", "", "", "", "\u061c")},
		{"zero width", tuple(img, "failed", "", "", "", "", "a\u200bb")},
		{"byte order mark", tuple(img, "failed", "", "", "", "", `\ufeff`)},
		{"C1 control", tuple(img, "failed", "", "", "", "", `\u009b`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeReport("n", tc.raw)
			t.Log(err)
			if err == nil {
				t.Errorf("%s was read: %+v", tc.raw, got)
			}
		})
	}
}

// Whatever a pod's editor writes, the plugin reads it in time linear in its
// size, or refuses it; what it reads, it encodes back to the same statuses.
func FuzzDecodeReport(f *testing.F) {
	raw, _ := EncodeReport(reportStates(9))
	f.Add(raw)
	f.Add(`{"v":1,"images":[` + validTuple + `]}`)
	f.Add(`{"v":1,"images":[]}`)
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := DecodeReport("n", raw)
		if err != nil {
			return
		}
		for i := range got {
			if got[i].Node != "n" || got[i].Image == "" || (i > 0 && got[i].Image <= got[i-1].Image) {
				t.Fatalf("read %+v", got)
			}
		}
		again, ok := EncodeReport(got)
		if !ok {
			t.Fatalf("what was read does not encode")
		}
		back, err := DecodeReport("n", again)
		if err != nil {
			t.Fatalf("re-encoded report does not read: %v", err)
		}
		if !reflect.DeepEqual(back, got) {
			t.Fatalf("round trip:\n%+v\n%+v", back, got)
		}
	})
}

// MaxReportBytes is the bound on both sides, to the byte.
func TestReportBoundExact(t *testing.T) {
	// k failed images with full messages, the last one's of last bytes.
	encode := func(k, last int) (string, bool) {
		states := reportStates(k)
		for i := range states {
			states[i].State, states[i].Digest, states[i].Since, states[i].Reason = Failed, "", time.Time{}, ""
			states[i].Pod = "icd-node-a-0123456789abcdef"
			states[i].Message = strings.Repeat("m", maxReportMessage)
		}
		states[k-1].Message = strings.Repeat("m", last)
		return EncodeReport(states)
	}
	one, _ := encode(1, maxReportMessage)
	two, _ := encode(2, maxReportMessage)
	k := (MaxReportBytes-len(one))/(len(two)-len(one)) + 2 // one more than fit full
	short, _ := encode(k, 1)
	last := 1 + MaxReportBytes - len(short)
	if last < 1 || last >= maxReportMessage {
		t.Fatalf("%d images leave %d bytes for the last message", k, last)
	}
	raw, ok := encode(k, last)
	if !ok || len(raw) != MaxReportBytes {
		t.Fatalf("%d bytes: encoded %v", len(raw), ok)
	}
	if _, ok := encode(k, last+1); ok {
		t.Error("a report of MaxReportBytes+1 was encoded")
	}
	if _, err := DecodeReport("n", raw); err != nil {
		t.Errorf("%d bytes: %v", len(raw), err)
	}
	if _, err := DecodeReport("n", raw+" "); err == nil {
		t.Errorf("%d bytes were read", len(raw)+1)
	}
}

// A field fit for a terminal: what a terminal would act on is escaped when
// the daemon writes it, in every field that can hold it, so one odd status
// never makes the report refused; a report that holds one is not read.
func TestReportCleansEveryField(t *testing.T) {
	img := "registry.example/a:v1"
	raw, ok := EncodeReport([]ImageStatus{
		{Image: img, State: Failed, Reason: "Err\x1b[31m\u202e", Message: "line\nbreak \x1b[31mred\u200b", Pod: "icd-a"},
		{Image: "registry.example/b:v1", State: Cached, Digest: "sha256:\x1b", Pod: "Bad\npod"},
		{Image: "registry.example/c:v1", State: Failed, Digest: "sha256:" + digest64},
		{Image: "Not\x1bAnImage", State: Cached},
		{Image: "registry.example/d:v1", State: "odd"},
		{Image: img, State: Cached},
	})
	if !ok {
		t.Fatal("not encoded")
	}
	got, err := DecodeReport("n", raw)
	if err != nil {
		t.Fatalf("the cleaned report does not read: %v\n%s", err, raw)
	}
	want := []ImageStatus{
		{Node: "n", Image: img, State: Failed, Reason: `Err\x1b[31m\u202e`, Message: `line\nbreak \x1b[31mred\u200b`, Pod: "icd-a"},
		{Node: "n", Image: "registry.example/b:v1", State: Cached},
		{Node: "n", Image: "registry.example/c:v1", State: Failed},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read\n%+v\nwant\n%+v", got, want)
	}
}
