package prefetch

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// pacedPodWith returns a pod named name with containers c0..c(n-1).
func pacedPodWith(name string, n int) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for i := range n {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: fmt.Sprintf("img-%d", i)})
	}
	return p
}

func started(p *corev1.Pod, i int, at time.Time) {
	for len(p.Status.ContainerStatuses) <= i {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses,
			corev1.ContainerStatus{Name: fmt.Sprintf("c%d", len(p.Status.ContainerStatuses))})
	}
	p.Status.ContainerStatuses[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		StartedAt: metav1.NewTime(at.Truncate(time.Second))}}
}

func TestPacerAccounting(t *testing.T) {
	now := t0
	p := NewPacer(5, 10)
	if got := p.Available(now); got != 10 {
		t.Fatalf("a new pacer has %d pulls, want the burst, 10", got)
	}
	pod := pacedPodWith("a", 10)
	p.Released(pod, []string{"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"}, now)
	if got := p.Available(now.Add(10 * time.Second)); got != 0 {
		t.Fatalf("released pulls not seen yet must hold their tokens: %d available", got)
	}
	if got := p.Wait(5, now); got != 0 {
		t.Fatalf("only seen pulls can free tokens now; Wait = %s, want 0", got)
	}
	// Seen at t+2s: every container started at t+1s, so the pulls are
	// debited at t+2s (the start is known to the second).
	for i := range 10 {
		started(pod, i, now.Add(time.Second))
	}
	now = now.Add(2 * time.Second)
	p.Observe([]*corev1.Pod{pod}, now)
	if got := p.Available(now); got != 0 {
		t.Fatalf("just after 10 pulls: %d available, want 0", got)
	}
	if got := p.Wait(5, now); got < time.Second || got > time.Second+10*time.Millisecond {
		t.Fatalf("Wait(5) = %s, want a second at 5 pulls a second", got)
	}
	if got := p.Available(now.Add(time.Second)); got != 5 {
		t.Fatalf("a second later: %d available, want 5", got)
	}
	if got := p.Available(now.Add(time.Hour)); got != 10 {
		t.Fatalf("the bucket holds at most the burst: %d", got)
	}

	// A pod known to pull only some of its containers.
	b := pacedPodWith("b", 3)
	p.Released(b, []string{"c2"}, now)
	if got := p.Available(now.Add(2 * time.Second)); got != 9 {
		t.Fatalf("one pull pending: %d available, want 9", got)
	}
	// Its create failed: nothing is pending.
	p.Forget("b")
	if got := p.Available(now.Add(2 * time.Second)); got != 10 {
		t.Fatalf("after Forget: %d available, want 10", got)
	}

	// Refused pulls stay pending and are counted once.
	c := pacedPodWith("c", 2)
	p.Released(c, []string{"c0", "c1"}, now)
	c.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c0", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
		Reason: "ErrImagePull", Message: "pull QPS exceeded"}}}}
	if got := p.Observe([]*corev1.Pod{pod, c}, now); got != 1 {
		t.Fatalf("Observe counted %d refusals, want 1", got)
	}
	if got := p.Observe([]*corev1.Pod{pod, c}, now); got != 0 {
		t.Fatalf("a refusal seen again was counted again (%d)", got)
	}
	if got := p.Available(now.Add(2 * time.Second)); got != 8 {
		t.Fatalf("two pulls pending: %d available, want 8", got)
	}
	// Deleted: its pending pulls are debited when it is gone.
	now = now.Add(2 * time.Second)
	p.Observe([]*corev1.Pod{pod}, now)
	if got := p.Available(now); got != 8 {
		t.Fatalf("the gone pod's two pulls are debited now: %d available, want 8", got)
	}

	// A pod this pacer never released (made before a restart) is taken in:
	// its unstarted containers pending, its started ones debited.
	q := NewPacer(5, 10)
	old := pacedPodWith("old", 4)
	started(old, 0, now.Add(-time.Hour))
	started(old, 1, now.Add(-time.Second))
	q.Observe([]*corev1.Pod{old}, now)
	if got := q.Available(now); got != 7 {
		t.Fatalf("adopted pod: %d available, want 10 - 2 pending - 1 recent pull = 7", got)
	}

	// A pod rejected at admission pulled nothing.
	r := pacedPodWith("r", 3)
	p.Released(r, []string{"c0", "c1", "c2"}, now)
	r.Status.Phase = corev1.PodFailed
	p.Observe([]*corev1.Pod{pod, r}, now)
	if got := p.Available(now.Add(time.Hour)); got != 10 {
		t.Fatalf("a rejected pod holds no token: %d available", got)
	}

	var none *Pacer
	if none.Available(now) != Unlimited || none.MinPulls() != 1 || none.Wait(3, now) != 0 || none.Observe(nil, now) != 0 {
		t.Fatal("a nil pacer must pace nothing")
	}
	if NewPacer(0, 10) != nil {
		t.Fatal("qps 0 is the kubelet's 'no limit': no pacer")
	}
}

// kubeletSim is the kubelet as the pacer must survive it: pods start after a
// sandbox delay, each pulls its containers one after another, pulls go
// through one serial queue and a token bucket that refuses (TryAccept)
// rather than waits, and the API sees a container's start, truncated to the
// second, some time later.
type kubeletSim struct {
	rng     *rand.Rand
	qps     float64
	burst   float64
	tokens  float64
	last    time.Time
	refused int
	pulled  int
	// warden: the containers' termination messages hold their start, to
	// the nanosecond, as the warden writes it.
	warden bool
	// queue of pulls waiting for the serial puller, and when it is free.
	queue  []pullReq
	freeAt time.Time
	pods   []*simPod
}

type pullReq struct {
	pod   *simPod
	index int
	at    time.Time // asked at
}

type simPod struct {
	pod      *corev1.Pod
	readyAt  time.Time // sandbox up: first pull asked
	asked    int       // containers whose pull was asked
	visible  []time.Time
	startAts []time.Time
}

func (k *kubeletSim) tryAccept(now time.Time) bool {
	k.tokens = math.Min(k.burst, k.tokens+k.qps*now.Sub(k.last).Seconds())
	k.last = now
	if k.tokens >= 1 {
		k.tokens--
		return true
	}
	return false
}

func (k *kubeletSim) add(pod *corev1.Pod, now time.Time) {
	sp := &simPod{pod: pod, readyAt: now.Add(time.Duration(200+k.rng.IntN(1300)) * time.Millisecond),
		visible: make([]time.Time, len(pod.Spec.Containers)), startAts: make([]time.Time, len(pod.Spec.Containers))}
	k.pods = append(k.pods, sp)
}

// step runs the kubelet until now.
func (k *kubeletSim) step(now time.Time) {
	for _, sp := range k.pods {
		if sp.asked == 0 && !now.Before(sp.readyAt) && len(sp.pod.Spec.Containers) > 0 {
			k.queue = append(k.queue, pullReq{sp, 0, sp.readyAt})
			sp.asked = 1
		}
	}
	for len(k.queue) > 0 {
		sort.SliceStable(k.queue, func(i, j int) bool { return k.queue[i].at.Before(k.queue[j].at) })
		r := k.queue[0]
		start := r.at
		if k.freeAt.After(start) {
			start = k.freeAt
		}
		if start.After(now) {
			return
		}
		k.queue = k.queue[1:]
		if !k.tryAccept(start) {
			k.refused++
		} else {
			k.pulled++
		}
		done := start.Add(time.Duration(10+k.rng.IntN(150)) * time.Millisecond)
		k.freeAt = done
		startedAt := done.Add(time.Duration(10+k.rng.IntN(100)) * time.Millisecond)
		r.pod.startAts[r.index] = startedAt
		r.pod.visible[r.index] = startedAt.Add(time.Duration(k.rng.IntN(1500)) * time.Millisecond)
		if next := r.index + 1; next < len(r.pod.pod.Spec.Containers) {
			k.queue = append(k.queue, pullReq{r.pod, next, startedAt})
			r.pod.asked++
		}
	}
}

// view is the pods as the API shows them at now.
func (k *kubeletSim) view(now time.Time) []*corev1.Pod {
	var out []*corev1.Pod
	for _, sp := range k.pods {
		p := sp.pod.DeepCopy()
		for i, v := range sp.visible {
			if !v.IsZero() && !now.Before(v) {
				started(p, i, sp.startAts[i])
				if k.warden {
					p.Status.ContainerStatuses[i].State.Terminated.Message = strconv.FormatInt(sp.startAts[i].UnixNano(), 10)
				}
			}
		}
		out = append(out, p)
	}
	return out
}

// The pacer's promise, under random timing: the kubelet never refuses a
// pull, and the pulls still go at close to the kubelet's rate, with start
// times to the second as the kubelet reports them, or to the nanosecond as
// the warden writes them.
func TestPacerNeverTripsTheKubelet(t *testing.T) {
	for seed := range uint64(40) {
		warden := seed%2 == 0
		t.Run(fmt.Sprintf("seed %d warden %v", seed, warden), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			const images, qps, burst = 100, 5.0, 10
			k := &kubeletSim{rng: rng, qps: qps, burst: burst, tokens: burst, last: t0, warden: warden}
			p := NewPacer(qps, burst)
			now, left, n := t0, images, 0
			for ; k.pulled < images && now.Before(t0.Add(5*time.Minute)); now = now.Add(time.Duration(20+rng.IntN(300)) * time.Millisecond) {
				k.step(now)
				p.Observe(k.view(now), now)
				avail := p.Available(now)
				size := min(avail, 20, left)
				if left > 0 && size >= min(p.MinPulls(), left) {
					pod := pacedPodWith(fmt.Sprintf("pod-%d", n), size)
					n++
					var pulls []string
					for _, c := range pod.Spec.Containers {
						pulls = append(pulls, c.Name)
					}
					p.Released(pod, pulls, now)
					k.add(pod, now)
					left -= size
				}
			}
			if k.refused > 0 {
				t.Fatalf("the kubelet refused %d pulls", k.refused)
			}
			if k.pulled < images {
				t.Fatalf("only %d of %d pulls in 5 minutes", k.pulled, images)
			}
			// The simulated kubelet is slow to show what it did (sandbox up
			// to 1.5 s, status up to 1.5 s late), which the pacer must wait
			// for; the bench measures the real one.
			floor := time.Duration(float64(images-burst) / qps * float64(time.Second))
			took := now.Sub(t0)
			if took > floor*2 {
				t.Fatalf("%d pulls took %s; the kubelet's floor is %s", images, took, floor)
			}
			t.Logf("%d pulls took %s; the kubelet's floor is %s", images, took, floor)
		})
	}
}

// A finished container's pull is debited where the warden says it started,
// when that reads and lies in the second the kubelet reports, else at the
// end of that second, else when seen.
func TestPulledBy(t *testing.T) {
	now := t0.Add(time.Minute)
	second := metav1.NewTime(t0.Truncate(time.Second))
	exact := second.Add(123456789 * time.Nanosecond)
	for _, tc := range []struct {
		name string
		term corev1.ContainerStateTerminated
		want time.Time
	}{
		{"the warden's start", corev1.ContainerStateTerminated{StartedAt: second, Message: strconv.FormatInt(exact.UnixNano(), 10)}, exact},
		{"no message", corev1.ContainerStateTerminated{StartedAt: second}, second.Add(time.Second)},
		{"not a time", corev1.ContainerStateTerminated{StartedAt: second, Message: "exec format error"}, second.Add(time.Second)},
		{"another second", corev1.ContainerStateTerminated{StartedAt: second, Message: strconv.FormatInt(second.Add(-time.Hour).UnixNano(), 10)}, second.Add(time.Second)},
		{"no start", corev1.ContainerStateTerminated{Message: strconv.FormatInt(exact.UnixNano(), 10)}, now},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pulledBy(&tc.term, now); !got.Equal(tc.want) {
				t.Errorf("pulledBy = %v, want %v", got, tc.want)
			}
		})
	}
}
