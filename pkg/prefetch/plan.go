package prefetch

import (
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
)

// Input is what a plan is made from.
type Input struct {
	// Now is the time of the plan.
	Now time.Time
	// Wanted are the images the node must hold (normalised, in any order).
	Wanted []string
	// Pods are the node's prefetch pods as listed; those Config.Owns
	// refuses are ignored.
	Pods []*corev1.Pod
	// Resync is the age at which a finished pod is pulled again (0: never).
	Resync time.Duration
	// Owed is the previous plan's Decision.Owed.
	Owed []string
	// Budget, when set, bounds the pulls that new pods may cause now; nil
	// when the kubelet does not limit pulls.
	Budget *Budget
}

// Budget is what the kubelet's pull limit leaves for new prefetch pods.
type Budget struct {
	// Pulls is how many pulls may start now (Pacer.Available).
	Pulls int
	// MinPulls is the fewest pulls worth a pod of their own while more
	// images wait for the budget (Pacer.MinPulls).
	MinPulls int
}

// Decision is what a sync must do.
type Decision struct {
	Create []*corev1.Pod
	Delete []*corev1.Pod
	// Rejected are the pods of Delete that ended in phase Failed (most often
	// rejected by the kubelet at admission) and are being replaced.
	Rejected []*corev1.Pod
	// Owed are wanted images due for a fresh pull (PullAlways) whose pod was
	// deleted but that got no new pod yet because of MaxPods: the caller
	// passes them back in the next Input so that the pull is not forgotten.
	Owed []string
	// Waiting counts the wanted images that got no pod because of MaxPods;
	// they get one as soon as pods are gone.
	Waiting int
	// Paced counts the pulls that wait for the kubelet's pull budget
	// (Input.Pulls): images that got no pod yet, and those of pods due for
	// a resync that are kept until the budget allows.
	Paced int
	// Pulls names, by new pod, the containers that make the kubelet pull
	// (PullAlways, or an image not seen on the node): Pacer.Released.
	Pulls map[string][]string
	// RequeueAfter is when the next kept pod becomes due for a resync or a
	// retry (0: none).
	RequeueAfter time.Duration
}

// Back-off of a pod in phase Failed: RetryDelay.
const (
	retryBase = 30 * time.Second
	retryMax  = 10 * time.Minute
)

// RetryDelay is how long after its creation a prefetch pod of the given
// generation that ended in phase Failed is replaced: 30s doubled at each
// generation, at most 10 minutes. The generation counts the attempts, so a
// node that keeps rejecting the pods (OutOfpods) is asked less and less
// often.
func RetryDelay(generation int) time.Duration {
	d := retryBase
	for i := 0; i < generation && d < retryMax; i++ {
		d *= 2
	}
	return min(d, retryMax)
}

// Plan decides, for one node, which prefetch pods to create and delete so
// that every wanted image is held by a pod, and nothing else is. Only pods
// Config.Owns are considered; of those:
//
//  1. a pod none of whose images is wanted any more is deleted;
//  2. a pod in phase Failed (rejected at admission, evicted) is replaced
//     once RetryDelay(its generation) has passed since its creation; until
//     then it stands for its images, which read failed with the kubelet's
//     reason;
//  3. a finished pod at least resync old is replaced, its wanted images
//     pulled again, PullAlways, so that a moved tag is fetched anew (with a
//     Budget, only while the budget lasts; the others are kept meanwhile);
//  4. a finished pod that also holds unwanted images is replaced,
//     PullIfNotPresent (the images are on the node: no pull, only a
//     short-lived sandbox), which frees the unwanted ones;
//  5. a pod stuck on the kubelet's pull limit (cachestate.Throttled) is
//     replaced at once, rather than left to the kubelet's image back-off;
//  6. any other pod is kept; one still pulling is left alone even when it
//     holds unwanted images, so a new image never disturbs the pulls under
//     way;
//  7. wanted images held by no kept pod go into new pods, PullIfNotPresent
//     unless rule 3 (or Input.Owed) asks for PullAlways.
//
// New pods hold up to BatchSize images each, sorted. With a Budget, the
// images that need a pull (PullAlways, or not seen on the node) go into new
// pods only while Budget.Pulls lasts, MinPulls to a pod (see batch); the
// others wait (Paced, Waiting) for a later plan. A replacement's
// generation is one more than the highest it replaces, so its name never
// clashes with a pod that is still terminating.
//
// With MaxPods, the node never holds more pods than that, counting every
// owned pod until it is gone (terminating ones, and those this plan
// deletes): new pods beyond the free slots wait (Waiting, Owed), and when the
// pods kept plus those the uncovered images need would exceed MaxPods,
// finished pods that are not full are merged into new ones, fewest images
// first, so that images added one by one cannot fill the cap with
// one-image pods.
//
// The same inputs always give the same decision.
func Plan(in Input, cfg Config) Decision {
	isWanted := make(map[string]bool, len(in.Wanted))
	for _, w := range in.Wanted {
		isWanted[w] = true
	}
	var pods []*corev1.Pod
	for _, p := range in.Pods {
		if cfg.Owns(p) {
			pods = append(pods, p)
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	present := map[string]bool{} // images a container ran from: on the node
	for _, st := range cachestate.Summarize(pods) {
		if st.State == cachestate.Cached {
			present[st.Image] = true
		}
	}

	var d Decision
	covered := map[string]bool{}
	pullAgain := map[string]bool{} // images whose new pod pulls them PullAlways
	for _, img := range in.Owed {
		pullAgain[img] = true
	}
	var wake time.Time
	wakeAt := func(t time.Time) {
		if wake.IsZero() || t.Before(wake) {
			wake = t
		}
	}
	dueBudget := 0 // pulls left for replacing pods due for a resync
	if in.Budget != nil {
		dueBudget = in.Budget.Pulls
	}
	nextGen := 0
	kept := 0                   // pods kept, covering their wanted images
	var mergeable []*corev1.Pod // kept pods that are finished and not full
	replace := func(p *corev1.Pod, keep []string, due bool) {
		d.Delete = append(d.Delete, p)
		nextGen = max(nextGen, Generation(p)+1)
		for _, img := range keep {
			pullAgain[img] = pullAgain[img] || due
		}
	}
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue // going: its images count as not covered
		}
		images := Images(p)
		var keep []string
		for _, img := range images {
			if isWanted[img] {
				keep = append(keep, img)
			}
		}
		failed := p.Status.Phase == corev1.PodFailed
		finished := len(keep) > 0 && cachestate.Finished(p)
		due := finished && in.Resync > 0 && !in.Now.Before(p.CreationTimestamp.Add(in.Resync))
		retry := p.CreationTimestamp.Add(RetryDelay(Generation(p)))
		switch {
		case len(keep) == 0: // rule 1
			d.Delete = append(d.Delete, p)
		case failed && in.Now.Before(retry): // rule 2, backing off
			kept++
			for _, img := range keep {
				covered[img] = true
			}
			wakeAt(retry)
		case failed: // rule 2
			d.Rejected = append(d.Rejected, p)
			replace(p, keep, due)
		case due && in.Budget != nil && dueBudget < min(in.Budget.MinPulls, len(keep)):
			// rule 3, paced: kept as it is until the budget allows
			kept++
			for _, img := range keep {
				covered[img] = true
			}
			d.Paced += len(keep)
		case due: // rule 3
			dueBudget -= len(keep)
			replace(p, keep, true)
		case finished && len(keep) < len(images): // rule 4
			replace(p, keep, false)
		case cachestate.Throttled(p): // rule 5
			replace(p, keep, false)
		default: // rule 6
			kept++
			for _, img := range keep {
				covered[img] = true
			}
			if finished && len(images) < cfg.batchSize() {
				mergeable = append(mergeable, p)
			}
			if finished && in.Resync > 0 {
				wakeAt(p.CreationTimestamp.Add(in.Resync))
			}
		}
	}

	var uncovered []string // rule 7
	for _, w := range sortedUnique(in.Wanted) {
		if !covered[w] {
			uncovered = append(uncovered, w)
		}
	}
	if cfg.MaxPods > 0 {
		for _, p := range cfg.merge(kept, len(uncovered), mergeable) {
			replace(p, Images(p), false)
			uncovered = append(uncovered, Images(p)...)
		}
		uncovered = sortedUnique(uncovered)
	}
	pulls := func(img string) bool { return pullAgain[img] || !present[img] }
	batches, paced := cfg.batch(uncovered, pulls, in.Budget)
	owe := func(images []string) {
		d.Waiting += len(images)
		for _, img := range images {
			if pullAgain[img] {
				d.Owed = append(d.Owed, img)
			}
		}
	}
	owe(paced)
	d.Paced += len(paced)
	if free := cfg.MaxPods - len(pods); cfg.MaxPods > 0 && len(batches) > max(free, 0) {
		for _, b := range batches[max(free, 0):] {
			owe(b)
		}
		batches = batches[:max(free, 0)]
	}
	policy := func(img string) corev1.PullPolicy {
		if pullAgain[img] {
			return corev1.PullAlways
		}
		return corev1.PullIfNotPresent
	}
	for _, b := range batches {
		pod := cfg.pod(b, nextGen, policy)
		d.Create = append(d.Create, pod)
		if d.Pulls == nil {
			d.Pulls = map[string][]string{}
		}
		var names []string
		for _, c := range pod.Spec.Containers {
			if pulls(c.Image) {
				names = append(names, c.Name)
			}
		}
		d.Pulls[pod.Name] = names
	}
	if !wake.IsZero() {
		d.RequeueAfter = max(wake.Sub(in.Now), time.Second)
	}
	return d
}

// batch cuts images (sorted, distinct) into the images of new pods, and
// those that wait for the pull budget. Without a budget, pods hold BatchSize
// images each. With one, the images that need a pull go MinPulls to a pod
// (about a second of the kubelet's rate: several small pods in flight let
// one pod's sandbox and container starts overlap another's pulls) while
// the budget lasts, and never fewer than MinPulls unless no more are left;
// images already on the node cost nothing and fill those pods up to
// BatchSize, then pods of their own.
func (c Config) batch(images []string, pulls func(string) bool, bu *Budget) (batches [][]string, paced []string) {
	if bu == nil {
		return split(images, c.batchSize()), nil
	}
	var free, costly []string
	for _, img := range images {
		if pulls(img) {
			costly = append(costly, img)
		} else {
			free = append(free, img)
		}
	}
	per, left := min(max(bu.MinPulls, 1), c.batchSize()), bu.Pulls
	for len(costly) > 0 {
		n := min(per, left, len(costly))
		if n < min(per, len(costly)) {
			break
		}
		b := append([]string(nil), costly[:n]...)
		costly, left = costly[n:], left-n
		fill := min(c.batchSize()-n, len(free))
		b, free = append(b, free[:fill]...), free[fill:]
		batches = append(batches, sortedUnique(b))
	}
	return append(batches, split(free, c.batchSize())...), costly
}

// merge picks the finished pods to merge, fewest images first: the fewest
// that make the kept pods and the new ones the uncovered images need fit in
// MaxPods, else those that come closest (none if merging cannot help).
func (c Config) merge(kept, uncovered int, mergeable []*corev1.Pod) []*corev1.Pod {
	size := c.batchSize()
	need := func(kept, uncovered int) int { return kept + (uncovered+size-1)/size }
	best := need(kept, uncovered)
	if best <= c.MaxPods {
		return nil
	}
	sorted := append([]*corev1.Pod(nil), mergeable...)
	sort.SliceStable(sorted, func(i, j int) bool { return len(sorted[i].Spec.Containers) < len(sorted[j].Spec.Containers) })
	picked := 0
	for k, p := range sorted {
		kept, uncovered = kept-1, uncovered+len(p.Spec.Containers)
		if n := need(kept, uncovered); n < best {
			best, picked = n, k+1
		}
		if best <= c.MaxPods {
			break
		}
	}
	return sorted[:picked]
}

func (c Config) batchSize() int { return max(c.BatchSize, 1) }

// split cuts images (sorted, distinct) into batches of at most size.
func split(images []string, size int) [][]string {
	var out [][]string
	for len(images) > 0 {
		n := min(size, len(images))
		out = append(out, images[:n:n])
		images = images[n:]
	}
	return out
}
