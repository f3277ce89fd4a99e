package imageref

import (
	"errors"
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
		{"-bad.io/x", "not a valid host"},
		{"alpine:1:2", "more than one ':'"},
		{":latest", "repository name is empty"},
		{"@" + digest, "repository name is empty"},
		{"ålpine", "component"},
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
			if !strings.HasPrefix(err.Error(), "invalid image reference "+quote(tc.in)) {
				t.Errorf("error %q does not begin by naming the reference", err)
			}
		})
	}
}

func quote(s string) string {
	var b strings.Builder
	b.WriteString(`"`)
	b.WriteString(strings.NewReplacer(`"`, `\"`, "\n", `\n`, "\u00a0", `\u00a0`).Replace(s))
	b.WriteString(`"`)
	return b.String()
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
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := Familiar(tc.in); got != tc.want {
				t.Errorf("Familiar(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzNormalize checks that Normalize never panics, that what it accepts is
// a fixed point, that Familiar of it normalises back to it, and that every
// refusal names the reference.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"alpine", "library/alpine", "docker.io/library/alpine:latest", "index.docker.io/x",
		"a/b:c", "127.0.0.1:5000/x@" + digest, "[::1]:5000/foo:v1", "alpine:3@" + digest,
		"localhost/x", "UPPER", "Org/x", "{{x}}", "", " a", "a//b", "alpine@" + digest2,
		strings.Repeat("a", 64), strings.Repeat("a/", 130) + "a", "http://x/y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Normalize(s)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Ref != s || e.Reason == "" {
				t.Fatalf("Normalize(%q): error %#v is not an *Error naming it with a reason", s, err)
			}
			return
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
	})
}
