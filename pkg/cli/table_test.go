package cli

import (
	"strings"
	"testing"
)

// Tables read as kubectl's: columns padded to the widest cell and three
// spaces apart, no trailing spaces, one line per row whatever a cell holds.
func TestPrintTable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header []string
		rows   [][]string
		want   string
	}{
		{"widths from header and rows", []string{"A", "BB", "C"}, [][]string{{"xxxx", "y", "z"}, {"x", "", "last"}},
			"A      BB   C\nxxxx   y    z\nx           last\n"},
		{"empty last cells end the line", []string{"NAME", "MESSAGE"}, [][]string{{"a", ""}},
			"NAME   MESSAGE\na\n"},
		{"no rows", []string{"IMAGE", "WANTED BY"}, nil,
			"IMAGE   WANTED BY\n"},
		{"wide characters count as one", []string{"N", "M"}, [][]string{{"żółw", "ok"}, {"a", "b"}},
			"N      M\nżółw   ok\na      b\n"},
		{"control characters are escaped, widths follow", []string{"N", "MESSAGE"}, [][]string{{"a\tb", "line one\nline two\x1b[31m\u009b"}},
			"N      MESSAGE\na\\tb   line one\\nline two\\x1b[31m\\u009b\n"},
		{"bidi and zero-width characters are escaped", []string{"N", "M"}, [][]string{{"\u202eab", "x\u200by\ufeff"}},
			"N          M\n\\u202eab   x\\u200by\\ufeff\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			if err := printTable(&out, tc.header, tc.rows); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("table:\n%q\nwant:\n%q", out.String(), tc.want)
			}
		})
	}
}
