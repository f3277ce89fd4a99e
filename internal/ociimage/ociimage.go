// Package ociimage builds container images without Docker (on an empty base,
// from files and synthetic layers) and pushes them to a registry. The test
// harness uses it for the pause image, the alpine stand-in, the project
// image and test images of chosen sizes.
package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// File is one entry of an image layer.
type File struct {
	// Path in the image, absolute.
	Path string
	// Mode bits; 0644 when zero.
	Mode int64
	// Contents: Data, or else the file at HostPath.
	Data     []byte
	HostPath string
	// Symlink, when set, makes the entry a symbolic link to this target.
	Symlink string
}

// Config is the image configuration that matters to a container runtime.
type Config struct {
	Entrypoint []string
	Cmd        []string
	User       string
	Env        []string
}

// epoch is the timestamp of every entry, so that the same inputs give the
// same digest.
var epoch = time.Unix(0, 0).UTC()

// FromFiles returns an image of one layer holding files, on an empty base,
// for linux on this machine's architecture.
func FromFiles(files []File, cfg Config) (v1.Image, error) {
	layer, err := filesLayer(files)
	if err != nil {
		return nil, err
	}
	return withConfig([]v1.Layer{layer}, cfg)
}

func filesLayer(files []File) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	for _, f := range sorted {
		p := strings.TrimPrefix(path.Clean(f.Path), "/")
		if p == "" || p == "." {
			return nil, fmt.Errorf("file path %q is not a file", f.Path)
		}
		// Parent directories first, as runtimes expect them.
		if err := writeParents(tw, p, dirs); err != nil {
			return nil, err
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if f.Symlink != "" {
			if err := tw.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeSymlink, Linkname: f.Symlink, Mode: 0o777, ModTime: epoch}); err != nil {
				return nil, fmt.Errorf("adding symlink %s: %w", f.Path, err)
			}
			continue
		}
		data := f.Data
		if data == nil && f.HostPath != "" {
			b, err := os.ReadFile(f.HostPath)
			if err != nil {
				return nil, fmt.Errorf("reading %s for %s: %w", f.HostPath, f.Path, err)
			}
			data = b
		}
		hdr := &tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(data)), ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("adding %s: %w", f.Path, err)
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("adding %s: %w", f.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// writeParents writes directory entries for p's parents not written yet.
func writeParents(tw *tar.Writer, p string, written map[string]bool) error {
	var parents []string
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		parents = append([]string{d}, parents...)
	}
	for _, d := range parents {
		if written[d+"/"] {
			continue
		}
		written[d+"/"] = true
		if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}); err != nil {
			return fmt.Errorf("adding directory %s: %w", d, err)
		}
	}
	return nil
}

// Append returns img with one more layer holding files.
func Append(img v1.Image, files []File) (v1.Image, error) {
	layer, err := filesLayer(files)
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(img, layer)
}

// Random returns a synthetic image of about size bytes of incompressible
// data in layers layers, the same for the same seed (so its digest is
// stable across runs) and new for another seed. Layer data is regenerated
// from the seed whenever it is read, never held in memory.
func Random(size int64, seed uint64, layers int) (v1.Image, error) {
	if size <= 0 {
		return nil, fmt.Errorf("image size %d must be positive", size)
	}
	if layers < 1 {
		layers = 1
	}
	per := size / int64(layers)
	var ls []v1.Layer
	for i := 0; i < layers; i++ {
		n := per
		if i == layers-1 {
			n = size - per*int64(layers-1)
		}
		layerSeed, index, length := seed, i, n
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return randomTar(layerSeed, index, length), nil
		}, tarball.WithCompressionLevel(1))
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		ls = append(ls, l)
	}
	return withConfig(ls, Config{})
}

// randomTar streams a tar holding one file /data/blob-INDEX of n bytes
// drawn from a generator seeded with (seed, index).
func randomTar(seed uint64, index int, n int64) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch})
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data/blob-%d", index), Typeflag: tar.TypeReg, Mode: 0o644, Size: n, ModTime: epoch})
		}
		if err == nil {
			var key [32]byte
			for i := 0; i < 8; i++ {
				key[i] = byte(seed >> (8 * i))
			}
			key[8] = byte(index)
			_, err = io.CopyN(tw, rand.NewChaCha8(key), n)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

func withConfig(layers []v1.Layer, cfg Config) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, fmt.Errorf("adding layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	// containerd refuses an image whose config names no platform.
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = cfg.Entrypoint
	cf.Config.Cmd = cfg.Cmd
	cf.Config.User = cfg.User
	cf.Config.Env = cfg.Env
	return mutate.ConfigFile(img, cf)
}

// Push pushes img to ref on a plain-HTTP registry (the local test registry)
// and returns the pushed digest.
func Push(ctx context.Context, img v1.Image, ref string) (string, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", errors.Join(fmt.Errorf("digest of %s", ref), err)
	}
	return d.String(), nil
}

// Pull reads an image from a registry that may speak plain HTTP (the local one).
func Pull(ctx context.Context, ref string) (v1.Image, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return nil, err
	}
	return remote.Image(r, remote.WithContext(ctx))
}

// Entry is one file system entry of an image, with a regular file's content.
type Entry struct {
	*tar.Header
	Data []byte
}

// Entries returns the entries of an image's flattened file system, by path.
func Entries(img v1.Image) (map[string]*Entry, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	entries := map[string]*Entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return entries, nil
		}
		if err != nil {
			return nil, err
		}
		e := &Entry{Header: h}
		if h.Typeflag == tar.TypeReg {
			if e.Data, err = io.ReadAll(tr); err != nil {
				return nil, err
			}
		}
		entries[h.Name] = e
	}
}
