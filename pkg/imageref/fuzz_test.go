package imageref

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// maxMessage bounds an error message whatever the input: a reason quotes at
// most two parts of the reference, each cut to MaxQuoted bytes (at most 10
// bytes of %q escape per byte), beside fixed text.
const maxMessage = 3*10*MaxQuoted + 1024

// FuzzNormalize checks that Normalize never panics, stays fast and its
// messages short on any input; that what it accepts is a fixed point within
// MaxLength; that Familiar never panics and its result normalises back; and
// that every refusal names the reference.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"alpine", "library/alpine", "docker.io/library/alpine:latest", "index.docker.io/x",
		"a/b:c", "127.0.0.1:5000/x@" + digest, "[::1]:5000/foo:v1", "[fe80::1%eth0]:5000/x",
		"[::1]/x", "alpine:3@" + digest, "localhost/x", "localhost:5000/a__b--c:v1", "UPPER",
		"Org/x", "{{x}}", "", " a", "a//b", "alpine@" + digest2, "a:b", "a:b@" + digest,
		strings.Repeat("a", 64), strings.Repeat("a/", 130) + "a", "http://x/y",
		strings.Repeat("a.", 200) + "io/x", "x:" + strings.Repeat("9", 300) + "/y",
		strings.Repeat("a", 1<<20), strings.Repeat("\x80", 5000), strings.Repeat("É", 3000) + "/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start := time.Now()
		n, err := Normalize(s)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Normalize of %d bytes took %v", len(s), d)
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Ref != s || e.Reason == "" {
				t.Fatalf("Normalize(%q): error %#v is not an *Error naming it with a reason", s, err)
			}
			if msg := err.Error(); len(msg) > maxMessage {
				t.Fatalf("Normalize(%d bytes): message of %d bytes, want at most %d: %.300q", len(s), len(msg), maxMessage, msg)
			}
			if f := Familiar(s); f != s {
				t.Fatalf("Familiar(%q) = %q, want a reference that does not parse returned unchanged", s, f)
			}
			return
		}
		if len(n) > MaxLength {
			t.Fatalf("Normalize(%q) = %q, longer than MaxLength (%d)", s, n, MaxLength)
		}
		again, err := Normalize(n)
		if err != nil {
			t.Fatalf("Normalize(%q) = %q, which does not normalise: %v", s, n, err)
		}
		if again != n {
			t.Fatalf("Normalize is not idempotent: %q -> %q -> %q", s, n, again)
		}
		if back, err := Normalize(Familiar(n)); err != nil || back != n {
			t.Fatalf("Familiar(%q) = %q, which normalises to %q, %v", n, Familiar(n), back, err)
		}
		if back, err := Normalize(Familiar(s)); err != nil || back != n {
			t.Fatalf("Familiar(%q) = %q, which normalises to %q, %v; want %q", s, Familiar(s), back, err, n)
		}
	})
}

// FuzzQuote checks that Quote's output is bounded, is what %q gives for a
// short value, and begins with the quoted head of a long one.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "alpine", strings.Repeat("é", 100), strings.Repeat("\x80", 300), strings.Repeat("a", 1<<16)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := Quote(s)
		if len(q) > 10*MaxQuoted+64 {
			t.Fatalf("Quote(%d bytes) is %d bytes long", len(s), len(q))
		}
		if len(s) <= MaxQuoted && q != fmt.Sprintf("%q", s) {
			t.Fatalf("Quote(%q) = %s, want %q", s, q, s)
		}
		if len(s) > MaxQuoted && !strings.Contains(q, "…\" (+") {
			t.Fatalf("Quote(%d bytes) = %s does not say what it left out", len(s), q)
		}
	})
}
