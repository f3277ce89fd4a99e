package listformat

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/problems"
)

// MaxYAMLBytes is the most of one image list that the YAML parser reads.
// The parser builds a node of about 200 bytes for every value, so a
// megabyte of "[1,1,1,...]" would cost it over 100 MiB; it is given a
// value whole only up to this size, and otherwise only the entries that are
// not plain image references, up to this many bytes of them in all. Lists
// written the usual ways (one "- image" a line, or a JSON list of strings)
// are read by a scanner whose cost is a few bytes per byte, at any size.
const MaxYAMLBytes = 64 << 10

// Limits bound the reading of one image list.
type Limits struct {
	// Keep is the most distinct images kept (0: all); the entries after the
	// Keep-th image are counted, not read.
	Keep int
	// Read is the most entries validated (0: all); later ones are counted,
	// not read. It bounds the work a list of duplicates or invalid entries
	// costs when Keep is never reached.
	Read int
	// yamlBytes is the most bytes of a list the YAML parser reads (0:
	// MaxYAMLBytes); a field so that tests can reach it with small lists.
	yamlBytes int
}

// yamlLimit is lim's yamlBytes, or its default.
func (lim Limits) yamlLimit() int {
	if lim.yamlBytes > 0 {
		return lim.yamlBytes
	}
	return MaxYAMLBytes
}

// List is what reading an image list found.
type List struct {
	// Images are the normalised, distinct images in list order.
	Images []string
	// Unread counts the entries not read because of the limits.
	Unread int
	// Problems are what is wrong with the entries, capped.
	Problems problems.List

	lim  Limits
	seen imageref.Set
	read int // entries read
}

// Read reads value as ParseImageList describes, within lim: the images in
// list order. err means the value as a whole is not a list.
func Read(value string, lim Limits) (*List, error) {
	if strings.TrimSpace(value) == "" {
		return nil, errors.New(`the value is empty; write a list such as ["alpine", "nginx:1.27"], or [] for none`)
	}
	if l, ok := readSimple(value, lim); ok {
		return l, nil
	}
	if len(value) > lim.yamlLimit() {
		return nil, fmt.Errorf("the value is %d bytes long and not written one image a line (\"- image\") or as a JSON list of strings (with no tab, control character or lone carriage return); a list over %d KiB must be written one of those ways", len(value), lim.yamlLimit()>>10)
	}
	return readYAML(value, lim)
}

// readYAML reads value with the YAML parser, whole.
func readYAML(value string, lim Limits) (*List, error) {
	root, err := parseDocument(value)
	if err != nil {
		return nil, err
	}
	if root == nil || root.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("the value is %s, not a list of image references; write %s", describe(root), ExpectedForm)
	}
	l := newImageList(lim)
	for i, entry := range root.Content {
		if !l.room() {
			l.Unread += len(root.Content) - i
			break
		}
		l.node(i, entry)
	}
	return l, nil
}

func newImageList(lim Limits) *List {
	return &List{seen: imageref.Set{}, lim: lim}
}

// room reports whether another entry may be read.
func (l *List) room() bool {
	return (l.lim.Keep == 0 || len(l.Images) < l.lim.Keep) && (l.lim.Read == 0 || l.read < l.lim.Read)
}

// node reads entry i (from 0) given as a YAML node.
func (l *List) node(i int, entry *yaml.Node) {
	switch {
	case entry.Kind == yaml.AliasNode:
		l.read++
		l.Problems.Add(fmt.Errorf("entry %d: YAML aliases (*%s) are not allowed in an image list; write each image out", i+1, imageref.Shorten(entry.Value)))
	case !isString(entry):
		l.read++
		l.Problems.Add(fmt.Errorf("entry %d is %s, not a string; quote it if it is an image reference", i+1, describe(entry)))
	default:
		l.string(i, entry.Value)
	}
}

// string reads entry i (from 0), a string.
func (l *List) string(i int, s string) {
	l.read++
	n, err := imageref.Normalize(s)
	if err != nil {
		l.Problems.Add(fmt.Errorf("entry %d: %w", i+1, err))
		return
	}
	if _, dup := l.seen[n]; dup {
		return
	}
	l.seen[n] = struct{}{}
	l.Images = append(l.Images, n)
}

// readSimple reads value if it is written in one of the simple forms: a
// block list of one entry a line, or a flow list (JSON) of entries that are
// strings, quoted or not, on any number of lines. Entries that are plain
// image references are read by the scanner; the others (a number, "yes", a
// string with escapes, a nested list...) by the YAML parser, each as its own
// document, up to MaxYAMLBytes of them; those beyond are counted as unread.
// false means the value is in neither form and was not read.
//
// What readSimple reads is what the YAML parser reads from the whole value
// (FuzzSimpleMatchesYAML checks it), at a cost of a few bytes per byte.
func readSimple(value string, lim Limits) (*List, bool) {
	if !yamlPrintable(value) || strings.Count(value, "\r") != strings.Count(value, "\r\n") {
		// The parser refuses it, or reads a line break the scanner
		// would not (a lone carriage return).
		return nil, false
	}
	sc := listScanner{value: value}
	// First pass: check the form and collect the entries for the parser,
	// in order, until one does not fit (those after it are not read either,
	// so that the second pass hands each parsed entry to its own), and
	// none past the entries that may be read.
	var batch strings.Builder
	parsed, i, full := 0, 0, false
	if !sc.walk(func(e entry) {
		defer func() { i++ }()
		if e.plain || full {
			return
		}
		if (lim.Read > 0 && i >= lim.Read) || batch.Len()+len(e.text)+len(e.wrap[0])+len(e.wrap[1]) > lim.yamlLimit() {
			full = true
			return
		}
		parsed++
		batch.WriteString(e.wrap[0])
		batch.WriteString(e.text)
		batch.WriteString(e.wrap[1])
	}) {
		return nil, false
	}
	nodes, ok := parseEntries(batch.String(), parsed)
	if !ok {
		return nil, false
	}
	// Second pass: read in list order.
	l := newImageList(lim)
	i, next, notParsed := 0, 0, 0
	sc.walk(func(e entry) {
		defer func() { i++ }()
		switch {
		case !l.room():
			l.Unread++
		case e.plain:
			l.string(i, e.text)
		case next < len(nodes):
			l.node(i, nodes[next])
			next++
		default:
			if notParsed == 0 {
				l.Problems.Add(fmt.Errorf("entry %d and the entries after it that are not plain image references are not read: the list holds more than %d KiB of such entries; write each image plainly (\"- registry/app:tag\")", i+1, lim.yamlLimit()>>10))
			}
			l.Unread++
			notParsed++
		}
	})
	return l, true
}

// yamlPrintable reports whether every character of s is one YAML allows
// in a stream and the scanner reads as the parser does: tab, line feed,
// carriage return, printable ASCII, and valid UTF-8 outside the C1
// controls, surrogates and U+FFFE/U+FFFF, and but for the characters the
// parser takes for line breaks (U+0085, U+2028, U+2029), which would end a
// comment where the scanner does not.
func yamlPrintable(s string) bool {
	for _, r := range s {
		switch {
		case r == 0x85 || r == 0x2028 || r == 0x2029:
			return false
		case r == '\t' || r == '\n' || r == '\r' || r >= 0x20 && r <= 0x7e:
		case r == utf8.RuneError:
			return false // invalid UTF-8 (U+FFFD written out is refused too: rare, and left to the parser)
		case r >= 0xa0 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
		default:
			return false
		}
	}
	return true
}

// parseEntries parses batch, documents of one single-entry list each, and
// returns the n entries; false if it does not hold exactly that.
func parseEntries(batch string, n int) ([]*yaml.Node, bool) {
	if n == 0 {
		return nil, true
	}
	dec := yaml.NewDecoder(strings.NewReader(batch))
	nodes := make([]*yaml.Node, 0, n)
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
			return nil, false
		}
		seq := doc.Content[0]
		if seq.Kind != yaml.SequenceNode || len(seq.Content) != 1 || seq.Anchor != "" || seq.Tag != "!!seq" {
			return nil, false
		}
		nodes = append(nodes, seq.Content[0])
	}
	return nodes, len(nodes) == n
}

// entry is one entry of a list in a simple form.
type entry struct {
	// text is the entry as written: for a plain entry, the string itself.
	text string
	// plain: text is a string that the YAML parser reads as written.
	plain bool
	// wrap makes text a YAML document of a list of that one entry, in
	// the context (block or flow) it was written in.
	wrap [2]string
}

var (
	blockWrap = [2]string{"---\n- ", "\n"}
	flowWrap  = [2]string{"---\n[", "]\n"}
)

// listScanner walks a value written in a simple form.
type listScanner struct{ value string }

// walk calls f for each entry, in order, and reports whether the value is
// in a simple form (if not, f may have been called for some entries).
func (sc listScanner) walk(f func(entry)) bool {
	rest := skipComments(sc.value)
	switch {
	case strings.HasPrefix(rest, "["):
		return walkFlow(rest[1:], f)
	case strings.HasPrefix(strings.TrimLeft(rest, " "), "-"):
		return walkBlock(rest, f)
	}
	return false
}

// skipComments drops the blank and comment lines that open value.
func skipComments(value string) string {
	for value != "" {
		line, rest, _ := strings.Cut(value, "\n")
		t := strings.TrimLeft(strings.TrimSuffix(line, "\r"), " ")
		if t != "" && t[0] != '#' {
			return value
		}
		value = rest
	}
	return ""
}

// walkBlock reads a block list: every line blank, a comment, or "- " and one
// entry, all at the indentation of the first.
func walkBlock(value string, f func(entry)) bool {
	indent := -1
	for value != "" {
		var line string
		line, value, _ = strings.Cut(value, "\n")
		line = strings.TrimSuffix(line, "\r")
		if strings.ContainsAny(line, "\r\t") && !isCommentLine(line) {
			return false // tabs and stray carriage returns: leave them to the parser
		}
		t := strings.TrimLeft(line, " ")
		if t == "" || t[0] == '#' {
			continue
		}
		n := len(line) - len(t)
		if indent < 0 {
			indent = n
		}
		if n != indent || t[0] != '-' || (len(t) > 1 && t[1] != ' ') {
			return false
		}
		text := strings.TrimLeft(t[1:], " ")
		if s, ok := blockString(text); ok {
			f(entry{text: s, plain: true})
			continue
		}
		if strings.ContainsAny(text, "|>") && !strings.HasPrefix(text, `"`) && !strings.HasPrefix(text, "'") {
			// Perhaps a block scalar ("|", ">-", "!!str |1"): its content
			// is on the lines after it, blank ones included; leave it to
			// the parser.
			return false
		}
		if strings.HasPrefix(text, `"`) || strings.HasPrefix(text, "'") {
			// A quoted string must end on its line, before nothing but a
			// comment: one that goes on is left to the parser.
			q, after, ok := quotedString(text)
			after = strings.TrimLeft(after, " ")
			if !ok || (after != "" && (after[0] != '#' || len(after) == len(text)-len(q))) {
				return false
			}
		}
		f(entry{text: text, wrap: blockWrap})
	}
	return indent >= 0
}

func isCommentLine(line string) bool {
	t := strings.TrimLeft(line, " \t")
	return t == "" || t[0] == '#'
}

// blockString returns the string a block entry's text (what follows "- ")
// is, when the parser reads it as written: a plain word of the characters
// of image references that the parser cannot take for anything else, or a
// quoted string of printable ASCII without escapes, each followed by
// nothing but a comment.
func blockString(text string) (string, bool) {
	word, after := text, ""
	if i := strings.IndexByte(text, ' '); i >= 0 {
		word, after = text[:i], strings.TrimLeft(text[i:], " ")
	}
	if after != "" && after[0] != '#' {
		return "", false
	}
	if s, ok := quoted(word); ok && (after == "" || text[len(word)] == ' ') {
		return s, true
	}
	if plainString(word) {
		return word, true
	}
	return "", false
}

// quoted returns the content of a quoted string that is all of s: printable
// ASCII without escapes between double or single quotes. A string with
// escapes, or quotes that do not close, is not.
func quoted(s string) (string, bool) {
	if len(s) < 2 || (s[0] != '"' && s[0] != '\'') || s[len(s)-1] != s[0] {
		return "", false
	}
	inner := s[1 : len(s)-1]
	for i := 0; i < len(inner); i++ {
		if c := inner[i]; c < 0x20 || c > 0x7e || c == s[0] || c == '\\' {
			return "", false
		}
	}
	return inner, true
}

// plainString reports whether word, written plain, is a string to the YAML
// parser: only characters of image references, not ending in ':' (a map
// key), and either starting with a letter and not one of the words YAML
// takes for a boolean or null, or holding a '/', which no number, time or
// other value does.
func plainString(word string) bool {
	if word == "" || word[len(word)-1] == ':' {
		return false
	}
	slash := false
	for i := 0; i < len(word); i++ {
		switch c := word[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == '-', c == ':', c == '@':
		case c == '/':
			slash = true
		default:
			return false
		}
	}
	c := word[0]
	letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	switch {
	case letter:
		return !yamlWords[word] && !yaml11Bools[word]
	case c >= '0' && c <= '9':
		return slash
	}
	return false
}

// yamlWords are the plain words starting with a letter that the YAML
// parser reads as something other than a string.
var yamlWords = map[string]bool{
	"true": true, "True": true, "TRUE": true, "false": true, "False": true, "FALSE": true,
	"null": true, "Null": true, "NULL": true,
}

// walkFlow reads a flow list after its '[': entries that are quoted
// strings without line breaks, or plain words of image reference
// characters, separated by commas and white space, then ']' and nothing but
// white space.
func walkFlow(value string, f func(entry)) bool {
	s := value
	first := true
	for {
		s = skipSpace(s)
		if strings.HasPrefix(s, "]") {
			// "[]", or a trailing comma, which is left to the parser.
			return first && strings.TrimLeft(s[1:], " \t\r\n") == ""
		}
		var text string
		var ok bool
		text, s, ok = flowEntry(s)
		if !ok {
			return false
		}
		if str, isString := quoted(text); isString {
			f(entry{text: str, plain: true})
		} else if !strings.Contains(text, ":") && plainString(text) {
			f(entry{text: text, plain: true})
		} else {
			f(entry{text: text, wrap: flowWrap})
		}
		first = false
		s = skipSpace(s)
		switch {
		case strings.HasPrefix(s, ","):
			s = s[1:]
		case strings.HasPrefix(s, "]"):
			return strings.TrimLeft(s[1:], " \t\r\n") == ""
		default:
			return false
		}
	}
}

func skipSpace(s string) string { return strings.TrimLeft(s, " \t\r\n") }

// quotedString cuts the quoted string that s starts with, escapes and all,
// if it ends on its line.
func quotedString(s string) (text, rest string, ok bool) {
	q := s[0]
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\n' || c == '\r':
			return "", "", false
		case q == '"' && c == '\\':
			i++
		case c == q && q == '\'' && i+1 < len(s) && s[i+1] == '\'':
			i++
		case c == q:
			return s[:i+1], s[i+1:], true
		}
	}
	return "", "", false
}

// flowEntry cuts the entry that s starts with: a quoted string on one line
// (escapes allowed: the parser reads those), or a word of image reference
// characters.
func flowEntry(s string) (text, rest string, ok bool) {
	if s == "" {
		return "", "", false
	}
	if q := s[0]; q == '"' || q == '\'' {
		return quotedString(s)
	}
	i := 0
	for i < len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '-' || c == ':' || c == '@' || c == '/') {
			break
		}
		i++
	}
	// A word must start with a letter or digit: "-" or "." first could be
	// a document marker at the start of a line.
	if i == 0 || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z' || s[0] >= '0' && s[0] <= '9') {
		return "", "", false
	}
	// A word ending in ':' is a map key when a space follows it ("[a: ]",
	// "[0::: ]"), and a string when ']' or ',' does: which one depends on
	// what comes after the word, so the parser reads the whole list.
	if s[i-1] == ':' {
		return "", "", false
	}
	return s[:i], s[i:], true
}
