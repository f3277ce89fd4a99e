//go:build e2e

package e2e

import (
	"archive/tar"
	"slices"
	"testing"

	"github.com/dcherman/image-cache-daemon/internal/ociimage"
)

// TestProjectImage: the image the suite runs (built from the Dockerfile by
// buildah, make image) is what the Dockerfile promises: the daemon and the
// warden only, no shell, a non-root user, the daemon as entrypoint.
func TestProjectImage(t *testing.T) {
	ref := daemonImage(t)
	img, err := ociimage.Pull(t.Context(), ref)
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
	entries, err := ociimage.Entries(img)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for p, h := range entries {
		if h.Typeflag != tar.TypeDir {
			files = append(files, p)
		}
	}
	slices.Sort(files)
	if want := []string{"image-cache-daemon", "warden"}; !slices.Equal(files, want) {
		t.Errorf("the image holds %v, want only %v (no shell, no libc)", files, want)
	}
}
