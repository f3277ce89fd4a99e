package wanted

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/dcherman/image-cache-daemon/pkg/source"
)

func want(ns, origin, image string) source.Want {
	return source.Want{Image: image, Origin: origin, Namespace: ns}
}

// The set ranks as source.Select does, names at most three origins an
// image, and counts and names what --max-images leaves out.
func TestBuild(t *testing.T) {
	wants := []source.Want{
		want("a", "ConfigMap a/x", "docker.io/library/a1:latest"),
		want("a", "ConfigMap a/x", "docker.io/library/a2:latest"),
		want("b", "ConfigMap b/x", "docker.io/library/b1:latest"),
		{Image: "docker.io/library/static:latest", Origin: "flag --image", Static: true},
	}
	for i := range 5 {
		wants = append(wants, want("c", fmt.Sprintf("ConfigMap c/o%d", i), "docker.io/library/shared:latest"))
	}
	health := []source.Health{{Source: "configmaps", Synced: true, Objects: 7}}
	s := Build(wants, 4, health)
	var images []string
	for _, im := range s.Images {
		images = append(images, im.Image)
	}
	keep, over := source.Select(wants, 4)
	if !reflect.DeepEqual(images, keep) || s.Over != len(over) || len(s.OverSample) != len(over) {
		t.Fatalf("images %v over %d %v; want Select's %v and %v", images, s.Over, s.OverSample, keep, over)
	}
	for _, im := range s.Images {
		if im.Image == "docker.io/library/shared:latest" && (len(im.Origins) != 3 || im.MoreOrigins != 2) {
			t.Errorf("shared names %v and %d more; want 3 and 2 more", im.Origins, im.MoreOrigins)
		}
	}
	if !reflect.DeepEqual(s.Sources, health) {
		t.Errorf("sources %v, want %v", s.Sources, health)
	}
	// What a node reads: the images in rank order, served first.
	got := map[string]bool{}
	var order []string
	for _, w := range s.Wants() {
		if !w.Static {
			t.Fatalf("want %+v is not served first", w)
		}
		if !got[w.Image] {
			got[w.Image] = true
			order = append(order, w.Image)
		}
	}
	if nodeKeep, _ := source.Select(s.Wants(), 4); !reflect.DeepEqual(nodeKeep, keep) || !reflect.DeepEqual(order, keep) {
		t.Errorf("a node with the same limit keeps %v; want the planner's %v", nodeKeep, keep)
	}

	if back, _ := roundTrip(t, s); !reflect.DeepEqual(back, s) {
		t.Errorf("decoded %+v, want %+v", back, s)
	}
}

// roundTrip encodes s and decodes it again.
func roundTrip(t *testing.T, s *Set) (*Set, []byte) {
	t.Helper()
	data, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return back, data
}

// incompressible is a valid reference of about n bytes that gzip cannot
// shrink much.
func incompressible(i, n int) string {
	var b strings.Builder
	b.WriteString("registry.example/")
	for seed := 0; b.Len() < n; seed++ {
		sum := sha256.Sum256(fmt.Appendf(nil, "%d/%d", i, seed))
		b.WriteString(hex.EncodeToString(sum[:]))
		b.WriteString("/")
	}
	return strings.TrimSuffix(b.String()[:n], "/") + ":v1"
}

// However many images and origins, the published set fits MaxBytes: the
// images ranked last are left out and counted.
func TestEncodeStaysWithinMaxBytes(t *testing.T) {
	var wants []source.Want
	const images = 5000
	for i := range images {
		img := incompressible(i, 250)
		for o := range 4 {
			wants = append(wants, want("team", "ConfigMap team/"+incompressible(i*10+o, 200), img))
		}
	}
	s := Build(wants, images, nil)
	back, data := roundTrip(t, s)
	t.Logf("%d images of 250 bytes, 3 origins each: %d published in %d KiB, %d counted over", images, len(back.Images), len(data)>>10, back.Over)
	if len(data) > MaxBytes || len(back.Images) == 0 || len(back.Images)+back.Over != images {
		t.Errorf("%d bytes, %d images and %d over; want at most %d bytes and %d in all", len(data), len(back.Images), back.Over, MaxBytes, images)
	}
	for i, im := range back.Images {
		if im.Image != s.Images[i].Image {
			t.Fatalf("image %d is %s, want %s: the cut must keep the rank order", i, im.Image, s.Images[i].Image)
		}
	}
	// Cut as little as need be: one more image would not fit.
	if more, _ := encode(cut(s, len(back.Images)+1)); len(more) <= MaxBytes {
		t.Errorf("%d images would fit in %d bytes; only %d published", len(back.Images)+1, len(more), len(back.Images))
	}
}

func gzipped(s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte(s))
	_ = zw.Close()
	return b.Bytes()
}

// A set that is not exactly what a planner writes is refused whole.
// Digests round trip, and Current reads them.
func TestDigests(t *testing.T) {
	d := "sha256:" + strings.Repeat("a", 64)
	pin := "sha256:" + strings.Repeat("b", 64)
	in := &Set{V: 1, Images: []Image{
		{Image: "docker.io/library/a:1", Origins: []string{"x"}, Digest: d, Since: 1700000000},
		{Image: "docker.io/library/b:1", Origins: []string{"x"}, Unchecked: "the registry did not answer the planner in time"},
		{Image: "docker.io/library/c@" + pin, Origins: []string{"x"}, Digest: pin},
	}}
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, since := out.Current("docker.io/library/a:1"); got != d || since.Unix() != 1700000000 {
		t.Errorf("a:1 reads %s since %s", got, since)
	}
	if got, _ := out.Current("docker.io/library/b:1"); got != "" {
		t.Errorf("unchecked b:1 reads digest %q", got)
	}
	if got, _ := out.Current("docker.io/library/none:1"); got != "" {
		t.Errorf("an image not in the set reads digest %q", got)
	}
	for img, want := range map[string]bool{"docker.io/library/a:1": false, "docker.io/library/b:1": false, "docker.io/library/none:1": false} {
		if got := out.Pending(img); got != want {
			t.Errorf("Pending(%s) = %v, want %v", img, got, want)
		}
	}
	later := &Set{V: 1, Images: []Image{{Image: "docker.io/library/c:1", Unchecked: NotChecked}, {Image: "docker.io/library/d:1"}}}
	if !later.Pending("docker.io/library/c:1") || !later.Pending("docker.io/library/d:1") {
		t.Error("a tag not checked yet, or a set with no digests at all (an older planner's), is not pending")
	}
	if out.Images[1].Unchecked != in.Images[1].Unchecked || out.Images[2].Digest != pin {
		t.Errorf("decoded %+v", out.Images)
	}
}

func TestDecodeRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"not gzip":          {[]byte(`{"v":1}`), "not gzip"},
		"not JSON":          {gzipped(`{"v":`), "does not decode"},
		"unknown field":     {gzipped(`{"v":1,"images":[],"sources":[],"extra":1}`), "unknown field"},
		"another version":   {gzipped(`{"v":2,"images":[],"sources":[]}`), "version 2"},
		"not normalised":    {gzipped(`{"v":1,"images":[{"image":"alpine","origins":[]}],"sources":[]}`), "not a normalised image reference"},
		"not a reference":   {gzipped(`{"v":1,"images":[{"image":"Not Valid","origins":[]}],"sources":[]}`), "not a normalised image reference"},
		"twice":             {gzipped(`{"v":1,"images":[{"image":"docker.io/library/a:latest","origins":[]},{"image":"docker.io/library/a:latest","origins":[]}],"sources":[]}`), "twice"},
		"two values":        {gzipped(`{"v":1,"images":[],"sources":[]} {}`), "more than one value"},
		"expands too much":  {gzipped(`{"v":1,"images":[],"sources":[],"x":"` + strings.Repeat("a", maxJSONBytes) + `"}`), "expands past"},
		"too large":         {make([]byte, MaxBytes+1), "more than"},
		"short digest":      {gzipped(`{"v":1,"images":[{"image":"docker.io/library/a:1","origins":[],"digest":"sha256:abc"}],"sources":[]}`), "not sha256:<64 hex digits>"},
		"md5 digest":        {gzipped(`{"v":1,"images":[{"image":"docker.io/library/a:1","origins":[],"digest":"md5:` + strings.Repeat("a", 64) + `"}],"sources":[]}`), "not sha256"},
		"digest and reason": {gzipped(`{"v":1,"images":[{"image":"docker.io/library/a:1","origins":[],"digest":"sha256:` + strings.Repeat("a", 64) + `","unchecked":"x"}],"sources":[]}`), "both"},
		"pin contradicted":  {gzipped(`{"v":1,"images":[{"image":"docker.io/library/a@sha256:` + strings.Repeat("b", 64) + `","origins":[],"digest":"sha256:` + strings.Repeat("a", 64) + `"}],"sources":[]}`), "pinned to"},
		"escape in reason":  {gzipped(`{"v":1,"images":[{"image":"docker.io/library/a:1","origins":[],"unchecked":"\u001b[2J"}],"sources":[]}`), "not printable"},
		"long reason":       {gzipped(`{"v":1,"images":[{"image":"docker.io/library/a:1","origins":[],"unchecked":"` + strings.Repeat("r", maxUnchecked+1) + `"}],"sources":[]}`), "too long"},
		"negative since":    {gzipped(`{"v":1,"images":[{"image":"docker.io/library/a:1","origins":[],"digest":"sha256:` + strings.Repeat("a", 64) + `","since":-1}],"sources":[]}`), "before 1970"},
	} {
		if _, err := Decode(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error saying %q", name, err, tc.want)
		}
	}
}

// FuzzDecode: a published set is read from a ConfigMap anyone with write
// access to it may have written. Decode never panics, and what it accepts
// it writes again unchanged (a node that read it could publish it).
func FuzzDecode(f *testing.F) {
	d := "sha256:" + strings.Repeat("a", 64)
	for _, s := range []string{
		`{"v":1,"images":[],"sources":[]}`,
		`{"v":1,"images":[{"image":"docker.io/library/a:1","origins":["x"],"digest":"` + d + `","since":1700000000}],"sources":[]}`,
		`{"v":1,"images":[{"image":"docker.io/library/a:1","origins":[],"unchecked":"the registry did not answer"}],"sources":[]}`,
		`{"v":1,"images":[{"image":"docker.io/library/a@` + d + `","origins":[],"digest":"` + d + `"}],"sources":[]}`,
	} {
		f.Add(gzipped(s))
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Encode(s)
		if err != nil {
			t.Fatalf("a decoded set does not encode: %v", err)
		}
		s2, err := Decode(again)
		if err != nil {
			t.Fatalf("a set written again does not decode: %v", err)
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatalf("the set changed when written again:\n%+v\n%+v", s, s2)
		}
	})
}
