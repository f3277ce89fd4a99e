// Package imageref is the one place where image references are validated
// and normalised, for the daemon and the plugin alike. It uses the reference
// parser of the distribution project, the grammar containerd, the kubelet and
// the docker CLI agree on, so what it accepts a node can pull.
package imageref

import (
	// The digest library accepts an algorithm only once its hash is linked
	// in; containerd pulls sha512 digests, so they must parse here too.
	_ "crypto/sha512"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/distribution/reference"
)

// Error is why Normalize refused a reference. Its message names the
// reference and says what is wrong in a user's words, because the plugin and
// the daemon's events show it as it is.
type Error struct {
	// Ref is the reference as it was given.
	Ref string
	// Reason says what is wrong and, where it can, how to write it instead.
	Reason string
	// Err is the parser's own error, if the parser was reached, kept for
	// errors.Is (reference.ErrNameTooLong and the like).
	Err error
}

func (e *Error) Error() string {
	return "invalid image reference " + Quote(e.Ref) + ": " + e.Reason
}

// Unwrap returns the parser's error, if any.
func (e *Error) Unwrap() error { return e.Err }

// Normalize returns the canonical form of an image reference, the one form
// the daemon compares, stores and pulls: registry and repository made
// explicit and a missing tag made ":latest", so "alpine", "library/alpine",
// "docker.io/library/alpine" and "docker.io/library/alpine:latest" are one
// image. Other registries keep their spelling ("127.0.0.1:5000/foo/bar:v1").
//
// A digest is kept. A tag written beside a digest ("name:tag@sha256:...") is
// kept as well: the kubelet accepts that form and pulls by the digest, and
// the tag keeps the reference readable in tables. (reference.ParseDockerRef
// would drop that tag; it is not used for that reason.) So "name:tag@d" and
// "name@d" are two wanted images that pull the same content.
//
// Invalid input (empty, white space, upper case in the repository name, an
// unresolved {{...}} template, a URL, a malformed tag or digest) returns an
// *Error. Normalize(Normalize(s)) == Normalize(s) for every accepted s.
func Normalize(s string) (string, error) {
	named, err := parse(s)
	if err != nil {
		return "", err
	}
	return reference.TagNameOnly(named).String(), nil
}

// Familiar returns the short form people write and tables show: "alpine"
// for docker.io/library/alpine:latest, "nginx:1.27" for
// docker.io/library/nginx:1.27, "ghcr.io/org/app" for ghcr.io/org/app:latest.
// ":latest" is left out only when there is no digest. A string that does not
// parse is returned unchanged, so a table never loses a row to it.
func Familiar(s string) string {
	named, err := parse(s)
	if err != nil {
		return s
	}
	short := reference.FamiliarString(named)
	if t, ok := named.(reference.Tagged); ok && t.Tag() == "latest" {
		if _, digested := named.(reference.Digested); !digested {
			short = reference.FamiliarName(named)
		}
	}
	// The short form drops "docker.io/"; for a Docker Hub path whose first
	// component looks like a host ("docker.io/0.0/app") that names another
	// registry, so it is shown in full instead.
	full := reference.TagNameOnly(named).String()
	if again, err := Normalize(short); err != nil || again != full {
		return full
	}
	return short
}

// MaxLength is the longest input Normalize reads. The longest reference a
// registry can serve is 780 bytes (a 253-byte host and a 5-digit port, a
// 255-byte path, a 128-byte tag and a sha512 digest), so nothing valid is
// refused; anything longer is refused before a regular expression sees it.
const MaxLength = 1024

// maxDomain is the longest registry host[:port]: DNS allows 253 bytes of
// host name, and a port has at most 5 digits. The reference grammar sets no
// limit, but a longer registry cannot be reached, and the limit keeps every
// accepted reference within MaxLength once normalised.
const maxDomain = 253 + len(":65535")

// parse checks s first for the mistakes the parser would only call "invalid
// reference format", then parses it.
func parse(s string) (reference.Named, error) {
	invalid := func(reason string, err error) error { return &Error{Ref: s, Reason: reason, Err: err} }
	switch {
	case len(s) > MaxLength:
		return nil, invalid(fmt.Sprintf("it is %d bytes long; an image reference is at most %d bytes", len(s), MaxLength), nil)
	case s == "":
		return nil, invalid("it is empty", nil)
	case strings.TrimSpace(s) != s:
		return nil, invalid("it has leading or trailing white space", nil)
	case strings.IndexFunc(s, unicode.IsSpace) >= 0:
		return nil, invalid("it contains white space", nil)
	case strings.Contains(s, "{{") || strings.Contains(s, "}}"):
		return nil, invalid("it is an unresolved {{...}} template, not an image", nil)
	}
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		return nil, invalid(fmt.Sprintf("an image reference has no URL scheme; write %s without %s", Quote(rest), Quote(scheme+"://")), nil)
	}
	if d := ambiguousDomain(s); d != "" {
		// The parser would take an upper-case first component for a
		// registry host ("MyOrg/app" -> host "MyOrg"), which is almost
		// never what was meant and fails only on the node.
		return nil, invalid(fmt.Sprintf("repository names must be lowercase (%s would be taken for a registry host; a registry needs a '.' or a port)", Quote(d)), nil)
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, invalid(explain(s, err), err)
	}
	if d := reference.Domain(named); len(d) > maxDomain {
		return nil, invalid(fmt.Sprintf("the registry %s is %d bytes long; a registry host[:port] is at most %d (a host name of 253 and a port of 5 digits)", Quote(d), len(d), maxDomain), nil)
	}
	return named, nil
}

// ambiguousDomain returns the first path component of s if it holds upper
// case and is no host: no '.', no ':' and not "localhost".
func ambiguousDomain(s string) string {
	first, _, ok := strings.Cut(s, "/")
	if !ok || strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) == first {
		return ""
	}
	return first
}

var (
	anchoredTag       = regexp.MustCompile(`^` + reference.TagRegexp.String() + `$`)
	anchoredComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)
	anchoredDomain    = regexp.MustCompile(`^` + reference.DomainRegexp.String() + `$`)
	anchoredDigest    = regexp.MustCompile(`^(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$`)
	anchoredID        = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

// explain turns the parser's terse error into the part of s that is wrong
// and how it should look. It splits s the way the grammar does,
// [domain/]path[:tag][@digest], and checks each part in turn; the first
// part that is wrong is named.
func explain(s string, err error) string {
	if anchoredID.MatchString(s) {
		return "a bare image ID is not a reference; write repository@sha256:<id>"
	}
	if errors.Is(err, reference.ErrNameTooLong) {
		return fmt.Sprintf("the repository name is longer than %d characters", reference.RepositoryNameTotalLengthMax)
	}
	rest, dgst, hasDigest := strings.Cut(s, "@")
	name, tag, hasTag := rest, "", false
	if i := strings.LastIndexByte(rest, ':'); i > strings.LastIndexByte(rest, '/') {
		name, tag, hasTag = rest[:i], rest[i+1:], true
	}
	domain, path := "", name
	if first, remainder, ok := strings.Cut(name, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		domain, path = first, remainder
	}
	switch {
	case domain != "" && !anchoredDomain.MatchString(domain):
		return fmt.Sprintf("the registry %s is not a valid host[:port]", Quote(domain))
	case path == "":
		return "the repository name is empty"
	case strings.ToLower(path) != path:
		lower := strings.ToLower(path) + s[len(name):]
		if domain != "" {
			lower = domain + "/" + lower
		}
		if _, err := reference.ParseNormalizedNamed(lower); err == nil {
			return fmt.Sprintf("repository names must be lowercase (did you mean %s?)", Quote(lower))
		}
		return "repository names must be lowercase"
	}
	for _, c := range strings.Split(path, "/") {
		if c == "" {
			return "the repository name has an empty path component (\"//\" or a trailing \"/\")"
		}
		if strings.Contains(c, ":") {
			return "it has more than one ':' after the registry; only the tag follows a ':' (name:tag)"
		}
		if !anchoredComponent.MatchString(c) {
			return fmt.Sprintf("the repository path component %s may hold only lowercase letters, digits and the separators '.', '_', '__' and '-', and must begin and end with a letter or digit", Quote(c))
		}
	}
	switch {
	case hasTag && tag == "":
		return "the tag after ':' is empty"
	case hasTag && len(tag) > 128:
		return "the tag is longer than 128 characters"
	case hasTag && !anchoredTag.MatchString(tag):
		return fmt.Sprintf("the tag %s may hold only letters, digits, '_', '.' and '-', and must not begin with '.' or '-'", Quote(tag))
	case hasDigest && !anchoredDigest.MatchString(dgst):
		return fmt.Sprintf("the digest %s is not of the form sha256:<64 lowercase hex digits> (or sha384, sha512)", Quote(dgst))
	}
	return fmt.Sprintf("expected [registry[:port]/]repository[:tag][@digest], e.g. alpine:3.20 or ghcr.io/org/app@sha256:<digest> (%v)", err)
}

// MaxQuoted is the most bytes of a user's value that a message quotes.
const MaxQuoted = 128

// Quote returns s quoted as %q does, cut to MaxQuoted bytes (on a rune
// boundary) with a note of how many bytes were left out, e.g.
// "aaaa…" (+1048448 bytes). Messages quote a user's value with it, because a
// tenant's object may hold a megabyte where a name was expected and every
// message is logged and sent as an Event by every node.
func Quote(s string) string {
	head, omitted := cut(s)
	if omitted == "" {
		return strconv.Quote(s)
	}
	return strconv.Quote(head+"…") + omitted
}

// Shorten is Quote without the quotes: s cut to MaxQuoted bytes, with what
// a terminal would act on escaped (see Printable).
func Shorten(s string) string {
	head, omitted := cut(s)
	if omitted == "" {
		return Printable(s)
	}
	return Printable(head) + "…" + omitted
}

// Printable returns s as a terminal may show it: every character that is
// not graphic is escaped the way Go writes it in a string literal (\n,
// \x1b, \u202e, \ufeff), as is each byte of invalid UTF-8 (\xff). That is
// control characters (C0, DEL, C1: line breaks and escape sequences that
// move the cursor or rewrite the screen), format characters (the bidi
// embeddings, overrides and isolates U+202A..U+202E and U+2066..U+2069, the
// marks U+200E, U+200F and U+061C, which reorder what follows; the
// zero-width U+200B..U+200D, U+2060 and U+FEFF, which hide or join
// characters), the line and paragraph separators, surrogates, private-use
// and unassigned code points. What the cluster sends (annotations, Events,
// the kubelet's messages, object names) reaches the user's terminal only
// through it, and the daemon's report holds nothing it would change.
//
// s itself is returned, without allocating, when nothing needs escaping;
// the time is linear in len(s), and the result is at most 4 bytes per byte
// of s.
func Printable(s string) string {
	i := unprintable(s)
	if i == len(s) {
		return s
	}
	b := make([]byte, 0, len(s)+16)
	b = append(b, s[:i]...)
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\x`...)
			b = append(b, hexDigits[s[i]>>4], hexDigits[s[i]&0xf])
		case printableRune(r):
			b = append(b, s[i:i+size]...)
		default:
			// Go's own escapes: "\n", "\x1b", "\u202e", "\U000e0001".
			q := strconv.QuoteRuneToASCII(r)
			b = append(b, q[1:len(q)-1]...)
		}
		i += size
	}
	return string(b)
}

const hexDigits = "0123456789abcdef"

// unprintable is the index of the first byte of s that Printable escapes,
// len(s) when there is none; ASCII is checked a byte at a time.
func unprintable(s string) int {
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return i
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || !printableRune(r) {
			return i
		}
		i += size
	}
	return len(s)
}

// printableRune reports whether a terminal shows r as the character it is:
// a letter, mark, number, punctuation, symbol or space (unicode.IsGraphic),
// none of which moves the cursor, reorders text or hides.
func printableRune(r rune) bool {
	return r >= 0x20 && r < 0x7f || r >= utf8.RuneSelf && unicode.IsGraphic(r)
}

// cut returns the first MaxQuoted bytes of s, ended on a rune boundary, and
// the note for what was left out ("" when nothing was).
func cut(s string) (head, omitted string) {
	if len(s) <= MaxQuoted {
		return s, ""
	}
	head = Prefix(s, MaxQuoted)
	return head, fmt.Sprintf(" (+%d bytes)", len(s)-len(head))
}

// Prefix is s cut to at most n bytes, short of the character the cut would
// split: backing up no further than one character, so that invalid UTF-8
// cannot make it scan s.
func Prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for i := 0; i < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(s[n]); i++ {
		n--
	}
	return s[:n]
}

// Set is the normalise-and-dedupe step every reader of wanted images ends
// with, so that "alpine" from a ConfigMap and
// "docker.io/library/alpine:latest" from a workflow template are one image.
type Set map[string]struct{}

// Add normalises ref and keeps it; the error is Normalize's, which names
// ref and says what is wrong; the caller adds where ref was found.
func (s Set) Add(ref string) error {
	n, err := Normalize(ref)
	if err != nil {
		return err
	}
	s[n] = struct{}{}
	return nil
}

// Sorted returns the images in a stable order (nil if there are none), so
// that a re-read of an unchanged object compares equal to the last one.
func (s Set) Sorted() []string {
	if len(s) == 0 {
		return nil
	}
	out := make([]string, 0, len(s))
	for img := range s {
		out = append(out, img)
	}
	sort.Strings(out)
	return out
}

// IsDigest reports whether d is a manifest digest as this project writes
// them: "sha256:" and 64 lowercase hex digits.
func IsDigest(d string) bool {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Pinned is the digest a normalised reference is pinned to
// ("repo@sha256:..." or "repo:tag@sha256:..."), "" for one that names a
// tag only: a pinned image never moves, so nothing checks it again.
func Pinned(ref string) string {
	i := strings.LastIndexByte(ref, '@')
	if i < 0 {
		return ""
	}
	return ref[i+1:]
}
