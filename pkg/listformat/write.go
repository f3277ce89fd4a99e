package listformat

import (
	"fmt"
	"strings"
)

// Render writes a list as the YAML the ConfigMap holds, one entry a line,
// each in double quotes. Quoting is what makes every reference read back as
// written: "[::1]:5000/app:v1" unquoted is a YAML flow list, and "yes" or
// "1.10" would be a boolean or a number. The quoted form is also how JSON
// writes a string, so the list is as readable as before.
func Render(images []string) string {
	if len(images) == 0 {
		return "[]\n"
	}
	var b strings.Builder
	for _, img := range images {
		b.WriteString("- ")
		writeQuoted(&b, img)
		b.WriteString("\n")
	}
	return b.String()
}

// writeQuoted writes s as a YAML double-quoted scalar of printable ASCII:
// '"' and '\' escaped, and anything else outside printable ASCII as a \u
// or \U escape, so that the parser can neither refuse nor change a character
// (YAML refuses raw control characters, and folds a line break). A reference
// is printable ASCII and is written as it is; a byte of invalid UTF-8, which
// no YAML value can hold, is written as U+FFFD.
func writeQuoted(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		case r <= 0xffff:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			fmt.Fprintf(b, `\U%08x`, r)
		}
	}
	b.WriteByte('"')
}
