package cli

import (
	"bufio"
	"io"
	"unicode/utf8"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
)

// columnGap separates columns, as in kubectl's tables.
const columnGap = 3

// table writes rows the way kubectl does: no borders, no rules, columns
// left-aligned and separated by spaces, the last column not padded. The
// widths are known before the first row (a cheap first pass over the data
// finds them), so each row goes straight to a buffered writer: a table of
// 100,000 rows costs one line of memory, not the table.
type table struct {
	w      *bufio.Writer
	widths []int
	line   []byte
}

// newTable starts a table with the widths fitted to header and every row
// that will follow (see fit), and writes the header.
func newTable(w io.Writer, widths []int, header ...string) (*table, error) {
	t := &table{w: bufio.NewWriterSize(w, 64<<10), widths: widths}
	return t, t.row(header...)
}

// fit widens widths to hold cells; call it for the header and every row
// before newTable.
func fit(widths []int, cells ...string) {
	for i, c := range cells {
		widths[i] = max(widths[i], utf8.RuneCountInString(imageref.Printable(c)))
	}
}

// row writes one row. Every cell goes through imageref.Printable (a kubelet
// message may hold a newline, a terminal escape or a bidi override), so a
// row stays one line and reads as it is.
func (t *table) row(cells ...string) error {
	t.line = t.line[:0]
	for i, c := range cells {
		c = imageref.Printable(c)
		t.line = append(t.line, c...)
		if i == len(cells)-1 {
			break
		}
		for n := utf8.RuneCountInString(c); n < t.widths[i]+columnGap; n++ {
			t.line = append(t.line, ' ')
		}
	}
	// An empty last cell leaves the padding of the one before it:
	// kubectl's lines end at the text.
	for len(t.line) > 0 && t.line[len(t.line)-1] == ' ' {
		t.line = t.line[:len(t.line)-1]
	}
	t.line = append(t.line, '\n')
	_, err := t.w.Write(t.line)
	return err
}

// flush writes what the buffer holds; call it when the table is done.
func (t *table) flush() error { return t.w.Flush() }

// printTable writes a small table held in memory: rows under header.
func printTable(w io.Writer, header []string, rows [][]string) error {
	widths := make([]int, len(header))
	fit(widths, header...)
	for _, r := range rows {
		fit(widths, r...)
	}
	t, err := newTable(w, widths, header...)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if err := t.row(r...); err != nil {
			return err
		}
	}
	return t.flush()
}
