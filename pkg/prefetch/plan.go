package prefetch

import (
	"slices"
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
// Config.Owns are considered; pods being deleted hold no image (they still
// count against MaxPods, and what they cached is on the node). Of the
// others:
//
//  1. a pod none of whose images is wanted any more is deleted;
//  2. a pod in phase Failed (rejected at admission, evicted) is replaced
//     once RetryDelay(its generation) has passed since its creation; until
//     then it stands for its images, which read failed with the kubelet's
//     reason. Its replacement also takes those of its wanted images that
//     other pods hold, when they are on the node and not due for a fresh
//     pull (they cost nothing), so that a refused rule-9 pod is retried at
//     a growing generation, and back-off, not remade at the same one;
//  3. a finished pod at least resync old is replaced, its wanted images
//     pulled again, PullAlways, so that a moved tag is fetched anew (with a
//     Budget, only while the budget lasts; the others are kept meanwhile);
//  4. a finished pod that also holds unwanted images is replaced,
//     PullIfNotPresent (the images are on the node: no pull, only a
//     short-lived sandbox), which frees the unwanted ones;
//  5. a pod stuck on the kubelet's pull limit (cachestate.Throttled) is
//     replaced at once, rather than left to the kubelet's image back-off;
//  6. a finished pod that rule 7 would keep is deleted when every one of
//     its images is cached in another such pod that outranks it: holds
//     more images, or as many and is newer, or as old and has the greater
//     name. The images stay held by that pod (or, when it is superseded
//     too, by the one that outranks it), and the order is strict, so of
//     two equal pods exactly one stays. This ends rule 9's merges and
//     removes duplicate holders;
//  7. any other pod is kept; one still pulling is left alone even when it
//     holds unwanted images, so a new image never disturbs the pulls under
//     way;
//  8. wanted images held by no kept pod go into new pods, PullIfNotPresent
//     unless rule 3 (or Input.Owed) asks for PullAlways;
//  9. when the node is quiet (every pod finished and none in phase Failed;
//     nothing created, deleted, Waiting or Paced by the rules above) and
//     below MaxPods, "small" pods (kept by rule 7, every image cached in
//     them and failed in no pod, fewer than BatchSize images) are merged:
//     one new pod takes the images of the smallest (fewest images first,
//     then by name), as many as fit in BatchSize images, when at least two
//     do (it then makes one pod fewer). It is PullIfNotPresent, one
//     generation above the highest it merges (more if that name is taken).
//     Make before break: the small pods stay until it has finished, then
//     rule 6 deletes them, so every image stays held and reads cached
//     (cachestate.Summarize). Rule 6 leaves no small pod whose images
//     another holds, so it holds more images than each pod it merges:
//     rule 6 deletes them, never it, and they are never merged again. Its
//     images are on the node: it causes no pull (Decision.Pulls is empty
//     for it) and needs no Budget.
//
// New pods hold up to BatchSize images each, sorted. With a Budget, the
// images that need a pull (PullAlways, or not seen on the node) go into new
// pods only while Budget.Pulls lasts, MinPulls to a pod (see batch); the
// others wait (Paced, Waiting) for a later plan, and rule 9 gathers the
// small pods this leaves once all are in. A replacement's generation is one
// more than the highest it replaces, so its name never clashes with a pod
// that is still terminating.
//
// With MaxPods, the node never holds more pods than that, counting every
// owned pod until it is gone (terminating ones, and those this plan
// deletes): new pods beyond the free slots wait (Waiting, Owed), and when the
// pods kept plus those the uncovered images need would exceed MaxPods,
// finished pods that are not full are merged into new ones, fewest images
// first, so that images added one by one cannot fill the cap with
// one-image pods. That merge deletes the pods first (break before make),
// since it happens when there is no slot for rule 9's.
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
	reissue := map[string]bool{}   // images on the node that a rule-2 replacement holds, covered or not
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
	kept := 0                // pods kept, covering their wanted images
	busy := false            // a pod is not finished, or in phase Failed: rule 9 waits
	var settled []settledPod // kept by rule 7 and finished
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
		busy = busy || failed || !finished
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
			for _, img := range keep {
				reissue[img] = reissue[img] || (present[img] && !pullAgain[img])
			}
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
		default: // rules 6 and 7
			kept++
			for _, img := range keep {
				covered[img] = true
			}
			if finished {
				settled = append(settled, newSettledPod(p))
			}
		}
	}

	var mergeable []*corev1.Pod    // kept pods that are finished and not full
	var small []settledPod         // rule 9's candidates
	failedAny := map[string]bool{} // failed in a pod (in a quiet node every live pod is settled)
	for _, s := range settled {
		for _, img := range s.failed {
			failedAny[img] = true
		}
	}
	gone := superseded(settled)
	for _, s := range settled {
		if gone[s.pod] { // rule 6
			d.Delete = append(d.Delete, s.pod)
			kept--
			continue
		}
		if len(s.images) < cfg.batchSize() {
			mergeable = append(mergeable, s.pod)
			if len(s.cached) == len(s.images) && !slices.ContainsFunc(s.images, func(img string) bool { return failedAny[img] }) {
				small = append(small, s)
			}
		}
		if in.Resync > 0 {
			wakeAt(s.pod.CreationTimestamp.Add(in.Resync))
		}
	}

	var uncovered []string // rule 8
	for _, w := range sortedUnique(in.Wanted) {
		if !covered[w] || reissue[w] {
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
	free := cfg.MaxPods - len(pods)
	if cfg.MaxPods > 0 && len(batches) > max(free, 0) {
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
	create := func(pod *corev1.Pod) {
		d.Create = append(d.Create, pod)
		if d.Pulls == nil {
			d.Pulls = map[string][]string{}
		}
		d.Pulls[pod.Name] = Pulls(pod, present)
	}
	for _, b := range batches {
		create(cfg.pod(b, nextGen, policy))
	}
	quiet := !busy && len(d.Create)+len(d.Delete)+d.Waiting+d.Paced == 0
	if room := cfg.MaxPods == 0 || free > 0; quiet && room { // rule 9
		if merged := cfg.consolidate(small); len(merged) > 0 {
			create(cfg.mergedPod(merged, in.Pods))
		}
	}
	if !wake.IsZero() {
		d.RequeueAfter = max(wake.Sub(in.Now), time.Second)
	}
	return d
}

// settledPod is a finished pod that rule 7 would keep, with where its
// images stand in it.
type settledPod struct {
	pod    *corev1.Pod
	images []string        // distinct
	cached map[string]bool // the images cached in it
	failed []string        // the images failed in it
}

func newSettledPod(p *corev1.Pod) settledPod {
	s := settledPod{pod: p, images: sortedUnique(Images(p)), cached: map[string]bool{}}
	for _, st := range cachestate.FromPod(p) {
		switch st.State {
		case cachestate.Cached:
			s.cached[st.Image] = true
		case cachestate.Failed:
			s.failed = append(s.failed, st.Image)
		}
	}
	return s
}

// outranks is rule 6's order, strict and total: more images, then newer,
// then the greater name.
func (s settledPod) outranks(o settledPod) bool {
	if len(s.images) != len(o.images) {
		return len(s.images) > len(o.images)
	}
	a, b := s.pod.CreationTimestamp, o.pod.CreationTimestamp
	if !a.Equal(&b) {
		return b.Before(&a)
	}
	return s.pod.Name > o.pod.Name
}

// superseded returns the pods of settled that rule 6 deletes: those every
// image of which is cached in another that outranks them. Where an image
// is cached in several, the one that outranks the others is never
// superseded, so every image keeps a holder. Time is linear in the images
// of settled times the pods that hold one image cached.
func superseded(settled []settledPod) map[*corev1.Pod]bool {
	holders := map[string][]int{} // image -> the pods of settled it is cached in
	for i, s := range settled {
		for _, img := range s.images {
			if s.cached[img] {
				holders[img] = append(holders[img], i)
			}
		}
	}
	gone := map[*corev1.Pod]bool{}
	for i, s := range settled {
		if len(s.images) == 0 {
			continue
		}
		for _, j := range holders[s.images[0]] {
			o := settled[j]
			if j != i && o.outranks(s) && !slices.ContainsFunc(s.images, func(img string) bool { return !o.cached[img] }) {
				gone[s.pod] = true
				break
			}
		}
	}
	return gone
}

// consolidate picks rule 9's pods to merge from small: the smallest first
// (then by name), as many as fit in BatchSize images together, at least
// two; none otherwise. Pods are merged whole (one split between two would
// stay), and two that fit make one pod fewer once rule 6 has deleted them,
// so this is the whole test that merging helps (ceil(images / BatchSize)
// < pods follows). When no two fit, every small pod but the smallest holds
// more than half of BatchSize, so the small pods left are at most
// 2 x their images / BatchSize + 1.
func (c Config) consolidate(small []settledPod) []settledPod {
	size := c.batchSize()
	sorted := append([]settledPod(nil), small...)
	sort.Slice(sorted, func(i, j int) bool {
		if len(sorted[i].images) != len(sorted[j].images) {
			return len(sorted[i].images) < len(sorted[j].images)
		}
		return sorted[i].pod.Name < sorted[j].pod.Name
	})
	union := map[string]bool{}
	n := 0
	for _, s := range sorted {
		add := 0
		for _, img := range s.images {
			if !union[img] {
				add++
			}
		}
		if len(union)+add > size {
			break
		}
		for _, img := range s.images {
			union[img] = true
		}
		n++
	}
	if n < 2 {
		return nil
	}
	return sorted[:n]
}

// mergedPod is rule 9's pod for merged: PullIfNotPresent, one generation
// above theirs, and above any that would give it the name of a pod that
// exists (listed, owned or not: a create would meet AlreadyExists).
func (c Config) mergedPod(merged []settledPod, listed []*corev1.Pod) *corev1.Pod {
	var images []string
	gen := 0
	for _, s := range merged {
		images = append(images, s.images...)
		gen = max(gen, Generation(s.pod)+1)
	}
	images = sortedUnique(images)
	taken := make(map[string]bool, len(listed))
	for _, p := range listed {
		taken[p.Name] = true
	}
	for taken[c.name(images, gen)] {
		gen++
	}
	return c.Pod(images, gen, corev1.PullIfNotPresent)
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
