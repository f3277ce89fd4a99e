//go:build release

// Package release checks what ships: goreleaser builds every archive from
// goreleaser.yaml, plugins/krew.yaml is a valid krew manifest in step with
// what goreleaser generates, and krew itself installs the plugin from a
// locally built archive, offline, so that kubectl finds it.
//
// The tools come from hack/tools.sh ($ICD_TOOLS, make test-release sets it);
// kubectl from $KUBECTL or the PATH.
package release

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"sigs.k8s.io/yaml"

	"github.com/dcherman/image-cache-daemon/internal/ociimage"
)

// repoRoot is the repository this test belongs to.
const repoRoot = "../.."

// tool returns the path of a release tool installed by hack/tools.sh.
func tool(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("ICD_TOOLS")
	if dir == "" {
		t.Fatal("ICD_TOOLS is not set: run these tests through make test-release, which installs the tools with hack/tools.sh")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s: %v (hack/tools.sh installs it)", name, err)
	}
	return p
}

// run runs a command in dir and fails the test with its output when it fails.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

var (
	distOnce sync.Once
	workDir  string
	distDir  string
	distErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if workDir != "" {
		os.RemoveAll(workDir)
	}
	os.Exit(code)
}

// snapshot runs `goreleaser release --snapshot` once on a copy of the working
// tree (committed or not) and returns its dist directory.
func snapshot(t *testing.T) string {
	t.Helper()
	goreleaser := tool(t, "goreleaser")
	distOnce.Do(func() {
		distDir, distErr = buildSnapshot(goreleaser)
	})
	if distErr != nil {
		t.Fatal(distErr)
	}
	return distDir
}

func buildSnapshot(goreleaser string) (string, error) {
	src, err := filepath.Abs(repoRoot)
	if err != nil {
		return "", err
	}
	work, err := os.MkdirTemp("", "icd-release-")
	if err != nil {
		return "", err
	}
	workDir = work
	// The working tree as git sees it (tracked and new files, not ignored ones)
	// in a repository of its own: goreleaser reads the commit and wants a
	// remote, and the check must cover changes not committed yet.
	ls := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	ls.Dir = src
	list, err := ls.Output()
	if err != nil {
		return "", fmt.Errorf("git ls-files: %w", err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		if _, err := os.Stat(filepath.Join(src, f)); os.IsNotExist(err) {
			continue // deleted, not yet committed
		}
		if err := copyFile(filepath.Join(src, f), filepath.Join(work, f)); err != nil {
			return "", err
		}
	}
	steps := [][]string{
		{"git", "init", "-q", "-b", "main"},
		{"git", "add", "-A"},
		{"git", "-c", "user.name=release-test", "-c", "user.email=release-test@localhost", "commit", "-q", "-m", "snapshot"},
		{"git", "remote", "add", "origin", "https://github.com/dcherman/image-cache-daemon.git"},
		{goreleaser, "check"},
		{goreleaser, "release", "--snapshot", "--clean", "--skip=publish"},
	}
	for _, s := range steps {
		cmd := exec.Command(s[0], s[1:]...)
		cmd.Dir = work
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("%s: %w\n%s", strings.Join(s, " "), err, out)
		}
	}
	return filepath.Join(work, "dist"), nil
}

func copyFile(from, to string) error {
	info, err := os.Lstat(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	if info.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(from)
		if err != nil {
			return err
		}
		return os.Symlink(target, to)
	}
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, info.Mode().Perm())
}

// TestArchives: every platform's archive is there, krew-shaped, listed in the
// checksums with its real digest, and the binaries carry the version.
func TestArchives(t *testing.T) {
	dist := snapshot(t)
	sums := checksums(t, filepath.Join(dist, "checksums.txt"))

	var want []string
	for _, os := range []string{"linux", "darwin", "windows"} {
		for _, arch := range []string{"amd64", "arm64"} {
			ext := ".tar.gz"
			if os == "windows" {
				ext = ".zip"
			}
			want = append(want, "kubectl-imagecache_*_"+os+"_"+arch+ext)
		}
	}
	for _, arch := range []string{"amd64", "arm64"} {
		want = append(want, "image-cache-daemon_*_linux_"+arch+".tar.gz")
	}
	for _, pattern := range want {
		matches, _ := filepath.Glob(filepath.Join(dist, pattern))
		if len(matches) != 1 {
			t.Errorf("%s: %d archives, want 1", pattern, len(matches))
			continue
		}
		name := filepath.Base(matches[0])
		if got, want := sums[name], fileSHA256(t, matches[0]); got != want {
			t.Errorf("checksums.txt: %s = %q, want %s", name, got, want)
		}
		files := archiveFiles(t, matches[0])
		var bins []string
		switch {
		case strings.HasPrefix(name, "kubectl-imagecache_") && strings.Contains(name, "windows"):
			bins = []string{"kubectl-imagecache.exe"}
		case strings.HasPrefix(name, "kubectl-imagecache_"):
			bins = []string{"kubectl-imagecache"}
		default:
			bins = []string{"image-cache-daemon", "warden", "manifests/install.yaml"}
		}
		for _, b := range append(bins, "README.md") {
			if !slices.Contains(files, b) {
				t.Errorf("%s holds %v, want %s at its root", name, files, b)
			}
		}
	}
	// The Helm chart of the release, of the snapshot's version, listed with
	// its real digest; its appVersion is the image tag the binaries carry.
	charts, _ := filepath.Glob(filepath.Join(dist, "..", "build", "chart", "image-cache-daemon-*-next.tgz"))
	if len(charts) != 1 {
		t.Errorf("chart archives %v, want one of the snapshot's version", charts)
	} else if name := filepath.Base(charts[0]); sums[name] != fileSHA256(t, charts[0]) {
		t.Errorf("checksums.txt: %s = %q, want %s", name, sums[name], fileSHA256(t, charts[0]))
	} else {
		c, err := loader.Load(charts[0])
		if err != nil || c.Metadata.AppVersion != "v"+c.Metadata.Version || !strings.HasSuffix(name, "-"+c.Metadata.Version+".tgz") {
			t.Errorf("chart %s: %v, %v", name, c, err)
		}
	}
	if len(sums) != len(want)+1 {
		t.Errorf("checksums.txt lists %d files, want the %d archives and the chart", len(sums), len(want))
	}

	// The plugin built for this machine runs and prints the stamped version.
	bin := hostPluginBinary(t, dist)
	out := run(t, "", nil, bin, "version", "--client")
	if !strings.Contains(out, "next") {
		t.Errorf("version --client printed %q, want the snapshot version (…-next) stamped by goreleaser", out)
	}
}

// hostPluginBinary is the plugin goreleaser built for this machine's platform.
func hostPluginBinary(t *testing.T, dist string) string {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(dist, "kubectl-imagecache_"+runtime.GOOS+"_"+runtime.GOARCH+"*", "kubectl-imagecache"))
	if len(matches) != 1 {
		t.Fatalf("no plugin binary for %s/%s in %s", runtime.GOOS, runtime.GOARCH, dist)
	}
	return matches[0]
}

// TestReleaseImage builds the project image from goreleaser's linux
// binaries with the Dockerfile (hack/image.sh, buildah), as a release does:
// one manifest list, an image per platform, each holding that platform's
// daemon and warden, non-root, no shell.
func TestReleaseImage(t *testing.T) {
	dist := snapshot(t)
	out := t.TempDir()
	args := []string{"ghcr.io/dcherman/image-cache-daemon:test", "oci:" + out}
	arches := []string{"amd64", "arm64"}
	for _, arch := range arches {
		daemon, _ := filepath.Glob(filepath.Join(dist, "image-cache-daemon_linux_"+arch+"*"))
		warden, _ := filepath.Glob(filepath.Join(dist, "warden_linux_"+arch+"*"))
		if len(daemon) != 1 || len(warden) != 1 {
			t.Fatalf("linux/%s: binaries %v %v, want one directory each", arch, daemon, warden)
		}
		args = append(args, "linux/"+arch+"="+daemon[0]+","+warden[0])
	}
	run(t, "", nil, filepath.Join(repoRoot, "hack", "image.sh"), args...)

	layoutIndex, err := layout.ImageIndexFromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	top, err := layoutIndex.IndexManifest()
	if err != nil || len(top.Manifests) != 1 {
		t.Fatalf("oci layout holds %v (%v), want one manifest list", top, err)
	}
	list, err := layoutIndex.ImageIndex(top.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := list.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	var got []string
	for _, m := range im.Manifests {
		if m.Platform == nil {
			t.Fatalf("manifest %s has no platform", m.Digest)
		}
		arch := m.Platform.Architecture
		got = append(got, m.Platform.OS+"/"+arch)
		img, err := list.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Architecture != arch || cfg.Config.User != "65532:65532" || !slices.Equal(cfg.Config.Entrypoint, []string{"/image-cache-daemon"}) {
			t.Errorf("linux/%s: config arch %s, user %q, entrypoint %v", arch, cfg.Architecture, cfg.Config.User, cfg.Config.Entrypoint)
		}
		files := imageFiles(t, img)
		if len(files) != 2 || files["image-cache-daemon"] == nil || files["warden"] == nil {
			t.Errorf("linux/%s holds %d files, want only image-cache-daemon and warden", arch, len(files))
		}
		for name, b := range files {
			f, err := elf.NewFile(bytes.NewReader(b))
			if err != nil {
				t.Errorf("linux/%s: %s is not an ELF binary: %v", arch, name, err)
				continue
			}
			if f.Machine != machines[arch] {
				t.Errorf("linux/%s: %s is built for %s", arch, name, f.Machine)
			}
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("platforms %v, want linux/amd64 and linux/arm64", got)
	}
}

// imageFiles returns the regular files of an image's file system.
func imageFiles(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	entries, err := ociimage.Entries(img)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for p, e := range entries {
		if e.Typeflag == tar.TypeReg {
			files[p] = e.Data
		}
	}
	return files
}

// TestKrewManifestValid: plugins/krew.yaml passes krew's own validation.
func TestKrewManifestValid(t *testing.T) {
	validate := tool(t, "validate-krew-manifest")
	// The validator insists that the file is named after the plugin.
	dir := t.TempDir()
	manifest := filepath.Join(dir, "imagecache.yaml")
	if err := copyFile(filepath.Join(repoRoot, "plugins", "krew.yaml"), manifest); err != nil {
		t.Fatal(err)
	}
	run(t, "", nil, validate, "-manifest", manifest, "-skip-install")
}

// TestKrewManifestMatchesGoreleaser: plugins/krew.yaml says what goreleaser
// generates from goreleaser.yaml (platforms, archive names, binary, texts), so
// the two cannot drift apart. Only the version, URLs and digests differ,
// which belong to a release.
func TestKrewManifestMatchesGoreleaser(t *testing.T) {
	dist := snapshot(t)
	generated := readManifest(t, filepath.Join(dist, "krew", "imagecache.yaml"))
	checkedIn := readManifest(t, filepath.Join(repoRoot, "plugins", "krew.yaml"))
	g, c := release(generated), release(checkedIn)
	if g != c {
		t.Errorf("plugins/krew.yaml differs from goreleaser's dist/krew/imagecache.yaml beyond version, uri and sha256:\n--- plugins/krew.yaml\n%s\n--- generated\n%s", c, g)
	}
	version, _ := checkedIn["spec"].(map[string]any)["version"].(string)
	for _, p := range platforms(checkedIn) {
		uri, _ := p["uri"].(string)
		want := "https://github.com/dcherman/image-cache-daemon/releases/download/" + version + "/kubectl-imagecache_" + version + "_"
		if !strings.HasPrefix(uri, want) {
			t.Errorf("plugins/krew.yaml: uri %s, want it under %s (the release named by spec.version)", uri, want)
		}
	}
}

// TestKrewInstall installs the plugin with krew from the archive goreleaser
// built, with plugins/krew.yaml (its digest for this platform set to the
// local archive's), and runs it as `kubectl imagecache` through kubectl's
// plugin discovery.
func TestKrewInstall(t *testing.T) {
	krew := tool(t, "krew")
	kubectl := os.Getenv("KUBECTL")
	if kubectl == "" {
		var err error
		if kubectl, err = exec.LookPath("kubectl"); err != nil {
			t.Fatal("kubectl not found: set KUBECTL or put it on the PATH (make test-release does)")
		}
	}
	dist := snapshot(t)
	archives, _ := filepath.Glob(filepath.Join(dist, "kubectl-imagecache_*_"+runtime.GOOS+"_"+runtime.GOARCH+".tar.gz"))
	if len(archives) != 1 {
		t.Fatalf("no plugin archive for %s/%s in %s", runtime.GOOS, runtime.GOARCH, dist)
	}
	archive := archives[0]

	manifest := readManifest(t, filepath.Join(repoRoot, "plugins", "krew.yaml"))
	found := false
	for _, p := range platforms(manifest) {
		labels, _ := p["selector"].(map[string]any)["matchLabels"].(map[string]any)
		if labels["os"] == runtime.GOOS && labels["arch"] == runtime.GOARCH {
			p["sha256"] = fileSHA256(t, archive)
			found = true
		}
	}
	if !found {
		t.Fatalf("plugins/krew.yaml has no platform for %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	b, err := yaml.Marshal(manifest)
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(t.TempDir(), "imagecache.yaml")
	if err := os.WriteFile(local, b, 0o644); err != nil {
		t.Fatal(err)
	}

	root := t.TempDir()
	// Only krew's bin on the PATH: kubectl finds the plugin there, and no
	// other kubectl-imagecache of this machine (which kubectl plugin list
	// would warn about, exiting 1) gets in the way.
	env := []string{"KREW_ROOT=" + root, "PATH=" + filepath.Join(root, "bin")}
	run(t, "", env, krew, "install", "--manifest="+local, "--archive="+archive)

	plugins := run(t, "", env, kubectl, "plugin", "list", "--name-only")
	if !strings.Contains(plugins, "kubectl-imagecache") {
		t.Errorf("kubectl plugin list does not show kubectl-imagecache:\n%s", plugins)
	}
	out := run(t, "", env, kubectl, "imagecache", "version", "--client")
	if !strings.Contains(out, "next") {
		t.Errorf("kubectl imagecache version --client printed %q, want the snapshot version", out)
	}
	// kubectl completes the plugin through the shim the README shows, which
	// runs kubectl from the PATH (kubectl's own directory holds no plugin).
	shim := filepath.Join(root, "bin", "kubectl_complete-imagecache")
	if err := os.WriteFile(shim, []byte("#!/bin/sh\nexec kubectl imagecache __complete \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	withKubectl := []string{"KREW_ROOT=" + root, "PATH=" + filepath.Join(root, "bin") + string(os.PathListSeparator) + filepath.Dir(kubectl)}
	if got := run(t, "", withKubectl, kubectl, "__complete", "imagecache", "status", "-o", ""); !strings.Contains(got, "wide\njson\nyaml\n") {
		t.Errorf("kubectl __complete imagecache status -o '' printed %q, want wide, json and yaml", got)
	}
	help := run(t, "", env, kubectl, "imagecache", "--help")
	for _, c := range []string{"install", "add", "remove", "list", "status", "uninstall", "version"} {
		if !strings.Contains(help, "  "+c+" ") {
			t.Errorf("kubectl imagecache --help does not list %q:\n%s", c, help)
		}
	}
}

func readManifest(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func platforms(m map[string]any) []map[string]any {
	spec, _ := m["spec"].(map[string]any)
	list, _ := spec["platforms"].([]any)
	var out []map[string]any
	for _, p := range list {
		if pm, ok := p.(map[string]any); ok {
			out = append(out, pm)
		}
	}
	return out
}

// release renders a manifest without what one release changes: the version,
// and each platform's uri and sha256 (kept: the archive's file name pattern).
func release(m map[string]any) string {
	b, _ := yaml.Marshal(m)
	var c map[string]any
	_ = yaml.Unmarshal(b, &c)
	delete(c["spec"].(map[string]any), "version")
	for _, p := range platforms(c) {
		// .../releases/download/TAG/kubectl-imagecache_TAG_OS_ARCH.tar.gz
		uri, _ := p["uri"].(string)
		tag := path.Base(path.Dir(uri))
		p["uri"] = strings.ReplaceAll(uri, tag, "TAG")
		delete(p, "sha256")
	}
	out, _ := yaml.Marshal(c)
	return string(out)
}

func checksums(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("checksums.txt: malformed line %q", line)
		}
		sums[f[1]] = f[0]
	}
	return sums
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// archiveFiles lists the regular files of a .tar.gz or .zip archive.
func archiveFiles(t *testing.T, path string) []string {
	t.Helper()
	var names []string
	if strings.HasSuffix(path, ".zip") {
		z, err := zip.OpenReader(path)
		if err != nil {
			t.Fatal(err)
		}
		defer z.Close()
		for _, f := range z.File {
			if !f.FileInfo().IsDir() {
				names = append(names, f.Name)
			}
		}
		return names
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Typeflag == tar.TypeReg {
			names = append(names, h.Name)
		}
	}
}
