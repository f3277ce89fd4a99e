package ociimage

import (
	"archive/tar"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

func TestFromFilesPushAndPull(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	img, err := FromFiles([]File{
		{Path: "/bin/tool", Mode: 0o755, Data: []byte("#!binary")},
		{Path: "/bin/alias", Symlink: "tool"},
		{Path: "/etc/conf", Data: []byte("x=1\n")},
	}, Config{Entrypoint: []string{"/bin/tool"}, User: "65532:65532"})
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/t/files:v1"
	digest, err := Push(context.Background(), img, ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := got.Digest(); d.String() != digest {
		t.Fatalf("pulled digest %s, pushed %s", d, digest)
	}
	cf, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture == "" || cf.Config.User != "65532:65532" || cf.Config.Entrypoint[0] != "/bin/tool" {
		t.Fatalf("config %+v / %+v", cf, cf.Config)
	}
	entries, err := Entries(got)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bin", "bin/tool", "bin/alias", "etc", "etc/conf"} {
		if entries[want] == nil {
			t.Errorf("layer lacks %s (has %v)", want, entries)
		}
	}
	if h := entries["bin/alias"]; h != nil && (h.Typeflag != tar.TypeSymlink || h.Linkname != "tool") {
		t.Errorf("bin/alias = %+v, want a symlink to tool", h)
	}
	if h := entries["bin/tool"]; h != nil && h.Mode != 0o755 {
		t.Errorf("bin/tool mode %o", h.Mode)
	}
}

func TestRandomIsDeterministicAndSized(t *testing.T) {
	a, err := Random(3<<20, 7, 2)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Random(3<<20, 7, 2)
	c, _ := Random(3<<20, 8, 2)
	da, _ := a.Digest()
	db, _ := b.Digest()
	dc, _ := c.Digest()
	if da != db {
		t.Errorf("same seed, digests %s and %s", da, db)
	}
	if da == dc {
		t.Errorf("different seeds, same digest %s", da)
	}
	layers, err := a.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("layers: %v, %d", err, len(layers))
	}
	var total int64
	for _, l := range layers {
		size, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		total += size
	}
	// Compressed, incompressible data stays about as large as it was.
	if total < 3<<20 {
		t.Errorf("compressed layers total %d bytes, want at least %d (incompressible)", total, 3<<20)
	}
}

func TestFromFilesRejectsBadInput(t *testing.T) {
	if _, err := FromFiles([]File{{Path: "/"}}, Config{}); err == nil {
		t.Error("a file at / was accepted")
	}
	if _, err := FromFiles([]File{{Path: "/x", HostPath: "/nonexistent/file"}}, Config{}); err == nil {
		t.Error("a missing host file was accepted")
	}
	if _, err := Random(0, 1, 1); err == nil {
		t.Error("a zero-size random image was accepted")
	}
}
