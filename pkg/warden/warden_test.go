package warden

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestMainExitsZeroWithAnyArguments(t *testing.T) {
	for _, args := range [][]string{nil, {"/bin/sh", "-c", "sleep 100"}, {"--help"}} {
		var stderr bytes.Buffer
		if code := Main(args, &stderr); code != 0 {
			t.Errorf("Main(%q) = %d, want 0 (stderr %q)", args, code, stderr.String())
		}
	}
}

func TestInstallUsage(t *testing.T) {
	var stderr bytes.Buffer
	if code := Main([]string{"install"}, &stderr); code != 2 || stderr.Len() == 0 {
		t.Errorf("install without DIR: code %d, stderr %q; want 2 and a usage line", code, stderr.String())
	}
	if code := Main([]string{"install", filepath.Join(t.TempDir(), "missing")}, &stderr); code != 1 {
		t.Errorf("install into a missing directory: code %d, want 1", code)
	}
}

// The release build of the warden: small, static, and its installed copy runs.
func TestBuiltBinary(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "warden")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "github.com/dcherman/image-cache-daemon/cmd/warden")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("warden binary: %d bytes (%.2f MiB)", fi.Size(), float64(fi.Size())/(1<<20))
	if fi.Size() >= 2<<20 {
		t.Errorf("warden is %d bytes, want under 2 MiB", fi.Size())
	}

	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "install", shared).CombinedOutput(); err != nil {
		t.Fatalf("warden install: %v\n%s", err, out)
	}
	installed := filepath.Join(shared, "warden")
	fi, err = os.Stat(installed)
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("installed copy: %v, mode %v", err, fi.Mode())
	}
	if out, err := exec.Command(installed, "the", "image's", "cmd").CombinedOutput(); err != nil {
		t.Fatalf("running the installed copy: %v\n%s", err, out)
	}
	entries, _ := os.ReadDir(shared)
	if len(entries) != 1 {
		t.Errorf("shared dir holds %d entries, want only warden (no temp file left)", len(entries))
	}
}

// The Go warden writes its start time where the kubelet reads the
// termination message, and creates no file where there is none.
func TestWriteStartTime(t *testing.T) {
	log := filepath.Join(t.TempDir(), "termination-log")
	now := time.Unix(1764100000, 123456789)
	writeStartTime(log, now)
	if _, err := os.Stat(log); !os.IsNotExist(err) {
		t.Fatalf("a file was created: %v", err)
	}
	if err := os.WriteFile(log, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	writeStartTime(log, now)
	msg, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := StartTime(string(msg), now.Truncate(time.Second)); !ok || !got.Equal(now) {
		t.Errorf("message %q reads %v %v, want %v", msg, got, ok, now)
	}
}
