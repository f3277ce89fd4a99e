package prefetch

import (
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// simNode is a node's prefetch pods as the API lists them, one plan a round:
// the kubelet finishes a pod two rounds after its creation and the API
// forgets a deleted pod two rounds after its deletion, so plans also see pods
// pulling and pods terminating.
type simNode struct {
	t     *testing.T
	pods  []*corev1.Pod
	since map[string]int // pod name -> round of its creation, then of its deletion
	// held and cached are the images once held by a live pod, and once
	// read cached by cachestate.Summarize.
	held, cached map[string]bool
	// pulledAgain counts, by image, the containers created PullAlways.
	pulledAgain map[string]int
}

func newSimNode(t *testing.T) *simNode {
	return &simNode{t: t, since: map[string]int{}, held: map[string]bool{}, cached: map[string]bool{}, pulledAgain: map[string]int{}}
}

// advance lets the kubelet and the API move on to round.
func (n *simNode) advance(round int, now time.Time) {
	var pods []*corev1.Pod
	for _, p := range n.pods {
		switch {
		case p.DeletionTimestamp != nil && n.since[p.Name] <= round-2:
			continue // gone
		case p.DeletionTimestamp == nil && !cachestate.Finished(p) && n.since[p.Name] <= round-2:
			p = asListed(p, p.CreationTimestamp.Time, "cached")
		}
		pods = append(pods, p)
	}
	n.pods = pods
	n.check("after the kubelet's round")
}

// apply carries a plan out, as the controller does.
func (n *simNode) apply(d Decision, round int, now time.Time) {
	for _, del := range d.Delete {
		i := slices.IndexFunc(n.pods, func(p *corev1.Pod) bool { return p.Name == del.Name })
		if i < 0 || n.pods[i].DeletionTimestamp != nil {
			n.t.Fatalf("round %d deletes %s, which is not there or already going", round, del.Name)
		}
		n.pods[i] = n.pods[i].DeepCopy()
		n.pods[i].DeletionTimestamp = ptrTo(metav1.NewTime(now))
		n.since[del.Name] = round
	}
	for _, p := range d.Create {
		if slices.ContainsFunc(n.pods, func(q *corev1.Pod) bool { return q.Name == p.Name }) {
			n.t.Fatalf("round %d creates %s, which exists: the create would meet AlreadyExists", round, p.Name)
		}
		n.pods = append(n.pods, asListed(p, now, "pulling"))
		n.since[p.Name] = round
		for _, c := range p.Spec.Containers {
			if c.ImagePullPolicy == corev1.PullAlways {
				n.pulledAgain[c.Image]++
			}
		}
	}
	n.check(fmt.Sprintf("after round %d's plan", round))
}

// check fails when an image once held has no live pod any more, or once
// cached reads otherwise.
func (n *simNode) check(when string) {
	n.t.Helper()
	live := map[string]bool{}
	for _, p := range n.pods {
		if p.DeletionTimestamp == nil {
			for _, img := range Images(p) {
				live[img] = true
			}
		}
	}
	for img := range n.held {
		if !live[img] {
			n.t.Fatalf("%s: %s is held by no live pod any more", when, short(img))
		}
	}
	for img := range live {
		n.held[img] = true
	}
	states := map[string]wire.State{}
	for _, st := range cachestate.Summarize(n.pods) {
		states[st.Image] = st.State
	}
	for img := range n.cached {
		if states[img] != wire.Cached {
			n.t.Fatalf("%s: %s was cached and now reads %q", when, short(img), states[img])
		}
	}
	for img, st := range states {
		if st == wire.Cached {
			n.cached[img] = true
		}
	}
}

// From 100 images wanted at once, a pull budget makes pods of MinPulls
// images; once all are in, rule 9 merges them, make before break, into pods
// of BatchSize, and rule 6 removes the small ones. No image is ever left
// without a pod, none cached ever reads otherwise, and the plans stop
// changing anything.
func TestPlanConsolidatesSmallPods(t *testing.T) {
	const images, batch = 100, 20
	var all []string
	for i := range images {
		all = append(all, img(fmt.Sprintf("i%03d", i)))
	}
	fullPods := (images + batch - 1) / batch
	for _, tc := range []struct {
		name    string
		maxPods int
		budget  *Budget
		// wanted is how many of the images are wanted at a round.
		wanted func(round int) int
		// settle is the last round that may change anything: the rounds
		// that fill the node, then three a merge (create, see it finish
		// and delete the merged pods, see those terminate), and one more
		// a merge when MaxPods makes it wait until they are gone.
		settle int
	}{
		{name: "all at once, 5 pulls a round", budget: &Budget{Pulls: 5, MinPulls: 5},
			wanted: func(int) int { return images }, settle: images/5 + 1 + 3*fullPods},
		{name: "all at once, 5 pulls a round, one slot free", maxPods: images/5 + 1, budget: &Budget{Pulls: 5, MinPulls: 5},
			wanted: func(int) int { return images }, settle: images/5 + 1 + 4*fullPods},
		{name: "all at once, 5 pulls a round, under the default cap", maxPods: 50, budget: &Budget{Pulls: 5, MinPulls: 5},
			wanted: func(int) int { return images }, settle: images/5 + 1 + 3*fullPods},
		{name: "one image a round, no budget", wanted: func(round int) int { return min(round+1, images) },
			settle: images + 1 + 3*fullPods},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.BatchSize, c.MaxPods = batch, tc.maxPods
			n := newSimNode(t)
			last := -1 // the last round that changed anything
			for round := range tc.settle + 20 {
				now := t0.Add(time.Duration(round) * time.Second)
				n.advance(round, now)
				if n.plan(Input{Now: now, Wanted: all[:tc.wanted(round)], Budget: tc.budget}, c, round) {
					last = round
				}
			}
			if last > tc.settle {
				t.Fatalf("the plans still changed pods at round %d, after round %d", last, tc.settle)
			}
			n.checkSettled(images, fullPods, batch)
			t.Logf("settled at round %d (bound %d)", last, tc.settle)
		})
	}
}

// plan makes round's plan over the node's pods and carries it out, failing
// when it pulls past in.Budget or leaves more pods than c.MaxPods. It
// reports whether the plan changed anything.
func (n *simNode) plan(in Input, c Config, round int) bool {
	n.t.Helper()
	in.Pods = n.pods
	d := Plan(in, c)
	if in.Budget != nil {
		pulls := 0
		for _, p := range d.Create {
			pulls += len(d.Pulls[p.Name])
		}
		if pulls > in.Budget.Pulls {
			n.t.Fatalf("round %d: %d pulls, over the budget of %d", round, pulls, in.Budget.Pulls)
		}
	}
	n.apply(d, round, in.Now)
	if c.MaxPods > 0 && len(n.pods) > c.MaxPods {
		n.t.Fatalf("round %d: %d pods, over the cap of %d", round, len(n.pods), c.MaxPods)
	}
	return len(d.Create)+len(d.Delete) > 0
}

// checkSettled fails unless every one of images is cached and the node
// holds pods pods of up to batch images.
func (n *simNode) checkSettled(images, pods, batch int) {
	n.t.Helper()
	if len(n.cached) != images {
		n.t.Fatalf("%d of %d images cached", len(n.cached), images)
	}
	var sizes []int
	for _, p := range n.pods {
		sizes = append(sizes, len(p.Spec.Containers))
	}
	if len(n.pods) != pods {
		n.t.Fatalf("%d pods left, of %v images; want %d of %d", len(n.pods), sizes, pods, batch)
	}
}

// A resync under a pull budget makes before it breaks: the 100 images of a
// node settled on pods of 20 are pulled again, 5 a round, in new pods while
// the old ones stay; each old pod goes once all its images are cached anew,
// and rule 9 merges the new small pods. No image reads anything but cached
// at any time, each is pulled again exactly once, and the node settles again
// on pods of 20.
func TestPlanResyncMakesBeforeBreak(t *testing.T) {
	const images, batch, pulls = 100, 20, 5
	var all []string
	for i := range images {
		all = append(all, img(fmt.Sprintf("i%03d", i)))
	}
	fullPods := (images + batch - 1) / batch
	c := cfg
	c.BatchSize = batch
	for _, tc := range []struct {
		name    string
		maxPods int
	}{
		{name: "no cap"},
		{name: "under the default cap", maxPods: 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.MaxPods = tc.maxPods
			budget := &Budget{Pulls: pulls, MinPulls: pulls}
			n := newSimNode(t)
			// Fill and settle, as TestPlanConsolidatesSmallPods, well
			// within the resync period.
			const resync, fill = time.Hour, 60
			for round := range fill {
				now := t0.Add(time.Duration(round) * time.Second)
				n.advance(round, now)
				n.plan(Input{Now: now, Wanted: all, Resync: resync, Budget: budget}, c, round)
			}
			n.checkSettled(images, fullPods, batch)
			if len(n.pulledAgain) != 0 {
				t.Fatalf("the fill pulled %d images again before any resync", len(n.pulledAgain))
			}
			// Then every pod is due at once. The bound: a round for each
			// MinPulls images, two for the last fresh pod to finish, one to
			// delete the due pods, then three a merge (create, see it
			// finish and delete the merged pods, see those terminate).
			settle := images/pulls + 2 + 1 + 3*fullPods
			last := -1
			for round := fill; round < fill+settle+20; round++ {
				now := t0.Add(resync + time.Duration(round)*time.Second)
				n.advance(round, now)
				if n.plan(Input{Now: now, Wanted: all, Resync: resync, Budget: budget}, c, round) {
					last = round - fill
				}
			}
			if last > settle {
				t.Fatalf("the plans still changed pods %d rounds into the resync, after %d", last, settle)
			}
			for _, im := range all {
				if got := n.pulledAgain[im]; got != 1 {
					t.Errorf("%s pulled again %d times, want once", short(im), got)
				}
			}
			n.checkSettled(images, fullPods, batch)
			t.Logf("resync settled after %d rounds (bound %d)", last, settle)
		})
	}
}
