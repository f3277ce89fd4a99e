// Package warden is the entrypoint of every image a prefetch pod pulls. An
// init container runs "warden install DIR" to copy the binary into a shared
// emptyDir; each image container then runs the copy, which exits 0 at once,
// having written the time it started as its termination message: by the
// time a container starts, the kubelet has its image, so there is nothing
// left to do. It depends on nothing in the image (no shell, no libc,
// no /etc/passwd), so it works in any Linux image and as any user.
//
// The package avoids fmt and other large packages: the binary stays well
// under 2 MiB, and it is copied into every prefetch pod.
package warden

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Main runs the warden with args (without the program name) and returns
// the exit code.
func Main(args []string, stderr io.Writer) int {
	if len(args) >= 1 && args[0] == "install" {
		if len(args) != 2 {
			_, _ = io.WriteString(stderr, "usage: warden install DIR\n")
			return 2
		}
		if err := Install(args[1]); err != nil {
			_, _ = io.WriteString(stderr, "warden: "+err.Error()+"\n")
			return 1
		}
		return 0
	}
	// Any other arguments are the image's own CMD, passed on by the kubelet.
	writeStartTime(TerminationLog, time.Now())
	return 0
}

// writeStartTime writes now, in nanoseconds since the epoch, into the
// termination message file at path if the kubelet made one (see
// StartTime); it never creates a file, and never fails the container.
func writeStartTime(path string, now time.Time) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	_, _ = f.WriteString(strconv.FormatInt(now.UnixNano(), 10))
	_ = f.Close()
}

// Install copies the running executable to DIR/warden, atomically: a
// container that starts while the copy is under way sees either nothing or
// the whole binary.
func Install(dir string) error {
	self, err := os.Executable()
	if err != nil {
		self = "/proc/self/exe"
	}
	src, err := os.Open(self)
	if err != nil {
		return errors.New("opening own executable: " + err.Error())
	}
	defer src.Close()
	tmp, err := os.CreateTemp(dir, ".warden-*")
	if err != nil {
		return errors.New("creating a file in " + dir + ": " + err.Error())
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return errors.New("copying to " + tmp.Name() + ": " + err.Error())
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return errors.New("making " + tmp.Name() + " executable: " + err.Error())
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return errors.New("syncing " + tmp.Name() + ": " + err.Error())
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	dst := filepath.Join(dir, "warden")
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return errors.New("renaming to " + dst + ": " + err.Error())
	}
	return nil
}
