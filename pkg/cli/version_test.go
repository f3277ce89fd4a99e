package cli

import (
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/dcherman/image-cache-daemon/pkg/version"
)

func TestVersionClientPrintsStampedVersion(t *testing.T) {
	saved := version.Version
	t.Cleanup(func() { version.Version = saved })
	version.Version = "v9.8.7"

	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	cmd := NewCmdImageCache(streams)
	cmd.SetArgs([]string{"version", "--client"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("version: %v", err)
	}
	if got, want := strings.TrimSpace(out.String()), "plugin: v9.8.7"; got != want {
		t.Fatalf("output = %q, want %q", got, want)
	}
}
