package chartrelease

import (
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/loader"

	"github.com/dcherman/image-cache-daemon/pkg/install"
)

// The archive of release v1.2.3 is chart 1.2.3 of appVersion v1.2.3 (the
// release image's tag), holds every file of the chart, and leaves the chart
// the plugin renders as it was.
func TestPackage(t *testing.T) {
	path, err := Package("v1.2.3", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := loader.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name() != "image-cache-daemon" || c.Metadata.Version != "1.2.3" || c.Metadata.AppVersion != "v1.2.3" {
		t.Errorf("chart %s %s, appVersion %s", c.Name(), c.Metadata.Version, c.Metadata.AppVersion)
	}
	if c.Schema == nil || len(c.Templates) < 7 || len(c.Files) < 3 {
		t.Errorf("the archive lacks files: schema %d bytes, %d templates, %d files", len(c.Schema), len(c.Templates), len(c.Files))
	}
	embedded, _ := install.Chart()
	if embedded.Metadata.AppVersion != "dev" {
		t.Errorf("packaging changed the embedded chart: appVersion %s", embedded.Metadata.AppVersion)
	}
	for _, bad := range []string{"1.2", "latest", "v1.2.3.4"} {
		if _, err := Package(bad, t.TempDir()); err == nil {
			t.Errorf("release version %q accepted", bad)
		}
	}
}
