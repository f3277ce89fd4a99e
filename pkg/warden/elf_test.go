package warden

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
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
		})
	}
	if _, err := Executable("riscv64"); err == nil {
		t.Error("an architecture without a built-in executable was accepted")
	}
}
