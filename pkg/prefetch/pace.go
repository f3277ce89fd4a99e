package prefetch

import (
	"math"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/warden"
)

// Pacer keeps the pulls that a node's prefetch pods cause within the
// kubelet's own pull budget (registryPullQPS and registryBurst in its
// configuration). The kubelet admits a pull only when a token bucket of that
// rate and size holds a token; otherwise the pull fails at once with "pull
// QPS exceeded" and the container waits out an image back-off of 10 s, 20 s,
// 40 s... Within a pod the kubelet pulls one container's image after the
// other; pods are worked on in parallel, so a few pods of small images ask for
// far more than 5 pulls a second.
//
// The daemon cannot read the kubelet's bucket, so it keeps a model that never
// holds more tokens than the kubelet's does:
//
//   - a pull it has released (a container of a pod it created) and not yet
//     seen happen is counted as if it took its token now;
//   - a pull seen to have happened is debited at the latest time it can
//     have happened: its container's start (the kubelet pulls, creates, then
//     starts), to the nanosecond where the warden wrote it as its
//     termination message (warden.StartTime), else the end of the second
//     the kubelet reports, or when it was seen.
//
// Debiting a pull no earlier than it happened only ever leaves fewer tokens
// in the model, and so does counting pulls still to come as taken now. So a
// pod created only when the model holds a token for each of its pulls never
// meets the kubelet's limit, unless something else on the node (a workload)
// pulls at the same time: then a refused pull reads pending (cachestate) and
// Plan replaces the pod as soon as the budget allows, instead of the kubelet's
// back-off.
//
// The times compared are the node's: the daemon's clock, the kubelet's and
// the warden's are one (a runtime whose containers keep a clock of their
// own, as a virtual machine's can, is held to the second the kubelet
// reports; see warden.StartTime).
//
// A nil *Pacer paces nothing (the kubelet's registryPullQPS is 0). A Pacer is
// used by one goroutine.
type Pacer struct {
	qps   float64
	burst float64
	// debits are the times of the pulls seen, sorted, none older than the
	// model's horizon.
	debits []time.Time
	// pods are the prefetch pods the model knows of, by name, with their
	// pulls not seen yet.
	pods map[string]*pacedPod
}

type pacedPod struct {
	pending  map[string]bool // names of containers whose pull is not seen yet
	refused  map[string]bool // those seen refused under the kubelet's limit
	released time.Time
	listed   bool // the pod was seen in a listing
}

const (
	// horizon is how far back the model replays pulls, from a full bucket.
	// Over any window the kubelet admits at most burst + qps x window pulls,
	// so forgetting what is older can overstate the tokens by at most the
	// burst, and only after a long run of pulls at the full rate.
	horizon = time.Minute
	// lostAfter is how long a released pod may stay unlisted before its
	// pulls are debited as if they had happened (the create failed, or the
	// pod was deleted before the pod cache saw it).
	lostAfter = time.Minute
)

// NewPacer returns a pacer for a kubelet that admits qps pulls a second
// with bursts of burst; nil when qps is 0 (the kubelet does not limit).
func NewPacer(qps float64, burst int) *Pacer {
	if qps <= 0 {
		return nil
	}
	return &Pacer{qps: qps, burst: float64(max(burst, 1)), pods: map[string]*pacedPod{}}
}

// QPS is the pull rate the pacer keeps to (0 for a nil Pacer).
func (p *Pacer) QPS() float64 {
	if p == nil {
		return 0
	}
	return p.qps
}

// Unlimited is what Available returns for a nil Pacer.
const Unlimited = math.MaxInt32

// MinPulls is the fewest pulls worth a new pod while more images wait for
// the budget: about a second of the kubelet's rate, so the pods stay few
// without holding pulls back for long.
func (p *Pacer) MinPulls() int {
	if p == nil {
		return 1
	}
	return max(1, min(int(math.Ceil(p.qps)), int(p.burst)))
}

// Released records that pod, just created, will pull the images of the
// named containers.
func (p *Pacer) Released(pod *corev1.Pod, pulls []string, now time.Time) {
	if p == nil {
		return
	}
	pp := &pacedPod{pending: make(map[string]bool, len(pulls)), released: now}
	for _, c := range pulls {
		pp.pending[c] = true
	}
	p.pods[pod.Name] = pp
}

// Forget drops a pod whose creation failed: it pulls nothing.
func (p *Pacer) Forget(name string) {
	if p != nil {
		delete(p.pods, name)
	}
}

// Observe updates the model from the node's prefetch pods as listed now. A
// pod the model does not know (made by an earlier life of the daemon) is
// taken in with every container counted as a pull. It returns how many
// pulls it sees refused under the kubelet's limit for the first time.
func (p *Pacer) Observe(pods []*corev1.Pod, now time.Time) (refused int) {
	if p == nil {
		return 0
	}
	listed := make(map[string]bool, len(pods))
	for _, pod := range pods {
		listed[pod.Name] = true
		pp := p.pods[pod.Name]
		if pp == nil {
			pp = &pacedPod{pending: map[string]bool{}, released: now}
			for _, c := range pod.Spec.Containers {
				pp.pending[c.Name] = true
			}
			p.pods[pod.Name] = pp
		}
		pp.listed = true
		refused += p.observePod(pod, pp, now)
	}
	for name, pp := range p.pods {
		if listed[name] {
			continue
		}
		if pp.listed || now.Sub(pp.released) >= lostAfter {
			// Gone: whatever it had not been seen to pull may have
			// been pulled just before.
			for range pp.pending {
				p.debit(now, now)
			}
			delete(p.pods, name)
		}
	}
	p.prune(now)
	return refused
}

// observePod moves the pod's pulls that are seen to have happened from
// pending to the debits.
func (p *Pacer) observePod(pod *corev1.Pod, pp *pacedPod, now time.Time) (refused int) {
	if len(pp.pending) == 0 {
		return 0
	}
	if pod.Status.Phase == corev1.PodFailed && len(pod.Status.ContainerStatuses) == 0 {
		// Rejected at admission: nothing was pulled, nothing will be.
		clear(pp.pending)
		return 0
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if !pp.pending[cs.Name] {
			continue
		}
		switch {
		case cs.State.Running != nil:
			p.debit(cs.State.Running.StartedAt.Add(time.Second), now)
		case cs.State.Terminated != nil:
			p.debit(pulledBy(cs.State.Terminated, now), now)
		case cs.State.Waiting != nil && cachestate.RateLimited(cs.State.Waiting):
			// Refused without a token; the kubelet tries again after
			// its back-off unless Plan replaces the pod first.
			if !pp.refused[cs.Name] {
				if pp.refused == nil {
					pp.refused = map[string]bool{}
				}
				pp.refused[cs.Name] = true
				refused++
			}
			continue
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "ContainerCreating":
			// ErrImagePull, ImagePullBackOff, CreateContainerError...:
			// the pull was tried (or not needed).
			p.debit(now, now)
		default:
			continue
		}
		delete(pp.pending, cs.Name)
	}
	return refused
}

// pulledBy is the latest time a finished container's pull can have
// happened: when the warden started, as it wrote in its termination
// message, else the end of the second the kubelet reports it started in.
func pulledBy(t *corev1.ContainerStateTerminated, now time.Time) time.Time {
	if t.StartedAt.IsZero() {
		return now
	}
	if at, ok := warden.StartTime(t.Message, t.StartedAt.Time); ok {
		return at
	}
	return t.StartedAt.Add(time.Second)
}

// debit records a pull at time at, but never later than now nor earlier
// than the horizon (which would let it be forgotten at once).
func (p *Pacer) debit(at, now time.Time) {
	if at.After(now) {
		at = now
	}
	if oldest := now.Add(-horizon); at.Before(oldest) {
		return // too old to count
	}
	i := sort.Search(len(p.debits), func(i int) bool { return p.debits[i].After(at) })
	p.debits = append(p.debits, time.Time{})
	copy(p.debits[i+1:], p.debits[i:])
	p.debits[i] = at
}

func (p *Pacer) prune(now time.Time) {
	oldest := now.Add(-horizon)
	i := sort.Search(len(p.debits), func(i int) bool { return !p.debits[i].Before(oldest) })
	p.debits = append(p.debits[:0], p.debits[i:]...)
}

// tokens is the model's bucket at now: full at the horizon, then refilled at
// qps up to burst and debited once for each pull seen.
func (p *Pacer) tokens(now time.Time) float64 {
	t, last := p.burst, now.Add(-horizon)
	for _, d := range p.debits {
		if d.After(now) {
			break
		}
		if d.After(last) {
			t = math.Min(p.burst, t+p.qps*d.Sub(last).Seconds())
			last = d
		}
		t--
	}
	return math.Min(p.burst, t+p.qps*now.Sub(last).Seconds())
}

func (p *Pacer) pending() int {
	n := 0
	for _, pp := range p.pods {
		n += len(pp.pending)
	}
	return n
}

// Available is how many pulls may be released now: the model's tokens less
// the pulls released and not seen yet (Unlimited for a nil Pacer).
func (p *Pacer) Available(now time.Time) int {
	if p == nil {
		return Unlimited
	}
	return max(0, int(math.Floor(p.tokens(now)-float64(p.pending())+1e-9)))
}

// Wait is how long until n pulls are available, if nothing else happens;
// 0 when they are available now, or when only pulls seen to happen can
// free them (the pods' updates will then call for a new plan).
func (p *Pacer) Wait(n int, now time.Time) time.Duration {
	if p == nil {
		return 0
	}
	need := float64(n+p.pending()) - p.tokens(now)
	if need <= 0 || float64(n+p.pending()) > p.burst {
		return 0
	}
	return time.Duration(need/p.qps*float64(time.Second)).Round(time.Millisecond) + time.Millisecond
}

// Pulls returns the containers of pod that will make the kubelet pull:
// every PullAlways container, and the others whose image is not known to be
// on the node.
func Pulls(pod *corev1.Pod, present map[string]bool) []string {
	var out []string
	for _, c := range pod.Spec.Containers {
		if c.ImagePullPolicy == corev1.PullAlways || !present[c.Image] {
			out = append(out, c.Name)
		}
	}
	return out
}
