// Package chartrelease packages the Helm chart of a release and pushes it
// to an OCI registry, with Helm's own libraries: the chart archive carries
// the release's version, and its appVersion is the tag of the release's
// image, which the chart installs by default.
package chartrelease

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/Masterminds/semver/v3"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/registry"

	"github.com/dcherman/image-cache-daemon/pkg/install"
)

// Package writes the chart archive of release version (1.2.3 or v1.2.3;
// a semantic version) into dir and returns its path: chart version 1.2.3,
// appVersion v1.2.3, the image tag of the release.
func Package(version, dir string) (string, error) {
	v, err := semver.StrictNewVersion(strings.TrimPrefix(version, "v"))
	if err != nil {
		return "", fmt.Errorf("release version %q: %w", version, err)
	}
	loaded, err := install.Chart()
	if err != nil {
		return "", err
	}
	// A copy: the loaded chart is the one the plugin renders.
	c := *loaded
	md := *loaded.Metadata
	md.Version, md.AppVersion = v.String(), "v"+v.String()
	c.Metadata = &md
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return chartutil.Save(&c, dir)
}

// Push pushes the chart archive at path to the OCI repository repo (as in
// oci://ghcr.io/dcherman/charts; the chart's name and version are added as
// Helm does) and returns the reference it pushed, with its digest.
// plainHTTP is for a registry without TLS, such as the local cluster's.
func Push(path, repo string, plainHTTP bool) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	c, err := loader.LoadArchive(bytes.NewReader(data))
	if err != nil {
		return "", fmt.Errorf("%s is not a chart archive: %w", path, err)
	}
	var opts []registry.ClientOption
	if plainHTTP {
		opts = append(opts, registry.ClientOptPlainHTTP())
	}
	client, err := registry.NewClient(opts...)
	if err != nil {
		return "", err
	}
	ref := fmt.Sprintf("%s/%s:%s", strings.TrimSuffix(strings.TrimPrefix(repo, "oci://"), "/"), c.Name(), c.Metadata.Version)
	res, err := client.Push(data, ref, registry.PushOptStrictMode(true))
	if err != nil {
		return "", fmt.Errorf("pushing %s to %s: %w", path, ref, err)
	}
	return ref + "@" + res.Manifest.Digest, nil
}
