package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// manifests/install.yaml is what `install --dry-run=client -o yaml` prints
// for the release image: the two cannot drift apart. Regenerate with
// go test ./pkg/cli -run TestInstallManifest -update
func TestInstallManifest(t *testing.T) {
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	cmd := NewCmdImageCache(streams)
	cmd.SetArgs([]string{"install", "--dry-run=client", "-o", "yaml", "--image", "ghcr.io/dcherman/image-cache-daemon:latest"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	golden(t, filepath.Join("..", "..", "manifests", "install.yaml"), out.Bytes())
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date (run go test ./pkg/cli -update):\n--- got\n%s", path, got)
	}
}
