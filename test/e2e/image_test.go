//go:build e2e

package e2e

import (
	"archive/tar"
	"io"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestProjectImage: the image the suite runs (built from the Dockerfile by
// buildah, make image) is what the Dockerfile promises: the daemon and the
// warden only, no shell, a non-root user, the daemon as entrypoint.
func TestProjectImage(t *testing.T) {
	ref, err := name.ParseReference(daemonImage(t), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("reading %s from the registry: %v", ref, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (non-root)", cfg.Config.User)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/image-cache-daemon"}) {
		t.Errorf("entrypoint %v, want [/image-cache-daemon]", cfg.Config.Entrypoint)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var files []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeDir {
			files = append(files, h.Name)
		}
	}
	slices.Sort(files)
	if want := []string{"image-cache-daemon", "warden"}; !slices.Equal(files, want) {
		t.Errorf("the image holds %v, want only %v (no shell, no libc)", files, want)
	}
}
