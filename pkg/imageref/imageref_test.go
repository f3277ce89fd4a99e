package imageref

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/distribution/reference"
)

const (
	digest  = "sha256:4c0b5c1c3c1ff5dc8d4a22d0e5a6f8b1f4b2c1b8e0f0a1d2c3b4a5968778695a"
	digest2 = "sha512:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" +
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		// One Docker Hub image, every way it is written.
		{"alpine", "docker.io/library/alpine:latest"},
		{"library/alpine", "docker.io/library/alpine:latest"},
		{"docker.io/alpine", "docker.io/library/alpine:latest"},
		{"docker.io/library/alpine", "docker.io/library/alpine:latest"},
		{"docker.io/library/alpine:latest", "docker.io/library/alpine:latest"},
		{"index.docker.io/library/alpine", "docker.io/library/alpine:latest"},
		{"alpine:latest", "docker.io/library/alpine:latest"},
		// Tags are kept as written, case included.
		{"alpine:3.20", "docker.io/library/alpine:3.20"},
		{"alpine:V1_RC-2", "docker.io/library/alpine:V1_RC-2"},
		{"alpine:_x", "docker.io/library/alpine:_x"},
		{"alpine:" + strings.Repeat("x", 128), "docker.io/library/alpine:" + strings.Repeat("x", 128)},
		{"bitnami/redis:7", "docker.io/bitnami/redis:7"},
		{"a/b/c/d", "docker.io/a/b/c/d:latest"},
		{"my__org/my.app-x---y", "docker.io/my__org/my.app-x---y:latest"},
		// Other registries keep their spelling.
		{"127.0.0.1:5000/foo/bar:v1", "127.0.0.1:5000/foo/bar:v1"},
		{"localhost/foo", "localhost/foo:latest"},
		{"localhost:5000/foo", "localhost:5000/foo:latest"},
		{"registry:5000/foo", "registry:5000/foo:latest"},
		{"ghcr.io/org/app", "ghcr.io/org/app:latest"},
		{"Registry.Example.com/app", "Registry.Example.com/app:latest"},
		{"[::1]:5000/foo:v1", "[::1]:5000/foo:v1"},
		{"registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"},
		// Digests are kept, and a tag beside a digest too.
		{"alpine@" + digest, "docker.io/library/alpine@" + digest},
		{"alpine:3.20@" + digest, "docker.io/library/alpine:3.20@" + digest},
		{"alpine:latest@" + digest, "docker.io/library/alpine:latest@" + digest},
		{"ghcr.io/org/app@" + digest2, "ghcr.io/org/app@" + digest2},
		{"127.0.0.1:5000/foo:v1@" + digest, "127.0.0.1:5000/foo:v1@" + digest},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Normalize(tc.in)
			if err != nil {
				t.Fatalf("Normalize(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
			}
			again, err := Normalize(got)
			if err != nil || again != got {
				t.Fatalf("Normalize(%q) = %q, %v; want it unchanged", got, again, err)
			}
		})
	}
}

func TestNormalizeRejects(t *testing.T) {
	for _, tc := range []struct{ in, says string }{
		{"", "it is empty"},
		{" alpine", "leading or trailing white space"},
		{"alpine ", "leading or trailing white space"},
		{"alpine\n", "leading or trailing white space"},
		{"al pine", "contains white space"},
		{"alpine:bad tag", "contains white space"},
		{"alpine:\u00a0x", "contains white space"},
		{"Alpine", `lowercase (did you mean "alpine"?)`},
		{"library/Alpine:3", `did you mean "library/alpine:3"?`},
		{"ghcr.io/Org/App:v1", `did you mean "ghcr.io/org/app:v1"?`},
		{"MyOrg/app", `"MyOrg" would be taken for a registry host`},
		{"{{inputs.parameters.image}}", "unresolved {{...}} template"},
		{"repo:{{workflow.parameters.tag}}", "unresolved {{...}} template"},
		{"{{ .Values.image }}", "contains white space"},
		{"repo:tag}}", "template"},
		{"https://ghcr.io/org/app", `write "ghcr.io/org/app" without "https://"`},
		{"alpine:", "the tag after ':' is empty"},
		{"alpine:" + strings.Repeat("x", 129), "longer than 128"},
		{"alpine:.x", `the tag ".x"`},
		{"alpine:-x", `the tag "-x"`},
		{"alpine:a+b", `the tag "a+b"`},
		{"alpine@sha256:123", "digest"},
		{"alpine@sha256:" + strings.Repeat("A", 64), "lowercase hex"},
		{"alpine@md5:" + strings.Repeat("a", 32), `the digest "md5:`},
		{"alpine@", "digest"},
		{"alpine:3@", "digest"},
		{strings.Repeat("a", 64), "bare image ID"},
		{strings.Repeat("a", 250), "longer than 255"},
		{"a//b", "empty path component"},
		{"ghcr.io/", "repository name is empty"},
		{"ghcr.io/org/", "empty path component"},
		{"/alpine", "repository name"},
		{"-alpine", `component "-alpine"`},
		{"alpine-", `component "alpine-"`},
		{"al..pine", `component "al..pine"`},
		{"al___pine", `component "al___pine"`},
		{"ghcr.io/org/ap!p", `component "ap!p"`},
		{"bad_host.io:port/x", "not a valid host"},
		// distribution/reference takes no IPv6 zone (RFC 6874): a node could not pull it.
		{"[fe80::1%eth0]:5000/x", `the registry "[fe80::1%eth0]:5000" is not a valid host[:port]`},
		{"-bad.io/x", "not a valid host"},
		{"alpine:1:2", "more than one ':'"},
		{":latest", "repository name is empty"},
		{"@" + digest, "repository name is empty"},
		{"ålpine", "component"},
		{strings.Repeat("a", MaxLength+1), "it is 1025 bytes long; an image reference is at most 1024 bytes"},
		{strings.Repeat("a.", 130) + "io/x", `is 262 bytes long; a registry host[:port] is at most 259`},
		{"registry.example:" + strings.Repeat("0", 260) + "/x", "a registry host[:port] is at most 259"},
		{"ghcr.io/" + strings.Repeat("Org", 80) + "/x", `did you mean "ghcr.io/` + strings.Repeat("org", 40)},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Normalize(tc.in)
			if err == nil {
				t.Fatalf("Normalize(%q) = %q, want an error", tc.in, got)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
			var e *Error
			if !errors.As(err, &e) || e.Ref != tc.in {
				t.Errorf("error %#v is not an *Error naming %q", err, tc.in)
			}
			if !strings.HasPrefix(err.Error(), "invalid image reference "+Quote(tc.in)+": ") {
				t.Errorf("error %q does not begin by naming the reference", err)
			}
		})
	}
}

func TestErrorUnwrapsParserError(t *testing.T) {
	_, err := Normalize(strings.Repeat("a", 250))
	if !errors.Is(err, reference.ErrNameTooLong) {
		t.Fatalf("errors.Is(%v, ErrNameTooLong) = false", err)
	}
	_, err = Normalize("")
	if errors.Unwrap(err) != nil {
		t.Fatalf("empty reference: Unwrap = %v, want nil (the parser was not reached)", errors.Unwrap(err))
	}
}

func TestFamiliar(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"docker.io/library/alpine:latest", "alpine"},
		{"alpine", "alpine"},
		{"docker.io/library/nginx:1.27", "nginx:1.27"},
		{"docker.io/bitnami/redis:7", "bitnami/redis:7"},
		{"docker.io/library/alpine@" + digest, "alpine@" + digest},
		{"docker.io/library/alpine:latest@" + digest, "alpine:latest@" + digest},
		{"127.0.0.1:5000/foo/bar:v1", "127.0.0.1:5000/foo/bar:v1"},
		{"ghcr.io/org/app:latest", "ghcr.io/org/app"},
		{"localhost:5000/foo:latest", "localhost:5000/foo"},
		{"not a reference", "not a reference"},
		{"", ""},
		// A Hub path that looks like a host: the short form would name another registry.
		{"docker.io/0.0/app:latest", "docker.io/0.0/app:latest"},
		{"docker.io/my.org/app:v1", "docker.io/my.org/app:v1"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := Familiar(tc.in); got != tc.want {
				t.Errorf("Familiar(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// The longest reference a registry can serve is accepted and stays within
// MaxLength once normalised, so the limit refuses nothing valid and
// Normalize stays idempotent at the edge.
func TestNormalizeAcceptsTheLongestReference(t *testing.T) {
	host := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)
	path := strings.Repeat("p", 127) + "/" + strings.Repeat("q", 127)
	for _, ref := range []string{
		host + ":65535/" + path + ":" + strings.Repeat("t", 128) + "@" + digest2,
		host + ":65535/" + path,
		"[0000:0000:0000:0000:0000:0000:0000:0001]:65535/" + path + ":" + strings.Repeat("t", 128) + "@" + digest2,
	} {
		n, err := Normalize(ref)
		if err != nil {
			t.Fatalf("Normalize(%d bytes): %v", len(ref), err)
		}
		if len(n) > MaxLength {
			t.Fatalf("Normalize(%d bytes) is %d bytes, more than MaxLength", len(ref), len(n))
		}
		if again, err := Normalize(n); err != nil || again != n {
			t.Fatalf("Normalize(%q) = %q, %v; want it unchanged", n, again, err)
		}
	}
}

// A huge reference is refused by its length alone: the message is short and
// the refusal costs the same for a megabyte as for a kilobyte.
func TestNormalizeRefusesHugeInputCheaply(t *testing.T) {
	huge := strings.Repeat("a", 1<<20)
	_, err := Normalize(huge)
	var e *Error
	if !errors.As(err, &e) || e.Err != nil {
		t.Fatalf("err = %#v, want an *Error from the length check, before the parser", err)
	}
	if want := `invalid image reference "` + strings.Repeat("a", MaxQuoted) + `…" (+1048448 bytes): it is 1048576 bytes long; an image reference is at most 1024 bytes`; err.Error() != want {
		t.Fatalf("err = %q, want %q", err, want)
	}
	// A few hundred bytes for the message, whatever the size: the parser
	// (which would copy and scan the megabyte) never sees it. Bytes, not
	// allocation counts, which the race detector makes vary.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		_, _ = Normalize(huge)
	}
	runtime.ReadMemStats(&after)
	if perCall := (after.TotalAlloc - before.TotalAlloc) / 10; perCall > 16<<10 {
		t.Errorf("refusing a 1 MiB reference allocates %d bytes, want a few hundred (no parsing)", perCall)
	}
	// Every part of a reference that a message quotes is cut too.
	for _, ref := range []string{
		"ghcr.io/org:" + strings.Repeat("+", 900),
		"ghcr.io/" + strings.Repeat("!", 900),
		"alpine@sha256:" + strings.Repeat("z", 900),
		"https://" + strings.Repeat("a", 900),
		strings.Repeat("A", 900) + "/x",
	} {
		_, err := Normalize(ref)
		if err == nil || len(err.Error()) > 3*MaxQuoted+200 {
			t.Errorf("Normalize(%.20q…): error of %d bytes, want one that quotes at most %d bytes of each value: %v", ref, len(fmt.Sprint(err)), MaxQuoted, err)
		}
	}
}

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", `""`},
		{"short", "alpine", `"alpine"`},
		{"escapes as %q does", "a\"b\n\x00\u00a0", `"a\"b\n\x00\u00a0"`},
		{"exactly MaxQuoted", strings.Repeat("a", MaxQuoted), `"` + strings.Repeat("a", MaxQuoted) + `"`},
		{"one byte over", strings.Repeat("a", MaxQuoted+1), `"` + strings.Repeat("a", MaxQuoted) + `…" (+1 bytes)`},
		{"a megabyte", strings.Repeat("a", 1<<20), `"` + strings.Repeat("a", MaxQuoted) + `…" (+1048448 bytes)`},
		// "é" is 2 bytes: byte 128 is its second, so the cut moves back one.
		{"cut on a rune boundary", strings.Repeat("a", MaxQuoted-1) + "éé", `"` + strings.Repeat("a", MaxQuoted-1) + `…" (+4 bytes)`},
		{"4-byte rune", strings.Repeat("a", MaxQuoted-2) + "😀x", `"` + strings.Repeat("a", MaxQuoted-2) + `…" (+5 bytes)`},
		// Invalid UTF-8 cannot make the cut scan backwards far.
		{"invalid UTF-8", strings.Repeat("\x80", 1000), `"` + strings.Repeat(`\x80`, MaxQuoted-3) + `…" (+875 bytes)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Quote(tc.in); got != tc.want {
				t.Errorf("Quote = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestShorten(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"1.10", "1.10"},
		{strings.Repeat("1", MaxQuoted), strings.Repeat("1", MaxQuoted)},
		{strings.Repeat("1", 1000), strings.Repeat("1", MaxQuoted) + "… (+872 bytes)"},
	} {
		if got := Shorten(tc.in); got != tc.want {
			t.Errorf("Shorten(%.20q…) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// What a terminal would act on is escaped, visibly; everything else is
// left as it is, and a clean string costs no allocation.
func TestPrintable(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", `Back-off pulling image "a": not found`, `Back-off pulling image "a": not found`},
		{"letters and marks", "café 日本 é", "café 日本 é"},
		{"no-break space", "a\u00a0b", "a\u00a0b"},
		{"line break and tab", "a\nb\tc\r", `a\nb\tc\r`},
		{"escape sequence", "\x1b[2J\x1b]0;title\x07", `\x1b[2J\x1b]0;title\a`},
		{"DEL and C1", "a\x7fb\u0085c\u009b", `a\x7fb\u0085c\u009b`},
		{"bidi override", "evil\u202etxt.exe", `evil\u202etxt.exe`},
		{"bidi embeddings", "\u202a\u202b\u202c\u202d", `\u202a\u202b\u202c\u202d`},
		{"bidi isolates", "\u2066\u2067\u2068\u2069", `\u2066\u2067\u2068\u2069`},
		{"bidi marks", "\u200e\u200f\u061c", `\u200e\u200f\u061c`},
		{"zero width", "a\u200bb\u200cc\u200dd\u2060e\ufeff", `a\u200bb\u200cc\u200dd\u2060e\ufeff`},
		{"separators", "a\u2028b\u2029", `a\u2028b\u2029`},
		{"tag characters", "a\U000e0041", `a\U000e0041`},
		{"invalid UTF-8", "a\xffb\xc2", `a\xffb\xc2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Printable(tc.in); got != tc.want {
				t.Errorf("Printable(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if got := Printable(Printable(tc.in)); got != tc.want {
				t.Errorf("Printable is not idempotent: %q", got)
			}
		})
	}
	clean := strings.Repeat("registry.example/team/app:v1 café ", 100)
	if n := testing.AllocsPerRun(10, func() { _ = Printable(clean) }); n != 0 {
		t.Errorf("a clean string costs %v allocations, want 0", n)
	}
	hostile := strings.Repeat("\u202e\x1b", 1000)
	if got := Printable(hostile); len(got) > 4*len(hostile) || strings.ContainsRune(got, '\u202e') {
		t.Errorf("escaped %d bytes to %d", len(hostile), len(got))
	}
	if got := Shorten(strings.Repeat("\u202e", 100)); strings.ContainsRune(got, '\u202e') {
		t.Errorf("Shorten left a bidi override: %q", got)
	}
}
