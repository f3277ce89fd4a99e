// Package resolve reads, for the planner, the digest each wanted tag points
// to: one HEAD of its manifest per tag and resync period for the whole
// cluster, so that node daemons pull a tag again only when it moved, and
// the registry sees one check per tag instead of one pull per node.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	kauth "github.com/google/go-containerregistry/pkg/authn/kubernetes"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
)

// Defaults of a Resolver's settings.
const (
	// DefaultWorkers is how many checks run at once.
	DefaultWorkers = 4
	// DefaultTimeout bounds one check (its token exchange included).
	DefaultTimeout = 15 * time.Second
	// retryFailed is the most a failed check waits for its retry (less
	// than Every when that is longer): a registry that was down a moment
	// is not left unchecked for a whole resync period.
	retryFailed = 2 * time.Minute
	// maxReason bounds a reason's length.
	maxReason = 200
)

// Result is what the resolver knows of one image.
type Result struct {
	// Digest is the manifest digest the tag pointed to at the last check
	// that succeeded; Since is when it was first seen.
	Digest string
	Since  time.Time
	// Reason says why there is no digest (the last check failed, or none
	// ran yet): "" when Digest is set.
	Reason string
}

// Head returns the digest of ref's manifest as the registry serves it now.
type Head func(ctx context.Context, ref string, keychain authn.Keychain) (string, error)

// Resolver checks the wanted tags, each once per Every (a failed one
// sooner), and remembers the digests. Its memory is one entry per wanted
// tag: Want drops the others.
type Resolver struct {
	// Every is how often a tag is checked again (--resync-period); 0
	// checks each once.
	Every time.Duration
	// Workers and Timeout: DefaultWorkers and DefaultTimeout when 0.
	Workers int
	Timeout time.Duration
	// Keychain returns the credentials of a round of checks (the
	// install's pull secrets, read again each round so that a rotated
	// secret is used), anonymous when nil.
	Keychain func(ctx context.Context) authn.Keychain
	// Head is the check; NewRemoteHead's when nil.
	Head Head
	// Active, when set, says whether to check at all (the planner checks
	// while it leads only).
	Active func() bool

	now     func() time.Time
	mu      sync.Mutex
	entries map[string]*entry
	wake    chan struct{}
}

type entry struct {
	Result
	checked time.Time // the last check, failed or not (zero: none yet)
}

// Seed records what an earlier leader published, so that a planner that
// takes over keeps each digest's Since: the first check that finds the
// same digest changes nothing, and no node pulls again.
func (r *Resolver) Seed(img, digest string, since time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	if _, ok := r.entries[img]; !ok && imageref.IsDigest(digest) {
		r.entries[img] = &entry{Result: Result{Digest: digest, Since: since}}
	}
}

// Want sets the images to check: tags only (a reference pinned by digest
// never moves); what is no longer wanted is forgotten.
func (r *Resolver) Want(images []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	keep := make(map[string]bool, len(images))
	added := false
	for _, img := range images {
		if imageref.Pinned(img) != "" {
			continue
		}
		keep[img] = true
		if _, ok := r.entries[img]; !ok {
			r.entries[img] = &entry{Result: Result{Reason: wanted.NotChecked}}
			added = true
		}
	}
	for img := range r.entries {
		if !keep[img] {
			delete(r.entries, img)
		}
	}
	if added {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// Lookup is what is known of img: for a pinned reference its own digest;
// for a tag not wanted, wanted.NotChecked.
func (r *Resolver) Lookup(img string) Result {
	if d := imageref.Pinned(img); d != "" {
		return Result{Digest: d}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.entries[img]; ok {
		return e.Result
	}
	return Result{Reason: wanted.NotChecked}
}

func (r *Resolver) init() {
	if r.entries == nil {
		r.entries = map[string]*entry{}
		r.wake = make(chan struct{}, 1)
	}
	if r.now == nil {
		r.now = time.Now
	}
}

// Run checks the images due until ctx ends, calling changed after a round
// that changed a digest or a reason.
func (r *Resolver) Run(ctx context.Context, changed func()) {
	r.mu.Lock()
	r.init()
	wake := r.wake
	r.mu.Unlock()
	for {
		next := r.Round(ctx, changed)
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// Round checks every image that is due now and returns how long until the
// next one is; it calls changed when a digest or a reason changed.
func (r *Resolver) Round(ctx context.Context, changed func()) time.Duration {
	if r.Active != nil && !r.Active() {
		return time.Second
	}
	r.mu.Lock()
	r.init()
	now := r.now()
	var due []string
	for img, e := range r.entries {
		if at, ok := r.dueAt(e); ok && !at.After(now) {
			due = append(due, img)
		}
	}
	r.mu.Unlock()
	slices.Sort(due) // the same order every round: easier to follow in logs
	if len(due) > 0 {
		r.check(ctx, due, changed)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next := time.Duration(0)
	now = r.now()
	for _, e := range r.entries {
		at, ok := r.dueAt(e)
		if !ok {
			continue
		}
		if d := at.Sub(now); next == 0 || d < next {
			next = max(d, time.Second)
		}
	}
	if next == 0 {
		next = time.Hour // nothing to check: Want wakes the loop
	}
	return next
}

// dueAt is when e is checked next: at once when never checked; Every after
// a check that read a digest (never again when Every is 0: ok is false);
// sooner after one that failed.
func (r *Resolver) dueAt(e *entry) (at time.Time, ok bool) {
	switch {
	case e.checked.IsZero():
		return time.Time{}, true // now
	case e.Reason != "":
		wait := retryFailed
		if r.Every > 0 {
			wait = min(r.Every, retryFailed)
		}
		return e.checked.Add(wait), true
	case r.Every == 0:
		return time.Time{}, false
	}
	return e.checked.Add(r.Every), true
}

// check runs the checks of images, Workers at a time.
func (r *Resolver) check(ctx context.Context, images []string, changed func()) {
	var keychain authn.Keychain = anonymous{}
	if r.Keychain != nil {
		if k := r.Keychain(ctx); k != nil {
			keychain = k
		}
	}
	head := r.Head
	if head == nil {
		head = NewRemoteHead()
	}
	workers := r.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	work := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	moved := false
	for range min(workers, len(images)) {
		wg.Go(func() {
			for img := range work {
				cctx, cancel := context.WithTimeout(ctx, timeout)
				digest, err := head(cctx, img, keychain)
				cancel()
				if ctx.Err() != nil {
					continue // stopping: record nothing
				}
				if r.record(img, digest, err) {
					mu.Lock()
					moved = true
					mu.Unlock()
				}
			}
		})
	}
	for _, img := range images {
		select {
		case work <- img:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if moved && changed != nil {
		changed()
	}
}

// record keeps a check's result and says whether it changed what Lookup
// returns. A failed check keeps nothing of the digest before it: a node
// falls back to pulling the image again every resync, which finds a moved
// tag whatever the planner can read.
func (r *Resolver) record(img, digest string, err error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[img]
	if !ok {
		return false // no longer wanted
	}
	e.checked = r.now()
	before := e.Result
	switch {
	case err != nil:
		e.Result = Result{Reason: Reason(err)}
	case !imageref.IsDigest(digest):
		e.Result = Result{Reason: fmt.Sprintf("the registry answered with digest %s, which is not sha256", imageref.Quote(digest))}
	case digest != e.Digest:
		e.Result = Result{Digest: digest, Since: e.checked.Truncate(time.Second)}
		klog.V(2).InfoS("Tag resolved", "image", img, "digest", digest, "before", before.Digest)
	}
	return e.Result != before
}

// Reason is why a check failed, in a few words a user acts on.
func Reason(err error) string {
	var terr *transport.Error
	var nerr net.Error
	var msg string
	switch {
	case errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden):
		msg = fmt.Sprintf("the registry refused the planner (HTTP %d): its credentials are the install's --image-pull-secret Secrets (a node's own, e.g. a credential provider, are not seen)", terr.StatusCode)
	case errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound:
		msg = "the registry has no such tag (HTTP 404)"
	case errors.As(err, &terr):
		msg = fmt.Sprintf("the registry answered HTTP %d", terr.StatusCode)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		msg = "the registry did not answer the planner in time"
	default:
		msg = "the planner cannot reach the registry: " + err.Error()
	}
	msg = imageref.Printable(msg)
	if len(msg) > maxReason {
		msg = imageref.Prefix(msg, maxReason-len("...")) + "..."
	}
	return msg
}

// anonymous is the keychain of a planner with no pull secrets: it never
// reads the host's Docker configuration (authn.DefaultKeychain does).
type anonymous struct{}

func (anonymous) Resolve(authn.Resource) (authn.Authenticator, error) { return authn.Anonymous, nil }

// NewRemoteHead returns a Head that asks the registry with a HEAD of the
// manifest (every manifest media type accepted, so the digest is the one a
// pull by tag resolves to), with a user agent that names the planner.
// Registries are reached over plain HTTP only where containerd would by
// default too: localhost, loopback and private (RFC 1918) addresses.
func NewRemoteHead() Head {
	return func(ctx context.Context, ref string, keychain authn.Keychain) (string, error) {
		r, err := name.ParseReference(ref)
		if err != nil {
			return "", err
		}
		d, err := remote.Head(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(keychain),
			remote.WithUserAgent(UserAgent), remote.WithRetryBackoff(remote.Backoff{Steps: 1}))
		if err != nil {
			return "", err
		}
		return d.Digest.String(), nil
	}
}

// UserAgent is what the planner's checks call themselves, so that a
// registry's log tells them from the kubelets' pulls.
const UserAgent = "image-cache-daemon-planner"

// PullSecrets returns a Resolver.Keychain that reads the named Secrets of
// namespace (the install's --image-pull-secret Secrets, by name: the
// planner may get those and no other) at each round. A Secret that cannot
// be read is left out and logged; the others still count.
func PullSecrets(client kubernetes.Interface, namespace string, names []string) func(context.Context) authn.Keychain {
	if len(names) == 0 {
		return nil
	}
	return func(ctx context.Context) authn.Keychain {
		var secrets []corev1.Secret
		for _, n := range names {
			s, err := client.CoreV1().Secrets(namespace).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				klog.FromContext(ctx).Error(err, "Reading a pull secret for the tag checks; checking without it", "secret", klog.KRef(namespace, n))
				continue
			}
			secrets = append(secrets, *s)
		}
		k, err := kauth.NewFromPullSecrets(ctx, secrets)
		if err != nil {
			klog.FromContext(ctx).Error(err, "Reading the pull secrets for the tag checks; checking anonymously")
			return nil
		}
		return k
	}
}
