package warden

import (
	"bytes"
	"debug/elf"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// Each built-in executable is a valid static ELF program for its machine
// that starts at its code; the one for this machine exits 0 whatever its
// arguments, as an image's CMD would be passed.
func TestExecutable(t *testing.T) {
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		t.Run(arch, func(t *testing.T) {
			b, err := Executable(arch)
			if err != nil {
				t.Fatal(err)
			}
			f, err := elf.NewFile(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("not an ELF file: %v", err)
			}
			if f.Machine != machine || f.Type != elf.ET_EXEC || f.Class != elf.ELFCLASS64 || len(f.Progs) != 1 {
				t.Fatalf("machine %v type %v class %v, %d segments", f.Machine, f.Type, f.Class, len(f.Progs))
			}
			p := f.Progs[0]
			if p.Type != elf.PT_LOAD || p.Filesz != uint64(len(b)) || f.Entry < p.Vaddr || f.Entry >= p.Vaddr+p.Filesz || p.Flags&elf.PF_X == 0 {
				t.Fatalf("segment %+v, entry %#x", p.ProgHeader, f.Entry)
			}
			if len(b) > 256 {
				t.Errorf("%d bytes; it is meant to be tiny", len(b))
			}
			if arch != runtime.GOARCH || runtime.GOOS != "linux" {
				return
			}
			path := filepath.Join(t.TempDir(), "warden")
			if err := os.WriteFile(path, b, 0o555); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(path, "python", "-c", "print(1)").CombinedOutput(); err != nil {
				t.Fatalf("running it: %v %s", err, out)
			}
			if arch == "amd64" {
				testStartTime(t, b)
			}
		})
	}
	if _, err := Executable("riscv64"); err == nil {
		t.Error("an architecture without a built-in executable was accepted")
	}
}

// testStartTime runs the amd64 executable with its termination log at a
// path of the same length, made by the test as the kubelet makes it: the
// file then holds the time the program started, to the nanosecond.
func testStartTime(t *testing.T, b []byte) {
	log := fmt.Sprintf("/tmp/icdw%011d", rand.Int64N(1e11))
	if len(log) != len(TerminationLog) || bytes.Count(b, []byte(TerminationLog)) != 1 {
		t.Fatalf("cannot place the termination log at %s", log)
	}
	if err := os.WriteFile(log, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(log)
	exe := filepath.Join(t.TempDir(), "warden")
	if err := os.WriteFile(exe, bytes.Replace(b, []byte(TerminationLog), []byte(log), 1), 0o555); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if out, err := exec.Command(exe).CombinedOutput(); err != nil {
		t.Fatalf("running it: %v %s", err, out)
	}
	after := time.Now()
	msg, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	got := time.Unix(0, mustInt(t, string(msg)))
	if got.Before(before) || got.After(after) {
		t.Errorf("termination message %q: %v, want a time within [%v, %v]", msg, got, before, after)
	}
	if _, ok := StartTime(string(msg), got.Truncate(time.Second)); !ok {
		t.Errorf("termination message %q does not read", msg)
	}
}

// Only a time in nanoseconds, within the second the kubelet reports the
// container started in, is taken.
func TestStartTime(t *testing.T) {
	reported := time.Unix(1764100000, 0)
	for msg, want := range map[string]bool{
		"1764100000000000000": true,
		"1764100000999999999": true,
		"1764099999500000000": false, // read just before the runtime noted the start
		"1764100001000000000": false,
		"1764099998999999999": false,
		"":                    false,
		"warden":              false,
		"-1":                  false,
		"1764100000.5":        false,
	} {
		if got, ok := StartTime(msg, reported); ok != want || (ok && !got.Equal(time.Unix(0, mustInt(t, msg)))) {
			t.Errorf("StartTime(%q) = %v, %v; want ok %v", msg, got, ok, want)
		}
	}
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
