package warden

import (
	"encoding/binary"
	"errors"
	"strconv"
	"time"
)

// ConfigMap is the ConfigMap, in the daemon's namespace, that holds
// Executable for each architecture under its GOARCH name. The installer
// writes it; a prefetch pod mounts the key of its node's architecture.
const ConfigMap = "image-cache-daemon-warden"

// Architectures are the keys of ConfigMap.
var Architectures = []string{"amd64", "arm64"}

// TerminationLog is where the kubelet reads a container's termination
// message from (the default terminationMessagePath), and where the amd64
// executable writes the time it started.
const TerminationLog = "/dev/termination-log"

// Executable returns, for a Linux architecture (GOARCH spelling), the
// smallest static program that does what a prefetch container needs of
// its entrypoint: exit 0 at once (the exit_group system call), whatever
// its arguments. On amd64 it first writes the time it started, in
// nanoseconds since the epoch, as its termination message (see StartTime):
// the daemon's pull pacing learns when the image's pull had ended to the
// nanosecond rather than to the second the kubelet reports. It is an ELF
// file of at most 256 bytes: one loadable segment holding the headers and
// the instructions, no libc, no sections. Small enough to be shipped in a
// ConfigMap and mounted into every prefetch container, so prefetch pods
// need neither an init container nor an emptyDir (which would keep
// `kubectl drain` from evicting them).
func Executable(goarch string) ([]byte, error) {
	var machine uint16
	var code []byte
	switch goarch {
	case "amd64":
		machine = 62 // EM_X86_64
		code = []byte{
			// The time, in nanoseconds since the epoch, as decimal
			// digits written backwards from rsp+40 down to r9.
			0x48, 0x83, 0xec, 0x30, // sub rsp, 48: a timespec and 40 bytes of digits
			0x31, 0xff, // xor edi, edi: CLOCK_REALTIME
			0x48, 0x89, 0xe6, // mov rsi, rsp
			0xb8, 0xe4, 0x00, 0x00, 0x00, // mov eax, 228: clock_gettime
			0x0f, 0x05, // syscall
			0x48, 0x8b, 0x04, 0x24, // mov rax, [rsp]: seconds
			0x48, 0x69, 0xc0, 0x00, 0xca, 0x9a, 0x3b, // imul rax, rax, 1000000000
			0x48, 0x03, 0x44, 0x24, 0x08, // add rax, [rsp+8]: nanoseconds
			0x4c, 0x8d, 0x44, 0x24, 0x28, // lea r8, [rsp+40]: end of the digits
			0x4d, 0x89, 0xc1, // mov r9, r8
			0xb9, 0x0a, 0x00, 0x00, 0x00, // mov ecx, 10
			0x31, 0xd2, // digit: xor edx, edx
			0x48, 0xf7, 0xf1, // div rcx
			0x80, 0xc2, 0x30, // add dl, '0'
			0x49, 0xff, 0xc9, // dec r9
			0x41, 0x88, 0x11, // mov [r9], dl
			0x48, 0x85, 0xc0, // test rax, rax
			0x75, 0xed, // jnz digit
			// open(TerminationLog, O_WRONLY): the file the kubelet made
			// and mounted, never one of its own (no O_CREAT).
			0x48, 0x8d, 0x3d, 0x2c, 0x00, 0x00, 0x00, // lea rdi, [rip+44]: the path after the code
			0xbe, 0x01, 0x00, 0x00, 0x00, // mov esi, 1: O_WRONLY
			0xb8, 0x02, 0x00, 0x00, 0x00, // mov eax, 2: open
			0x0f, 0x05, // syscall
			0x48, 0x85, 0xc0, // test rax, rax
			0x78, 0x12, // js exit: no file, no message
			0x89, 0xc7, // mov edi, eax: the descriptor
			0x4c, 0x89, 0xce, // mov rsi, r9
			0x4c, 0x89, 0xc2, // mov rdx, r8
			0x4c, 0x29, 0xca, // sub rdx, r9: the digits' length
			0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1: write
			0x0f, 0x05, // syscall
			0x31, 0xff, // exit: xor edi, edi: status 0, whatever happened above
			0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231: exit_group
			0x0f, 0x05, // syscall
		}
		code = append(append(code, TerminationLog...), 0)
	case "arm64":
		machine = 183 // EM_AARCH64
		code = le32(
			0xd2800000, // mov x0, #0: status 0
			0xd2800bc8, // mov x8, #94: exit_group
			0xd4000001, // svc #0
		)
	default:
		return nil, errors.New("no warden executable for architecture " + goarch + " (amd64 and arm64 are built in)")
	}
	const (
		base      = 0x400000 // load address, a multiple of every page size
		ehdrSize  = 64
		phdrSize  = 56
		headers   = ehdrSize + phdrSize
		pageAlign = 0x10000 // 64 KiB: valid with 4 KiB and 64 KiB pages
	)
	size := uint64(headers + len(code))
	b := make([]byte, 0, size)
	le := binary.LittleEndian
	// ELF header: 64-bit, little-endian, version 1, System V ABI.
	b = append(b, 0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	b = le.AppendUint16(b, 2) // ET_EXEC
	b = le.AppendUint16(b, machine)
	b = le.AppendUint32(b, 1)            // EV_CURRENT
	b = le.AppendUint64(b, base+headers) // entry: the first instruction
	b = le.AppendUint64(b, ehdrSize)     // program headers follow the ELF header
	b = le.AppendUint64(b, 0)            // no section headers
	b = le.AppendUint32(b, 0)            // flags
	b = le.AppendUint16(b, ehdrSize)     // header size
	b = le.AppendUint16(b, phdrSize)     // program header size
	b = le.AppendUint16(b, 1)            // one program header
	b = append(b, 0, 0, 0, 0, 0, 0)      // no section headers, no names
	// Program header: load the whole file, readable and executable.
	b = le.AppendUint32(b, 1) // PT_LOAD
	b = le.AppendUint32(b, 5) // PF_R | PF_X
	b = le.AppendUint64(b, 0) // from the start of the file
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, pageAlign)
	return append(b, code...), nil
}

func le32(words ...uint32) []byte {
	var b []byte
	for _, w := range words {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	return b
}

// StartTime reads the start time an executable wrote as a container's
// termination message, given the start the kubelet reports for that
// container, to the second, truncated. A message that is not such a time,
// or not within that second, says nothing: ok is false. (The runtime notes
// the start once the process runs, so the executable's own reading can
// fall in the second before, rarely: it is then not taken, to the cost of
// a second. Nor is a clock that runs apart from the node's, as a virtual
// machine's might, by more than that.)
func StartTime(message string, reported time.Time) (t time.Time, ok bool) {
	if message == "" || len(message) > 20 {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(message, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	t = time.Unix(0, ns)
	if t.Before(reported) || !t.Before(reported.Add(time.Second)) {
		return time.Time{}, false
	}
	return t, true
}
