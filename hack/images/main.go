// Command images builds the images of the test harness without Docker and
// pushes them to the local registry. Each subcommand prints the pushed
// reference with its digest (REF@sha256:...).
//
//	images pause   --registry R                     R/pause:3.10, the sandbox image
//	images alpine  --registry R                     R/library/alpine:latest, a busybox stand-in
//	images random  --registry R --size 64Mi --seed 1 [--layers 1] --name test/random-64m:v1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/dcherman/image-cache-daemon/internal/ociimage"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: images pause|alpine|random [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	registry := fs.String("registry", "127.0.0.1:5000", "registry to push to")
	size := fs.String("size", "1Mi", "random: image size (Ki, Mi, Gi suffixes)")
	seed := fs.Uint64("seed", 1, "random: content seed (same seed, same digest)")
	layers := fs.Int("layers", 1, "random: number of layers")
	name := fs.String("name", "", "random: repository:tag under the registry")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}

	var img v1.Image
	var ref string
	var err error
	switch args[0] {
	case "pause":
		ref = *registry + "/pause:3.10"
		img, err = pause()
	case "alpine":
		ref = *registry + "/library/alpine:latest"
		img, err = alpine()
	case "random":
		if *name == "" {
			return errors.New("random: --name is required")
		}
		var n int64
		if n, err = parseSize(*size); err == nil {
			ref = *registry + "/" + *name
			img, err = ociimage.Random(n, *seed, *layers)
		}
	default:
		return fmt.Errorf("unknown subcommand %q: want pause, alpine or random", args[0])
	}
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	digest, err := ociimage.Push(ctx, img, ref)
	if err != nil {
		return err
	}
	fmt.Printf("%s@%s\n", ref, digest)
	return nil
}

// pause builds hack/pause statically and wraps it in an image.
func pause() (v1.Image, error) {
	dir, err := os.MkdirTemp("", "pause")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "pause")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "github.com/dcherman/image-cache-daemon/hack/pause")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the pause binary: %w\n%s", err, b)
	}
	return ociimage.FromFiles([]ociimage.File{{Path: "/pause", Mode: 0o755, HostPath: out}},
		ociimage.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"})
}

// alpine is a stand-in for docker.io/library/alpine: this machine reaches no
// public registry. Debian's static busybox, with a link under /bin for each
// applet, so that `image: alpine` with a shell command works.
func alpine() (v1.Image, error) {
	const busybox = "/bin/busybox"
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("running %s (install Debian's busybox-static): %w", busybox, err)
	}
	files := []ociimage.File{
		{Path: "/bin/busybox", Mode: 0o755, HostPath: busybox},
		{Path: "/etc/os-release", Data: []byte("NAME=\"busybox stand-in for alpine\"\n" +
			"PRETTY_NAME=\"busybox stand-in for alpine, built by the image-cache-daemon test harness\"\n" +
			"ID=alpine\n")},
		{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")},
		{Path: "/tmp/.keep", Data: []byte{}},
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		files = append(files, ociimage.File{Path: "/bin/" + applet, Symlink: "busybox"})
	}
	return ociimage.FromFiles(files, ociimage.Config{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}})
}

// parseSize reads 512, 64Ki, 64Mi, 1Gi.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number with an optional Ki, Mi or Gi suffix", s)
	}
	return n * mult, nil
}
