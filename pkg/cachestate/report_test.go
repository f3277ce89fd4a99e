package cachestate

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

func TestDecodeReportRefuses(t *testing.T) {
	for _, raw := range []string{
		``, `{`, `[]`, `{"v":2,"images":[]}`, `{"images":[]}`,
		`{"v":1,"images":[["a"]]}`,
		`{"v":1,"images":[["a","cached","","","","","",""]]}`,
		`{"v":1,"images":[["","cached"]]}`,
		`{"v":1,"images":[["a","gone"]]}`,
		`{"v":1,"images":[["a","cached","","","yesterday"]]}`,
		`{"v":1,"images":[["a","cached"],["a","failed"]]}`,
		`{"v":1,"images":[["a",1]]}`,
	} {
		if got, err := DecodeReport("n", raw); err == nil {
			t.Errorf("%s was read: %+v", raw, got)
		}
	}
}

// Whatever a pod's editor writes, the plugin reads it in time linear in its
// size, or refuses it; what it reads, it encodes back the same.
func FuzzDecodeReport(f *testing.F) {
	raw, _ := EncodeReport(reportStates(9))
	f.Add(raw)
	f.Add(`{"v":1,"images":[["a","cached","sha256:x","p","2026-11-25T20:00:00Z","r","m"]]}`)
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
			return
		}
		back, err := DecodeReport("n", again)
		if err != nil {
			t.Fatalf("re-encoded report does not read: %v", err)
		}
		for i := range back {
			// Messages are cut when encoded; the rest comes back as read.
			back[i].Message, got[i].Message = "", ""
			back[i].Since, got[i].Since = back[i].Since.UTC(), got[i].Since.UTC()
		}
		if !reflect.DeepEqual(back, got) {
			t.Fatalf("round trip:\n%+v\n%+v", back, got)
		}
	})
}

// MaxReportBytes is the bound on both sides, to the byte.
func TestReportBoundExact(t *testing.T) {
	frame := `{"v":1,"images":[["a","cached","` + `"]]}`
	for _, extra := range []int{0, 1} {
		digest := strings.Repeat("d", MaxReportBytes-len(frame)+extra)
		want := `{"v":1,"images":[["a","cached","` + digest + `"]]}`
		raw, ok := EncodeReport([]ImageStatus{{Image: "a", State: Cached, Digest: digest}})
		if ok != (extra == 0) || (ok && raw != want) {
			t.Errorf("%d bytes: encoded %v (%d bytes)", len(want), ok, len(raw))
		}
		if _, err := DecodeReport("n", want); (err == nil) != (extra == 0) {
			t.Errorf("%d bytes: decoded, err %v", len(want), err)
		}
	}
}

// A message fit for a terminal: control characters become spaces when
// the daemon writes it, and a report that holds one is not read.
func TestReportControlCharacters(t *testing.T) {
	raw, ok := EncodeReport([]ImageStatus{{Image: "a", State: Failed, Message: "line\nbreak \x1b[31mred"}})
	if !ok || strings.ContainsAny(raw, "\x1b") || strings.Contains(raw, `\n`) || strings.Contains(raw, `\u001b`) {
		t.Fatalf("encoded %q", raw)
	}
	if got, err := DecodeReport("n", raw); err != nil || got[0].Message != "line break  [31mred" {
		t.Errorf("decoded %+v %v", got, err)
	}
	if got, err := DecodeReport("n", `{"v":1,"images":[["a","failed","","","","","\u001b[2J"]]}`); err == nil {
		t.Errorf("a report with an escape sequence was read: %+v", got)
	}
}
