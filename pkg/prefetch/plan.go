package prefetch

import (
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
)

// Decision is what a sync must do.
type Decision struct {
	Create []*corev1.Pod
	Delete []*corev1.Pod
	// RequeueAfter is when the next kept pod becomes due for a resync (0:
	// none, or resync disabled).
	RequeueAfter time.Duration
}

// Plan decides, for one node, which prefetch pods to create and delete so
// that every wanted image is held by a pod, and nothing else is:
//
//  1. a pod none of whose images is wanted any more is deleted;
//  2. a finished pod at least resync old is deleted and its wanted images
//     pulled again, PullAlways, so that a moved tag is fetched anew;
//  3. a finished pod that also holds unwanted images is deleted and its
//     wanted images put in new pods, PullIfNotPresent (they are on the node:
//     no pull, only a short-lived sandbox), which frees the unwanted ones;
//  4. a pod still pulling is left alone (rule 1 aside), so a new image never
//     disturbs the pulls under way;
//  5. wanted images held by no kept pod go into new pods, PullIfNotPresent.
//
// New pods hold up to BatchSize images each, sorted; a replacement's
// generation is one more than the highest it replaces, so its name never
// clashes with a pod that is still terminating. The same inputs always give
// the same decision.
func Plan(now time.Time, wanted []string, pods []*corev1.Pod, resync time.Duration, cfg Config) Decision {
	isWanted := make(map[string]bool, len(wanted))
	for _, w := range wanted {
		isWanted[w] = true
	}
	pods = append([]*corev1.Pod(nil), pods...)
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })

	var d Decision
	covered := map[string]bool{}
	var refresh, rebatch []string // images for new pods: PullAlways, PullIfNotPresent
	nextGen := 0
	var nextDue time.Time
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
		finished := len(keep) > 0 && cachestate.Finished(p)
		due := finished && resync > 0 && !now.Before(p.CreationTimestamp.Add(resync))
		switch {
		case len(keep) == 0: // rule 1
			d.Delete = append(d.Delete, p)
		case due: // rule 2
			d.Delete = append(d.Delete, p)
			refresh = append(refresh, keep...)
			nextGen = max(nextGen, Generation(p)+1)
		case finished && len(keep) < len(images): // rule 3
			d.Delete = append(d.Delete, p)
			rebatch = append(rebatch, keep...)
			nextGen = max(nextGen, Generation(p)+1)
		default: // rule 4
			for _, img := range keep {
				covered[img] = true
			}
			if finished && resync > 0 {
				if t := p.CreationTimestamp.Add(resync); nextDue.IsZero() || t.Before(nextDue) {
					nextDue = t
				}
			}
		}
	}

	var missing []string // rule 5
	for _, w := range sortedUnique(wanted) {
		if !covered[w] {
			missing = append(missing, w)
		}
	}
	// An image both due and elsewhere covered needs no second pod.
	refresh = uncovered(refresh, covered)
	inRefresh := map[string]bool{}
	for _, img := range refresh {
		inRefresh[img] = true
	}
	var fresh []string
	for _, img := range append(missing, rebatch...) {
		if !inRefresh[img] {
			fresh = append(fresh, img)
		}
	}
	d.Create = append(d.Create, cfg.batches(refresh, nextGen, corev1.PullAlways)...)
	d.Create = append(d.Create, cfg.batches(fresh, nextGen, corev1.PullIfNotPresent)...)
	if !nextDue.IsZero() {
		d.RequeueAfter = max(nextDue.Sub(now), time.Second)
	}
	return d
}

func uncovered(images []string, covered map[string]bool) []string {
	var out []string
	for _, img := range images {
		if !covered[img] {
			out = append(out, img)
		}
	}
	return out
}

// batches splits images (sorted, distinct) into pods of at most BatchSize.
func (c Config) batches(images []string, generation int, policy corev1.PullPolicy) []*corev1.Pod {
	images = sortedUnique(images)
	size := c.BatchSize
	if size < 1 {
		size = 1
	}
	var pods []*corev1.Pod
	for len(images) > 0 {
		n := min(size, len(images))
		pods = append(pods, c.Pod(images[:n], generation, policy))
		images = images[n:]
	}
	return pods
}
