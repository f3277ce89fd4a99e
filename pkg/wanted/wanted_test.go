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
	"reflect"
	"strings"
	"testing"

	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
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
	health := []wire.Health{{Source: "configmaps", Synced: true, Objects: 7}}
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

// roundTrip encodes s and decodes it again, its parts included.
func roundTrip(t *testing.T, s *Set) (*Set, *Encoded) {
	t.Helper()
	e, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(e.Head, e.getPart)
	if err != nil {
		t.Fatal(err)
	}
	return back, e
}

// getPart reads e's parts as a reader of its ConfigMaps would.
func (e *Encoded) getPart(name, _ string) ([]Image, []byte, error) {
	for i, p := range e.Parts {
		if PartName(i+1) == name {
			return nil, p, nil
		}
	}
	return nil, nil, fmt.Errorf("configmaps %q not found", name)
}

// data is a PartSource that returns b for every part.
func data(b []byte) PartSource {
	return func(string, string) ([]Image, []byte, error) { return nil, b, nil }
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

// wideSet is a set of n images of 250 bytes with 3 origins each (4 want
// each), all of it as hard to compress as references may be.
func wideSet(n int) *Set {
	var wants []source.Want
	for i := range n {
		img := incompressible(i, 250)
		for o := range 4 {
			wants = append(wants, want("team", "ConfigMap team/"+incompressible(i*10+o, 200), img))
		}
	}
	return Build(wants, n, nil)
}

// A set that does not fit one ConfigMap is split into parts, each within
// MaxBytes compressed and partJSONBytes expanded, and reads back whole, in
// rank order.
func TestEncodeSplits(t *testing.T) {
	s := wideSet(3000)
	back, e := roundTrip(t, s)
	t.Logf("%d images: a head of %d KiB and %d parts, %d KiB in all", len(s.Images), len(e.Head)>>10, len(e.Parts), e.Size()>>10)
	if len(e.Parts) < 2 || e.Over != 0 {
		t.Fatalf("%d parts, %d over; want the set split in several, nothing left out", len(e.Parts), e.Over)
	}
	for i, data := range append([][]byte{e.Head}, e.Parts...) {
		if n := expanded(t, data); len(data) > MaxBytes || n > partJSONBytes {
			t.Errorf("configmap %d holds %d bytes, %d expanded; want at most %d and %d", i, len(data), n, MaxBytes, partJSONBytes)
		}
	}
	if len(back.Parts) != len(e.Parts) {
		t.Errorf("the head names %d parts, want %d", len(back.Parts), len(e.Parts))
	}
	// Read again knowing the parts: no part is fetched, the set is the same.
	known := back.PartImages()
	again, err := Decode(e.Head, func(name, sha string) ([]Image, []byte, error) {
		if images, ok := known[sha]; ok {
			return images, nil, nil
		}
		return nil, nil, fmt.Errorf("part %s fetched", name)
	})
	if err != nil || !reflect.DeepEqual(again, back) {
		t.Errorf("read again from the parts known: %v", err)
	}
	back.Parts = nil
	if !reflect.DeepEqual(back, s) {
		t.Error("the set read back from its parts differs from the set written")
	}
	// Encoding what was read gives the same ConfigMaps: a planner that
	// seeds from the set there is writes nothing when nothing changed.
	enc, err := Encode(back)
	if err != nil || !bytes.Equal(enc.Head, e.Head) || !reflect.DeepEqual(enc.Parts, e.Parts) {
		t.Errorf("the set read back encodes differently (%v)", err)
	}
}

// However many images and origins, the published set fits 1+MaxParts
// ConfigMaps: the images ranked last are left out and counted.
func TestEncodeStaysWithinMaxParts(t *testing.T) {
	const images = 40000
	s := wideSet(images)
	back, e := roundTrip(t, s)
	t.Logf("%d images of 250 bytes, 3 origins each: %d published in %d ConfigMaps, %d KiB, %d counted over",
		images, len(back.Images), 1+len(e.Parts), e.Size()>>10, back.Over)
	if len(e.Parts) != MaxParts || len(back.Images) == 0 || back.Over == 0 || len(back.Images)+back.Over != images || e.Over != back.Over {
		t.Fatalf("%d parts, %d images and %d over; want %d parts and %d in all", len(e.Parts), len(back.Images), back.Over, MaxParts, images)
	}
	for i, im := range back.Images {
		if im.Image != s.Images[i].Image {
			t.Fatalf("image %d is %s, want %s: the cut must keep the rank order", i, im.Image, s.Images[i].Image)
		}
	}
	// Cut as little as need be: the last part holds all it can.
	last := e.Parts[len(e.Parts)-1]
	one, _ := json.Marshal(s.Images[len(back.Images)])
	if n := expanded(t, last); n+len(one)+1 <= partJSONBytes && len(last) < MaxBytes-4<<10 {
		t.Errorf("the last part holds %d bytes expanded, %d compressed; one more image (%d bytes) would have fit", n, len(last), len(one))
	}
}

// expanded is the length of data decompressed.
func expanded(t *testing.T, data []byte) int {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, zr)
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// A set whose parts are missing, are not the ones its head names, or
// contradict it is refused whole; the first two as ErrPartMoved, which a
// reader reads again soon.
func TestDecodeRefusesParts(t *testing.T) {
	s := wideSet(3000)
	e, err := Encode(s)
	if err != nil || len(e.Parts) < 2 {
		t.Fatalf("%d parts, %v; want several", len(e.Parts), err)
	}
	other, err := Encode(wideSet(3001))
	if err != nil {
		t.Fatal(err)
	}
	var head Set
	if _, err := decodeJSON(e.Head, maxJSONBytes, &head); err != nil {
		t.Fatal(err)
	}
	// A head made to name a part whose images repeat the head's.
	dupPart, _, _ := encode(&part{V: version, Images: head.Images[:1]})
	dupHead := head
	sum := sha256.Sum256(dupPart)
	dupHead.Parts = []Part{{SHA256: hex.EncodeToString(sum[:]), Images: 1}}
	dup, _, _ := encode(&dupHead)
	tooMany := head
	tooMany.Parts = make([]Part, MaxParts+1)
	many, _, _ := encode(&tooMany)
	badHash := head
	badHash.Parts = []Part{{SHA256: "../../x", Images: 1}}
	bad, _, _ := encode(&badHash)
	wrongCount := dupHead
	wrongCount.Parts = []Part{{SHA256: dupHead.Parts[0].SHA256, Images: 2}}
	count, _, _ := encode(&wrongCount)

	for name, tc := range map[string]struct {
		head  []byte
		get   PartSource
		moved bool
		want  string
	}{
		"no reader of parts": {e.Head, nil, false, "not read"},
		"a part missing":     {e.Head, func(string, string) ([]Image, []byte, error) { return nil, nil, errors.New("not found") }, true, "not found"},
		"another set's part": {e.Head, other.getPart, true, "not the part the set names"},
		"images twice":       {dup, data(dupPart), false, "twice"},
		"too many parts":     {many, e.getPart, false, "more than 15"},
		"a bad hash":         {bad, e.getPart, false, "with hash"},
		"a wrong count":      {count, data(dupPart), false, "the set names it with 2"},
	} {
		_, err := Decode(tc.head, tc.get)
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrPartMoved) != tc.moved {
			t.Errorf("%s: %v; want an error saying %q (moved: %v)", name, err, tc.want, tc.moved)
		}
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
	out, _ := roundTrip(t, in)
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
		if _, err := Decode(tc.data, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error saying %q", name, err, tc.want)
		}
	}
}

// FuzzDecode: a published set is read from ConfigMaps anyone with write
// access to them may have written. Decode never panics, and what it
// accepts it writes again unchanged (a node that read it could publish it).
// The head is fuzzed, and one part its head names, with its hash.
func FuzzDecode(f *testing.F) {
	d := "sha256:" + strings.Repeat("a", 64)
	for _, s := range []string{
		`{"v":1,"images":[],"sources":[]}`,
		`{"v":1,"images":[{"image":"docker.io/library/a:1","origins":["x"],"digest":"` + d + `","since":1700000000}],"sources":[]}`,
		`{"v":1,"images":[{"image":"docker.io/library/a:1","origins":[],"unchecked":"the registry did not answer"}],"sources":[]}`,
		`{"v":1,"images":[{"image":"docker.io/library/a@` + d + `","origins":[],"digest":"` + d + `"}],"sources":[]}`,
	} {
		f.Add(gzipped(s), []byte(nil), uint8(0))
		f.Add([]byte(s), []byte(nil), uint8(0))
	}
	f.Add(gzipped(`{"v":1,"images":[],"sources":[]}`), gzipped(`{"v":1,"images":[{"image":"docker.io/library/b:1","origins":[]}]}`), uint8(1))
	f.Fuzz(func(t *testing.T, head, part []byte, images uint8) {
		if part != nil {
			// The head names part as its one part, with the right hash.
			var s Set
			if _, err := decodeJSON(head, maxJSONBytes, &s); err != nil {
				return
			}
			sum := sha256.Sum256(part)
			s.Parts = []Part{{SHA256: hex.EncodeToString(sum[:]), Images: int(images)}}
			head, _, _ = encode(&s)
		}
		s, err := Decode(head, data(part))
		if err != nil {
			return
		}
		e, err := Encode(s)
		if err != nil {
			t.Fatalf("a decoded set does not encode: %v", err)
		}
		s2, err := Decode(e.Head, e.getPart)
		if err != nil {
			t.Fatalf("a set written again does not decode: %v", err)
		}
		s.Parts, s2.Parts = nil, nil
		if !reflect.DeepEqual(s, s2) {
			t.Fatalf("the set changed when written again:\n%+v\n%+v", s, s2)
		}
	})
}
