package prefetch

import (
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
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
	// Resync is the age at which a finished pod is pulled again (0: never),
	// for the images Current gives no digest for.
	Resync time.Duration
	// Current is, by image, the digest its tag points to now (the
	// planner's check): such an image is pulled again when, and only when,
	// a pod holds another digest of it (see Plan, rule 3), whatever the
	// pod's age. An entry with no digest is a tag whose check is still to
	// come: it is not pulled again, by digest or by age, until it has one
	// or the planner says why it has none (no entry). References pinned by
	// digest are never pulled again.
	Current map[string]Current
	// Owed is the previous plan's Decision.Owed.
	Owed []string
	// Budget, when set, bounds the pulls that new pods may cause now; nil
	// when the kubelet does not limit pulls.
	Budget *Budget
}

// Current is the digest a tag points to, and since when it has.
type Current struct {
	Digest string
	Since  time.Time
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
	// deleted but that got no new pod yet because of MaxPods (rule 3 at the
	// cap) or the Budget: the caller
	// passes them back in the next Input so that the pull is not forgotten.
	Owed []string
	// Waiting counts the wanted images that got no pod because of MaxPods;
	// they get one as soon as pods are gone.
	Waiting int
	// Paced counts the pulls that wait for the kubelet's pull budget
	// (Input.Budget): images that got no pod yet, among them those that
	// pods due for a resync hold until their fresh pods are made.
	Paced int
	// Pulls names, by new pod, the containers that make the kubelet pull
	// (PullAlways, or an image not seen on the node): Pacer.Released.
	Pulls map[string][]string
	// RequeueAfter is when the next kept pod becomes due for a resync or a
	// retry (0: none).
	RequeueAfter time.Duration
	// States is cachestate.Summarize of the owned pods as Plan read them,
	// for the caller's metrics and warm condition.
	States []wire.ImageStatus
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
//  0. a pod that Config.Trusts refuses (it carries the owner's UID but not
//     every mark the daemon sets: a forgery, or a pod made by hand) holds
//     nothing and is deleted; like a pod being deleted, it counts against
//     MaxPods until it is gone;
//  1. a pod none of whose images is wanted any more is deleted;
//  2. a pod in phase Failed (rejected at admission, evicted) is replaced
//     once RetryDelay(its generation) has passed since its creation; until
//     then it stands for its images, which read failed with the kubelet's
//     reason. Its replacement also takes those of its wanted images that
//     other pods hold, when they are on the node and not due for a fresh
//     pull (they cost nothing), so that a refused rule-9 pod is retried at
//     a growing generation, and back-off, not remade at the same one;
//  3. a finished pod that holds a stale image (due) is refreshed, make
//     before break, so that a moved tag is fetched anew. An image is stale
//     in a pod when Input.Current gives its digest and the pod holds it
//     cached under another, unless the pod pulled it PullAlways after the
//     planner saw that digest (it then holds what came later); when
//     Current gives none, when the pod is at least Resync old; a pinned
//     reference never is. Each of the due pod's wanted images
//     that no "fresh" pod holds (one that rule 2 or 7 keeps, so not due:
//     holding no stale image, or still pulling) goes into new pods by rule
//     8, PullAlways if it is stale, PullIfNotPresent if not (it is on the
//     node: no request to the registry), paced by the Budget like any pull
//     (all at once without one: the same path, simpler than two). The due pod is kept
//     meanwhile, its images reading cached, and deleted once a fresh pod
//     holds every one of its wanted images cached. So an image is pulled
//     again once per Resync, not once per plan, and once however many due
//     pods hold it; the fresh pods are ordinary pods from then on (rules
//     6 and 9 merge them), due Resync after their creation. Rule 6 cannot
//     do this deletion, as it ranks the big due pod above the small fresh
//     ones: due pods are out of its reach. A fresh pull still under way
//     keeps the due pod. One that failed (in every fresh pod holding the
//     image) keeps only the newest due pod where the image is cached: the
//     image is on the node, that pod keeps it reading cached and safe from
//     the kubelet's image garbage collection, while the fresh pod shows the
//     failure (and the kubelet retries it with its image back-off). That
//     pod is due in turn Resync later, and only then is the image pulled
//     again by a new pod: no faster than any failed image. A pod that is
//     replaced (rules 2, 4, 5) before it pulled an image PullAlways owes
//     that fresh pull, and its replacement makes it. At MaxPods, with no
//     free slot, a due pod that needs fresh pods falls back to break before
//     make: it is deleted (with a Budget, once Budget.Pulls reaches MinPulls
//     of its images, or all of them if fewer) and the fresh pulls are owed
//     (Decision.Owed) until there is room;
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
//     no due pod waiting for fresh pods; nothing created, deleted, Waiting
//     or Paced by the rules above) and below MaxPods, "small" pods (kept
//     by rule 7, every image cached in them and failed in no pod, fewer
//     than BatchSize images) are merged:
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
// small pods this leaves once all are in. Images a due pod still holds are
// not Waiting nor Owed: the next plan asks for them again. A replacement's
// generation is one more than the highest it replaces, a fresh pod's one
// more than the due pods it refreshes, and any new pod's is raised further
// while its name is taken by a pod listed (terminating, or not ours), so a
// create never meets AlreadyExists.
//
// With MaxPods, the node never holds more pods than that, counting every
// owned pod until it is gone (terminating ones, and those this plan
// deletes): new pods beyond the free slots wait (Waiting, Owed), and when the
// pods kept plus those the uncovered images need would exceed MaxPods,
// finished pods that are not full are merged into new ones, fewest images
// first, so that images added one by one cannot fill the cap with
// one-image pods. That merge deletes the pods first (break before make),
// since it happens when there is no slot for rule 9's; so does rule 3 at
// the cap.
//
// The same inputs always give the same decision.
func Plan(in Input, cfg Config) Decision {
	isWanted := make(map[string]bool, len(in.Wanted))
	for _, w := range in.Wanted {
		isWanted[w] = true
	}
	var pods []*corev1.Pod
	var d Decision
	untrusted := 0 // rule 0's pods: they hold a slot under MaxPods until gone
	for _, p := range in.Pods {
		switch {
		case !cfg.Owns(p):
		case cfg.Trusts(p) != nil:
			untrusted++
			if p.DeletionTimestamp == nil {
				d.Delete = append(d.Delete, p)
			}
		default:
			pods = append(pods, p)
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	sort.Slice(d.Delete, func(i, j int) bool { return d.Delete[i].Name < d.Delete[j].Name })
	d.States = cachestate.Summarize(pods)
	present := map[string]bool{} // images a container ran from: on the node
	for _, st := range d.States {
		if st.State == wire.Cached {
			present[st.Image] = true
		}
	}

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
	nextGen := 0
	kept := 0                // pods kept, covering their wanted images
	busy := false            // a pod is not finished, or in phase Failed, or a resync is under way: rule 9 waits
	var settled []settledPod // kept by rule 7 and finished
	var due []duePod         // rule 3's, decided once every other pod is
	fresh := freshHolders{}  // where the kept pods that are not due hold each image
	replace := func(p *corev1.Pod, keep []string, stale map[string]bool) {
		d.Delete = append(d.Delete, p)
		nextGen = max(nextGen, Generation(p)+1)
		owing := owedPulls(p)
		for _, img := range keep {
			pullAgain[img] = pullAgain[img] || stale[img] || owing[img]
		}
	}
	keepPod := func(p *corev1.Pod, keep []string) {
		kept++
		for _, img := range keep {
			covered[img] = true
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
		var stale map[string]bool
		if finished {
			stale = in.stale(p, keep)
		}
		isDue := len(stale) > 0
		retry := p.CreationTimestamp.Add(RetryDelay(Generation(p)))
		switch {
		case len(keep) == 0: // rule 1
			d.Delete = append(d.Delete, p)
		case failed && in.Now.Before(retry): // rule 2, backing off
			keepPod(p, keep)
			fresh.add(p, isWanted)
			wakeAt(retry)
		case failed: // rule 2
			d.Rejected = append(d.Rejected, p)
			replace(p, keep, stale)
			for _, img := range keep {
				reissue[img] = reissue[img] || (present[img] && !pullAgain[img])
			}
		case isDue: // rule 3, below
			due = append(due, newDuePod(p, keep, stale))
		case finished && len(keep) < len(images): // rule 4
			replace(p, keep, nil)
		case cachestate.Throttled(p): // rule 5
			replace(p, keep, nil)
		default: // rules 6 and 7
			keepPod(p, keep)
			fresh.add(p, isWanted)
			if finished {
				settled = append(settled, newSettledPod(p))
			}
		}
	}

	// Rule 3: make before break, unless the node has no free slot under
	// MaxPods for the fresh pods.
	refresh := map[string]bool{} // images a due pod still holds, now due for a fresh pull
	atCap := cfg.MaxPods > 0 && len(pods)+untrusted >= cfg.MaxPods
	dueBudget := 0 // with a Budget, at the cap: pulls left for the pods it deletes
	if in.Budget != nil {
		dueBudget = in.Budget.Pulls
	}
	newest := newestCached(due)
	for _, u := range due {
		stale, needed := fresh.standing(u, newest)
		switch {
		case len(stale) == 0 && !needed: // every image pulled again: done
			d.Delete = append(d.Delete, u.pod)
		case len(stale) == 0:
			// Kept until the fresh pulls end (the pods pulling keep rule 9
			// waiting), or as the record of an image whose fresh pull failed.
			keepPod(u.pod, u.keep)
		case atCap && in.Budget != nil && dueBudget < min(in.Budget.MinPulls, len(stale)):
			// at the cap, kept as it is until the budget allows
			keepPod(u.pod, u.keep)
			busy = true
			d.Paced += len(stale)
		case atCap: // break before make: deleted, its fresh pulls owed
			dueBudget -= len(stale)
			replace(u.pod, u.keep, u.stale)
		default: // kept; its images get fresh pods below
			keepPod(u.pod, u.keep)
			busy = true
			nextGen = max(nextGen, Generation(u.pod)+1)
			for _, img := range stale {
				refresh[img] = true
				pullAgain[img] = pullAgain[img] || u.stale[img]
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
		if in.Resync > 0 && slices.ContainsFunc(s.images, in.byAge) {
			wakeAt(s.pod.CreationTimestamp.Add(in.Resync))
		}
	}

	var uncovered []string // rule 8
	for _, w := range sortedUnique(in.Wanted) {
		if !covered[w] || reissue[w] || refresh[w] {
			uncovered = append(uncovered, w)
		}
	}
	if cfg.MaxPods > 0 {
		for _, p := range cfg.merge(kept, len(uncovered), mergeable) {
			replace(p, Images(p), nil)
			uncovered = append(uncovered, Images(p)...)
		}
		uncovered = sortedUnique(uncovered)
	}
	pulls := func(img string) bool { return pullAgain[img] || !present[img] }
	batches, paced := cfg.batch(uncovered, pulls, in.Budget)
	owe := func(images []string) {
		for _, img := range images {
			if refresh[img] {
				continue // its due pod holds it: the next plan asks again
			}
			d.Waiting++
			if pullAgain[img] {
				d.Owed = append(d.Owed, img)
			}
		}
	}
	owe(paced)
	d.Paced += len(paced)
	free := cfg.MaxPods - len(pods) - untrusted
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
	taken := make(map[string]bool, len(in.Pods))
	for _, p := range in.Pods {
		taken[p.Name] = true
	}
	create := func(pod *corev1.Pod) {
		d.Create = append(d.Create, pod)
		taken[pod.Name] = true
		if d.Pulls == nil {
			d.Pulls = map[string][]string{}
		}
		d.Pulls[pod.Name] = Pulls(pod, present)
	}
	for _, b := range batches {
		create(cfg.pod(b, cfg.freeGeneration(b, nextGen, taken), policy))
	}
	quiet := !busy && len(d.Create)+len(d.Delete)+d.Waiting+d.Paced == 0
	if room := cfg.MaxPods == 0 || free > 0; quiet && room { // rule 9
		if merged := cfg.consolidate(small); len(merged) > 0 {
			create(cfg.mergedPod(merged, taken))
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
		case wire.Cached:
			s.cached[st.Image] = true
		case wire.Failed:
			s.failed = append(s.failed, st.Image)
		}
	}
	return s
}

// duePod is a pod rule 3 refreshes: finished, holding a stale image.
type duePod struct {
	pod    *corev1.Pod
	keep   []string        // its wanted images
	cached map[string]bool // the images cached in it
	stale  map[string]bool // the images stale in it
}

func newDuePod(p *corev1.Pod, keep []string, stale map[string]bool) duePod {
	u := duePod{pod: p, keep: keep, cached: map[string]bool{}, stale: stale}
	for _, st := range cachestate.FromPod(p) {
		if st.State == wire.Cached {
			u.cached[st.Image] = true
		}
	}
	return u
}

// stale returns the images of keep (p's wanted images; p is finished) that
// are stale in p (rule 3), nil when none is.
func (in Input) stale(p *corev1.Pod, keep []string) map[string]bool {
	var out map[string]bool
	mark := func(img string) {
		if out == nil {
			out = map[string]bool{}
		}
		out[img] = true
	}
	old := in.Resync > 0 && !in.Now.Before(p.CreationTimestamp.Add(in.Resync))
	if len(in.Current) == 0 { // no digests: by age alone
		for _, img := range keep {
			if old && imageref.Pinned(img) == "" {
				mark(img)
			}
		}
		return out
	}
	wanted := make(map[string]bool, len(keep))
	for _, img := range keep {
		wanted[img] = true
	}
	for i, st := range cachestate.FromPod(p) {
		if !wanted[st.Image] || imageref.Pinned(st.Image) != "" {
			continue
		}
		cur, checked := in.Current[st.Image]
		switch {
		case !checked:
			if old {
				mark(st.Image)
			}
		case cur.Digest == "": // its check is to come
		case st.State != wire.Cached || st.Digest == cur.Digest:
		case p.Spec.Containers[i].ImagePullPolicy == corev1.PullAlways && !p.CreationTimestamp.Time.Before(cur.Since):
			// Pulled afresh after the planner's check: what it holds is
			// as new (the tag moved again since); the next check tells.
		default:
			mark(st.Image)
		}
	}
	return out
}

// byAge reports whether img is refreshed by age (Resync): it is a tag whose
// digest Current does not give.
func (in Input) byAge(img string) bool {
	_, checked := in.Current[img]
	return !checked && imageref.Pinned(img) == ""
}

// newestCached returns, for each image cached in a due pod, the newest such
// pod (then the first by name): the one rule 3 keeps when the image's fresh
// pull failed, so that exactly one due pod stays for it.
func newestCached(due []duePod) map[string]*corev1.Pod {
	out := map[string]*corev1.Pod{}
	for _, u := range due {
		for img := range u.cached {
			o := out[img]
			if o == nil || o.CreationTimestamp.Before(&u.pod.CreationTimestamp) ||
				(o.CreationTimestamp.Equal(&u.pod.CreationTimestamp) && u.pod.Name < o.Name) {
				out[img] = u.pod
			}
		}
	}
	return out
}

// holding is where the kept pods that are not due stand on one image.
type holding struct {
	cached  bool // cached in one of them
	pulling bool // still to come in one of them
}

// freshHolders are, by image, the kept pods that are not due for a resync:
// pods younger than Input.Resync (the pods rule 3 creates among them), or
// still pulling. An image one of them holds is not pulled again for a due
// pod; that makes one fresh pull per image and Resync, whatever the number
// of plans or of due pods that hold it.
type freshHolders map[string]*holding

func (f freshHolders) add(p *corev1.Pod, isWanted map[string]bool) {
	for _, st := range cachestate.FromPod(p) {
		if !isWanted[st.Image] {
			continue
		}
		h := f[st.Image]
		if h == nil {
			h = &holding{}
			f[st.Image] = h
		}
		switch st.State {
		case wire.Cached:
			h.cached = true
		case wire.Pending, wire.Pulling:
			h.pulling = true
		}
	}
}

// standing tells where rule 3 stands on due pod u: its images that no
// fresh pod holds (stale: to pull again), and whether u is still needed
// though none is: an image is still being pulled again, or its fresh pull
// failed everywhere and u is the newest due pod where it is cached (the
// image is on the node; u keeps it reading cached and safe from the
// kubelet's image garbage collection).
func (f freshHolders) standing(u duePod, newest map[string]*corev1.Pod) (stale []string, needed bool) {
	for _, img := range u.keep {
		h := f[img]
		switch {
		case h == nil:
			stale = append(stale, img)
		case h.cached:
		case h.pulling:
			needed = true
		default:
			needed = needed || newest[img] == u.pod
		}
	}
	return stale, needed
}

// owedPulls are the images of p's PullAlways containers that are not cached
// in it: p was to pull them again and has not (refused at admission, or
// under the kubelet's pull limit), so a pod that replaces it still owes
// that fresh pull.
func owedPulls(p *corev1.Pod) map[string]bool {
	var out map[string]bool
	for i, st := range cachestate.FromPod(p) {
		if p.Spec.Containers[i].ImagePullPolicy == corev1.PullAlways && st.State != wire.Cached {
			if out == nil {
				out = map[string]bool{}
			}
			out[st.Image] = true
		}
	}
	return out
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
// above theirs, and above any that would give it a name taken.
func (c Config) mergedPod(merged []settledPod, taken map[string]bool) *corev1.Pod {
	var images []string
	gen := 0
	for _, s := range merged {
		images = append(images, s.images...)
		gen = max(gen, Generation(s.pod)+1)
	}
	images = sortedUnique(images)
	return c.Pod(images, c.freeGeneration(images, gen, taken), corev1.PullIfNotPresent)
}

// freeGeneration is the first generation from gen at which a pod of images
// (sorted, distinct) gets a name not taken: by a pod listed (owned or not,
// terminating or not: a create would meet AlreadyExists) or created by this
// plan.
func (c Config) freeGeneration(images []string, gen int, taken map[string]bool) int {
	for taken[c.name(images, gen)] {
		gen++
	}
	return gen
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
