package resolve

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/dcherman/image-cache-daemon/pkg/wanted"
)

const (
	d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// fakeRegistry answers checks from a map and counts them.
type fakeRegistry struct {
	mu     sync.Mutex
	tags   map[string]string
	errs   map[string]error
	checks map[string]int
}

func (f *fakeRegistry) head(_ context.Context, ref string, _ authn.Keychain) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks[ref]++
	if err := f.errs[ref]; err != nil {
		return "", err
	}
	return f.tags[ref], nil
}

func (f *fakeRegistry) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.checks {
		n += c
	}
	return n
}

func newFake() *fakeRegistry {
	return &fakeRegistry{tags: map[string]string{}, errs: map[string]error{}, checks: map[string]int{}}
}

// clock is a settable time.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestEachTagIsCheckedOncePerPeriod(t *testing.T) {
	f := newFake()
	f.tags["docker.io/library/a:1"] = d1
	f.tags["docker.io/library/b:1"] = d1
	c := &clock{t: time.Unix(1_000_000, 0)}
	r := &Resolver{Every: 15 * time.Minute, Head: f.head, now: c.now}
	pinned := "docker.io/library/c@" + d2
	r.Want([]string{"docker.io/library/a:1", "docker.io/library/b:1", pinned})

	changes := 0
	next := r.Round(context.Background(), func() { changes++ })
	if f.total() != 2 || changes != 1 {
		t.Fatalf("first round: %d checks (want 2: the pinned reference is never checked), %d changes (want 1)", f.total(), changes)
	}
	if next != 15*time.Minute {
		t.Errorf("next round in %s, want 15m", next)
	}
	if got := r.Lookup("docker.io/library/a:1"); got.Digest != d1 || !got.Since.Equal(c.t) || got.Reason != "" {
		t.Errorf("a:1 = %+v, want %s since %s", got, d1, c.t)
	}
	if got := r.Lookup(pinned); got.Digest != d2 {
		t.Errorf("the pinned reference reads %+v, want its own digest", got)
	}

	// Within the period: nothing is checked, however many rounds.
	c.t = c.t.Add(14 * time.Minute)
	for range 5 {
		r.Round(context.Background(), func() { changes++ })
	}
	if f.total() != 2 {
		t.Fatalf("%d checks within the period, want still 2", f.total())
	}

	// A period later: each tag once more; an unchanged one keeps its Since
	// and calls nothing, a moved one gets a new Since.
	since := r.Lookup("docker.io/library/a:1").Since
	f.tags["docker.io/library/b:1"] = d2
	c.t = c.t.Add(time.Minute)
	r.Round(context.Background(), func() { changes++ })
	if f.total() != 4 || changes != 2 {
		t.Fatalf("after a period: %d checks (want 4), %d changes (want 2)", f.total(), changes)
	}
	if got := r.Lookup("docker.io/library/a:1"); !got.Since.Equal(since) {
		t.Errorf("unchanged a:1 moved its Since from %s to %s", since, got.Since)
	}
	if got := r.Lookup("docker.io/library/b:1"); got.Digest != d2 || !got.Since.Equal(c.t) {
		t.Errorf("moved b:1 = %+v, want %s since %s", got, d2, c.t)
	}

	// An image no longer wanted is forgotten.
	r.Want([]string{"docker.io/library/a:1"})
	if got := r.Lookup("docker.io/library/b:1"); got.Reason != wanted.NotChecked {
		t.Errorf("b:1 after it left the wanted set: %+v", got)
	}
	if len(r.entries) != 1 {
		t.Errorf("%d entries kept for 1 wanted tag", len(r.entries))
	}
}

// With no resync period, each tag is checked once, and a failed one again
// until it succeeds.
func TestNoPeriodChecksOnce(t *testing.T) {
	f := newFake()
	f.tags["r.example/a:1"] = d1
	f.errs["r.example/b:1"] = errors.New("dial tcp: connection refused")
	c := &clock{t: time.Unix(1_000_000, 0)}
	r := &Resolver{Head: f.head, now: c.now}
	r.Want([]string{"r.example/a:1", "r.example/b:1"})
	for range 3 {
		r.Round(context.Background(), nil)
		c.t = c.t.Add(24 * time.Hour)
	}
	if f.checks["r.example/a:1"] != 1 || f.checks["r.example/b:1"] != 3 {
		t.Errorf("checks %v: want a:1 once, the failing b:1 at each round", f.checks)
	}
}

func TestAFailedCheckFallsBackAndIsRetriedSooner(t *testing.T) {
	f := newFake()
	f.tags["r.example/a:1"] = d1
	c := &clock{t: time.Unix(1_000_000, 0)}
	r := &Resolver{Every: time.Hour, Head: f.head, now: c.now}
	r.Want([]string{"r.example/a:1"})
	r.Round(context.Background(), nil)

	f.errs["r.example/a:1"] = errors.New("dial tcp: connection refused")
	c.t = c.t.Add(time.Hour)
	next := r.Round(context.Background(), nil)
	got := r.Lookup("r.example/a:1")
	if got.Digest != "" || !strings.Contains(got.Reason, "cannot reach the registry: dial tcp: connection refused") {
		t.Fatalf("after a failed check: %+v, want no digest and the reason", got)
	}
	if next != retryFailed {
		t.Errorf("a failed check is retried in %s, want %s", next, retryFailed)
	}
	delete(f.errs, "r.example/a:1")
	c.t = c.t.Add(retryFailed)
	r.Round(context.Background(), nil)
	if got := r.Lookup("r.example/a:1"); got.Digest != d1 || !got.Since.Equal(c.t) {
		t.Errorf("after the retry: %+v", got)
	}

	// A registry that answers with something that is not a digest.
	f.tags["r.example/a:1"] = "md5:\x1b[2J"
	c.t = c.t.Add(time.Hour)
	r.Round(context.Background(), nil)
	if got := r.Lookup("r.example/a:1"); got.Digest != "" || strings.ContainsRune(got.Reason, 0x1b) || !strings.Contains(got.Reason, "not sha256") {
		t.Errorf("a bad digest reads %+v", got)
	}
}

func TestSeedKeepsSinceAcrossLeaders(t *testing.T) {
	f := newFake()
	f.tags["r.example/a:1"] = d1
	f.tags["r.example/b:1"] = d2
	then := time.Unix(500_000, 0)
	c := &clock{t: time.Unix(1_000_000, 0)}
	r := &Resolver{Every: time.Hour, Head: f.head, now: c.now}
	r.Seed("r.example/a:1", d1, then)
	r.Seed("r.example/b:1", d1, then)
	r.Seed("r.example/bad:1", "nonsense", then)
	r.Want([]string{"r.example/a:1", "r.example/b:1"})
	if got := r.Lookup("r.example/a:1"); got.Digest != d1 {
		t.Fatalf("seeded a:1 reads %+v before its check", got)
	}
	r.Round(context.Background(), nil)
	if got := r.Lookup("r.example/a:1"); got.Digest != d1 || !got.Since.Equal(then) {
		t.Errorf("a:1 = %+v, want the seeded Since %s kept", got, then)
	}
	if got := r.Lookup("r.example/b:1"); got.Digest != d2 || !got.Since.Equal(c.t) {
		t.Errorf("b:1 = %+v, want the new digest since now", got)
	}
}

func TestReasons(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("HEAD: %w", &transport.Error{StatusCode: http.StatusUnauthorized}), "refused the planner (HTTP 401)"},
		{context.DeadlineExceeded, "did not answer the planner in time"},
		{errors.New(strings.Repeat("x", 5000)), "..."},
	} {
		got := Reason(tc.err)
		if !strings.Contains(got, tc.want) || len(got) > maxReason {
			t.Errorf("Reason(%.40v) = %q (%d bytes), want it to hold %q within %d bytes", tc.err, got, len(got), tc.want, maxReason)
		}
	}
}

// TestAgainstARegistry checks with the real client against an OCI registry
// in the process: the digest is the one pushed, a moved tag is seen, a
// round costs one manifest request per tag, and credentials come from a
// pull secret.
func TestAgainstARegistry(t *testing.T) {
	var manifests atomic.Int64
	var agents sync.Map
	reg := registry.New()
	const user, pass = "planner", "s3cret"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); r.Method != http.MethodPut && r.Method != http.MethodPost && r.Method != http.MethodPatch && (!ok || u != user || p != pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if strings.Contains(r.URL.Path, "/manifests/") && r.Method == http.MethodHead {
			manifests.Add(1)
			agents.Store(r.UserAgent(), true)
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	tag := host + "/team/app:1"
	push := func() string {
		img, err := random.Image(64, 1)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(tag)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: user, Password: pass})); err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	first := push()

	// Without credentials: refused, and said so.
	c := &clock{t: time.Unix(1_000_000, 0)}
	anon := &Resolver{Every: time.Minute, now: c.now}
	anon.Want([]string{tag})
	anon.Round(context.Background(), nil)
	if got := anon.Lookup(tag); got.Digest != "" || !strings.Contains(got.Reason, "HTTP 401") {
		t.Fatalf("anonymous check: %+v, want refused with HTTP 401", got)
	}

	// With the pull secret.
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{
		"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass)),
	}}})
	client := fake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "pull", Namespace: "icd"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: cfg},
	})
	r := &Resolver{Every: time.Minute, now: c.now, Keychain: PullSecrets(client, "icd", []string{"missing", "pull"})}
	r.Want([]string{tag})
	manifests.Store(0)
	r.Round(context.Background(), nil)
	if got := r.Lookup(tag); got.Digest != first {
		t.Fatalf("check with the pull secret: %+v, want %s", got, first)
	}
	if n := manifests.Load(); n != 1 {
		t.Errorf("one round made %d manifest requests for one tag, want 1", n)
	}
	if _, ok := agents.Load(UserAgent); !ok {
		var seen []string
		agents.Range(func(k, _ any) bool { seen = append(seen, k.(string)); return true })
		if !strings.Contains(strings.Join(seen, " "), UserAgent) {
			t.Errorf("user agents %q do not name %q", seen, UserAgent)
		}
	}

	second := push()
	c.t = c.t.Add(time.Minute)
	r.Round(context.Background(), nil)
	if got := r.Lookup(tag); got.Digest != second || second == first {
		t.Errorf("after the tag moved: %+v, want %s (was %s)", got, second, first)
	}
}
