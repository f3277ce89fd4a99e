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
	"strings"
	"unicode"

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
	return fmt.Sprintf("invalid image reference %q: %s", e.Ref, e.Reason)
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
	if t, ok := named.(reference.Tagged); ok && t.Tag() == "latest" {
		if _, digested := named.(reference.Digested); !digested {
			return reference.FamiliarName(named)
		}
	}
	return reference.FamiliarString(named)
}

// parse checks s first for the mistakes the parser would only call "invalid
// reference format", then parses it.
func parse(s string) (reference.Named, error) {
	invalid := func(reason string, err error) error { return &Error{Ref: s, Reason: reason, Err: err} }
	switch {
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
		return nil, invalid(fmt.Sprintf("an image reference has no URL scheme; write %q without %q", rest, scheme+"://"), nil)
	}
	if d := ambiguousDomain(s); d != "" {
		// The parser would take an upper-case first component for a
		// registry host ("MyOrg/app" -> host "MyOrg"), which is almost
		// never what was meant and fails only on the node.
		return nil, invalid(fmt.Sprintf("repository names must be lowercase (%q would be taken for a registry host; a registry needs a '.' or a port)", d), nil)
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, invalid(explain(s, err), err)
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
		return fmt.Sprintf("the registry %q is not a valid host[:port]", domain)
	case path == "":
		return "the repository name is empty"
	case strings.ToLower(path) != path:
		lower := strings.ToLower(path) + s[len(name):]
		if domain != "" {
			lower = domain + "/" + lower
		}
		if _, err := reference.ParseNormalizedNamed(lower); err == nil {
			return fmt.Sprintf("repository names must be lowercase (did you mean %q?)", lower)
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
			return fmt.Sprintf("the repository path component %q may hold only lowercase letters, digits and the separators '.', '_', '__' and '-', and must begin and end with a letter or digit", c)
		}
	}
	switch {
	case hasTag && tag == "":
		return "the tag after ':' is empty"
	case hasTag && len(tag) > 128:
		return "the tag is longer than 128 characters"
	case hasTag && !anchoredTag.MatchString(tag):
		return fmt.Sprintf("the tag %q may hold only letters, digits, '_', '.' and '-', and must not begin with '.' or '-'", tag)
	case hasDigest && !anchoredDigest.MatchString(dgst):
		return fmt.Sprintf("the digest %q is not of the form sha256:<64 lowercase hex digits> (or sha384, sha512)", dgst)
	}
	return fmt.Sprintf("expected [registry[:port]/]repository[:tag][@digest], e.g. alpine:3.20 or ghcr.io/org/app@sha256:<digest> (%v)", err)
}
