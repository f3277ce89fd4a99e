package warden

import (
	"encoding/binary"
	"errors"
)

// ConfigMap is the ConfigMap, in the daemon's namespace, that holds
// Executable for each architecture under its GOARCH name. The installer
// writes it; a prefetch pod mounts the key of its node's architecture.
const ConfigMap = "image-cache-daemon-warden"

// Architectures are the keys of ConfigMap.
var Architectures = []string{"amd64", "arm64"}

// Executable returns, for a Linux architecture (GOARCH spelling), the
// smallest static program that does what a prefetch container needs of
// its entrypoint: exit 0 at once (the exit_group system call), whatever
// its arguments. It is a 132-byte ELF file: one loadable segment holding
// the headers and three instructions, no libc, no sections. Small enough
// to be shipped in a ConfigMap and mounted into every prefetch container,
// so prefetch pods need neither an init container nor an emptyDir (which
// would keep `kubectl drain` from evicting them).
func Executable(goarch string) ([]byte, error) {
	var machine uint16
	var code []byte
	switch goarch {
	case "amd64":
		machine = 62 // EM_X86_64
		code = []byte{
			0x31, 0xff, // xor edi, edi: status 0
			0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231: exit_group
			0x0f, 0x05, // syscall
		}
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
