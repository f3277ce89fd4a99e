package prefetch

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

var (
	t0  = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	cfg = Config{
		Namespace: "icd", NodeName: "node-1", WardenImage: "ghcr.io/dcherman/image-cache-daemon:v1",
		Owner:     &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "icd", UID: "ds-uid", Controller: ptrTo(true)},
		BatchSize: 3,
	}
)

func ptrTo[T any](v T) *T { return &v }

func img(name string) string { return "docker.io/library/" + name + ":latest" }

// existing builds a pod as the API would return it: created at created, its
// containers in the given states ("cached", "pulling", "failed").
func existing(images []string, generation int, created time.Time, state string) *corev1.Pod {
	return asListed(cfg.Pod(images, generation, corev1.PullIfNotPresent), created, state)
}

// asListed makes p look as the API returns it once the kubelet has it:
// created at created, every container in state (see existing).
func asListed(p *corev1.Pod, created time.Time, state string) *corev1.Pod {
	p = p.DeepCopy()
	p.UID = types.UID("uid-" + p.Name)
	p.CreationTimestamp = metav1.NewTime(created)
	p.Spec.NodeName = cfg.NodeName
	p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "warden",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}}
	p.Status.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, containerStatus(c, created, state))
	}
	return p
}

// containerStatus is c's status in state (see existing, withStates).
func containerStatus(c corev1.Container, created time.Time, state string) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
	switch state {
	case "cached":
		cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, FinishedAt: metav1.NewTime(created.Add(time.Second))}
		cs.ImageID = c.Image + "@sha256:" + strings.Repeat("a", 64)
	case "failed":
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "not found"}
	case "throttled":
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "pull QPS exceeded"}
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
	return cs
}

// withStates sets the state of each container of p in turn (see existing;
// also "throttled": refused under the kubelet's pull limit), "" leaving one
// as it is.
func withStates(p *corev1.Pod, states ...string) *corev1.Pod {
	for i, st := range states {
		if st != "" {
			p.Status.ContainerStatuses[i] = containerStatus(p.Spec.Containers[i], p.CreationTimestamp.Time, st)
		}
	}
	return p
}

// planned is a Decision as a test reads it: each created pod as
// "GEN: IMAGE...", images by short name, "!" marking PullAlways; deleted pods
// by name.
type planned struct {
	create   []string
	delete   []string
	rejected []string
	owed     []string
	waiting  int
	paced    int
}

func short(image string) string {
	return strings.TrimSuffix(strings.TrimPrefix(image, "docker.io/library/"), ":latest")
}

func summarize(d Decision) planned {
	var p planned
	for _, c := range d.Create {
		var images []string
		for _, ctr := range c.Spec.Containers {
			name := short(ctr.Image)
			if ctr.ImagePullPolicy == corev1.PullAlways {
				name += "!"
			}
			images = append(images, name)
		}
		p.create = append(p.create, fmt.Sprintf("%d: %s", Generation(c), strings.Join(images, " ")))
	}
	for _, del := range d.Delete {
		p.delete = append(p.delete, del.Name)
	}
	for _, r := range d.Rejected {
		p.rejected = append(p.rejected, r.Name)
	}
	for _, img := range d.Owed {
		p.owed = append(p.owed, short(img))
	}
	p.waiting, p.paced = d.Waiting, d.Paced
	return p
}

// names are the names of pods, sorted: the order in which Plan deletes the
// pods rule 6 supersedes.
func names(pods ...*corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}

// rejected makes p look as the kubelet leaves a pod it refused at admission:
// phase Failed, no container status.
func rejected(p *corev1.Pod) *corev1.Pod {
	p.Status = corev1.PodStatus{Phase: corev1.PodFailed, Reason: "OutOfpods",
		Message: "Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: 110, capacity: 110"}
	return p
}

func deleting(p *corev1.Pod) *corev1.Pod {
	p.DeletionTimestamp = ptrTo(metav1.NewTime(t0))
	return p
}

func TestPlan(t *testing.T) {
	a, b, c, d, e, f := img("a"), img("b"), img("c"), img("d"), img("e"), img("f")
	cachedAB := existing([]string{a, b}, 0, t0, "cached")
	pullingAB := existing([]string{a, b}, 0, t0, "pulling")
	failedC := existing([]string{c}, 0, t0, "failed")
	oldAB := existing([]string{a, b}, 2, t0.Add(-time.Hour), "cached")
	deletingD := deleting(existing([]string{d}, 0, t0, "cached"))
	foreign := existing([]string{c}, 0, t0, "cached")
	foreign.OwnerReferences = nil
	impostor := existing([]string{a}, 0, t0, "cached")
	impostor.OwnerReferences[0].UID = "another-install"
	// Our owner's UID, copied onto a pod the daemon did not make: it mounts
	// a service-account token, which no prefetch pod does.
	forged := existing([]string{a}, 0, t0, "cached")
	forged.Spec.AutomountServiceAccountToken = ptrTo(true)
	// Rejected pods of generation 0 and 3: replaced 30s and 4m after creation.
	rejectedAB := rejected(existing([]string{a, b}, 0, t0.Add(-29*time.Second), "none"))
	rejectedABDue := rejected(existing([]string{a, b}, 0, t0.Add(-30*time.Second), "none"))
	rejectedGen3 := rejected(existing([]string{c}, 3, t0.Add(-3*time.Minute), "none"))
	rejectedGen3Due := rejected(existing([]string{c}, 3, t0.Add(-4*time.Minute), "none"))
	rejectedGen9 := rejected(existing([]string{c}, 9, t0.Add(-10*time.Minute), "none"))
	rejectedOld := rejected(existing([]string{a, b}, 0, t0.Add(-time.Hour), "none"))
	// a cached, b refused under the kubelet's pull limit; then c still to come.
	throttledAB := withStates(existing([]string{a, b}, 0, t0, "cached"), "", "throttled")
	throttledBC := withStates(existing([]string{b, c}, 0, t0, "pulling"), "throttled", "")
	// Rules 6 and 9: finished pods of one or two images, and pods that
	// merge them.
	cachedA, cachedB := existing([]string{a}, 0, t0, "cached"), existing([]string{b}, 0, t0, "cached")
	cachedC, cachedD := existing([]string{c}, 0, t0, "cached"), existing([]string{d}, 0, t0, "cached")
	cachedCD := existing([]string{c, d}, 0, t0, "cached")
	cachedABC := existing([]string{a, b, c}, 0, t0, "cached")
	failedA := existing([]string{a}, 0, t0, "failed")
	failedAcachedC := withStates(existing([]string{a, c}, 0, t0, "cached"), "failed", "")
	mergedAB := existing([]string{a, b}, 1, t0.Add(time.Minute), "cached")
	mergedABPulling := existing([]string{a, b}, 1, t0.Add(time.Minute), "pulling")
	mergedABFailedB := withStates(existing([]string{a, b}, 1, t0.Add(time.Minute), "cached"), "", "failed")
	mergedABRejected := rejected(existing([]string{a, b}, 1, t0.Add(-time.Minute), "none"))
	mergedABRejectedWaiting := rejected(existing([]string{a, b}, 1, t0.Add(-59*time.Second), "none"))
	sameAgeAB := existing([]string{a, b}, 1, t0, "cached")
	newerA := existing([]string{a}, 0, t0.Add(time.Hour), "cached")
	failedBInAB := withStates(existing([]string{a, b}, 0, t0, "cached"), "", "failed")
	failedBInABC := withStates(existing([]string{a, b, c}, 0, t0, "cached"), "", "failed")
	oldC := existing([]string{c}, 0, t0.Add(-time.Hour), "cached")
	// Rule 3: pods due for a resync (resync 1m), and the fresh pods that
	// pull their images again.
	fresh := func(images []string, gen int, created time.Time, state string) *corev1.Pod {
		return asListed(cfg.Pod(images, gen, corev1.PullAlways), created, state)
	}
	oldABC := existing([]string{a, b, c}, 2, t0.Add(-time.Hour), "cached")
	olderAB := existing([]string{a, b}, 1, t0.Add(-2*time.Hour), "cached")
	freshAB, freshABPulling := fresh([]string{a, b}, 3, t0, "cached"), fresh([]string{a, b}, 3, t0, "pulling")
	freshA, freshAPulling := fresh([]string{a}, 3, t0, "cached"), fresh([]string{a}, 3, t0, "pulling")
	freshBC := fresh([]string{b, c}, 3, t0, "cached")
	freshABFailedB := withStates(fresh([]string{a, b}, 3, t0, "cached"), "", "failed")
	staleABFailedB := withStates(fresh([]string{a, b}, 3, t0.Add(-2*time.Minute), "cached"), "", "failed")
	// Refused at admission, generation 3: retried 4 minutes after creation.
	rejectedFreshAB := rejected(fresh([]string{a, b}, 3, t0.Add(-5*time.Minute), "none"))
	rejectedFreshA := rejected(fresh([]string{a}, 3, t0.Add(-5*time.Minute), "none"))
	lesserAB := cachedAB
	if sameAgeAB.Name < cachedAB.Name {
		lesserAB = sameAgeAB
	}
	// Four one-image pods: the three first by name are merged.
	ones := []*corev1.Pod{cachedA, cachedB, cachedC, cachedD}
	sort.Slice(ones, func(i, j int) bool { return ones[i].Name < ones[j].Name })
	var firstThree []string
	for _, p := range ones[:3] {
		firstThree = append(firstThree, short(Images(p)[0]))
	}
	sort.Strings(firstThree)

	for _, tc := range []struct {
		name    string
		wanted  []string
		pods    []*corev1.Pod
		resync  time.Duration
		maxPods int
		budget  *Budget
		owed    []string
		want    planned
		requeue time.Duration
		// pulls, when set, is how many pulls each created pod causes
		// (Decision.Pulls).
		pulls []int
	}{
		{name: "nothing wanted, nothing there"},
		{name: "new images are batched", wanted: []string{d, c, b, a, e},
			want: planned{create: []string{"0: a b c", "0: d e"}}},
		{name: "covered images need nothing", wanted: []string{a, b}, pods: []*corev1.Pod{cachedAB}},
		{name: "rule 1: a pod of unwanted images goes", wanted: []string{c}, pods: []*corev1.Pod{cachedAB, failedC},
			want: planned{delete: []string{cachedAB.Name}}},
		{name: "rule 1 applies to pods still pulling", wanted: nil, pods: []*corev1.Pod{pullingAB},
			want: planned{delete: []string{pullingAB.Name}}},
		{name: "rule 1 applies to rejected pods at once", wanted: []string{c}, pods: []*corev1.Pod{rejectedAB},
			want: planned{create: []string{"0: c"}, delete: []string{rejectedAB.Name}}},
		{name: "rule 2: a rejected pod stands for its images during its back-off", wanted: []string{a, b},
			pods: []*corev1.Pod{rejectedAB}, requeue: time.Second},
		{name: "rule 2: a rejected pod is replaced once its back-off is over", wanted: []string{a, b},
			pods: []*corev1.Pod{rejectedABDue},
			want: planned{create: []string{"1: a b"}, delete: []string{rejectedABDue.Name}, rejected: []string{rejectedABDue.Name}}},
		{name: "rule 2: the back-off doubles with the generation", wanted: []string{c},
			pods: []*corev1.Pod{rejectedGen3}, requeue: time.Minute},
		{name: "rule 2: generation 3 is retried after 4 minutes", wanted: []string{c}, pods: []*corev1.Pod{rejectedGen3Due},
			want: planned{create: []string{"4: c"}, delete: []string{rejectedGen3Due.Name}, rejected: []string{rejectedGen3Due.Name}}},
		{name: "rule 2: the back-off stops growing at 10 minutes", wanted: []string{c}, pods: []*corev1.Pod{rejectedGen9},
			want: planned{create: []string{"10: c"}, delete: []string{rejectedGen9.Name}, rejected: []string{rejectedGen9.Name}}},
		{name: "rule 2: only the wanted images of a rejected pod are replaced", wanted: []string{a},
			pods: []*corev1.Pod{rejectedABDue},
			want: planned{create: []string{"1: a"}, delete: []string{rejectedABDue.Name}, rejected: []string{rejectedABDue.Name}}},
		{name: "rule 2: a rejected pod due for resync is pulled afresh", wanted: []string{a, b}, pods: []*corev1.Pod{rejectedOld},
			resync: time.Minute,
			want:   planned{create: []string{"1: a! b!"}, delete: []string{rejectedOld.Name}, rejected: []string{rejectedOld.Name}}},
		{name: "rule 2 waits out the back-off even when resync is shorter", wanted: []string{a, b}, pods: []*corev1.Pod{rejectedAB},
			resync: 10 * time.Second, requeue: time.Second},
		{name: "rule 3: a finished pod due for resync is pulled again, make before break", wanted: []string{a, b}, pods: []*corev1.Pod{oldAB},
			resync: time.Minute, want: planned{create: []string{"3: a! b!"}}},
		{name: "rule 3: the due pod stays while its fresh pod pulls", wanted: []string{a, b}, pods: []*corev1.Pod{oldAB, freshABPulling},
			resync: time.Minute},
		{name: "rule 3: the due pod goes once its images are cached anew", wanted: []string{a, b}, pods: []*corev1.Pod{oldAB, freshAB},
			resync: time.Minute, want: planned{delete: names(oldAB)}},
		{name: "rule 3: the due pod goes though rule 6 would rank it first", wanted: []string{a, b, c},
			pods: []*corev1.Pod{oldABC, freshA, freshBC}, resync: time.Minute, want: planned{delete: names(oldABC)}},
		{name: "rule 3: images pulled again get no second fresh pod", wanted: []string{a, b, c}, pods: []*corev1.Pod{oldABC, freshAPulling},
			resync: time.Minute, budget: &Budget{Pulls: 5, MinPulls: 2}, want: planned{create: []string{"3: b! c!"}}},
		{name: "rule 3: fresh pulls are paced, the due pod holding the others", wanted: []string{a, b, c}, pods: []*corev1.Pod{oldABC},
			resync: time.Minute, budget: &Budget{Pulls: 1, MinPulls: 1}, want: planned{create: []string{"3: a!"}, paced: 2}},
		{name: "rule 3: two due pods share one fresh pull", wanted: []string{a, b}, pods: []*corev1.Pod{oldAB, olderAB}, resync: time.Minute,
			want: planned{create: []string{"3: a! b!"}}},
		{name: "rule 3: a failed fresh pull keeps the due pod, the image's record", wanted: []string{a, b},
			pods: []*corev1.Pod{oldAB, freshABFailedB}, resync: time.Minute, requeue: time.Minute},
		{name: "rule 3: for a failed fresh pull, only the newest due pod stays", wanted: []string{a, b},
			pods: []*corev1.Pod{oldAB, olderAB, freshABFailedB}, resync: time.Minute, want: planned{delete: names(olderAB)}},
		{name: "rule 3: a failed fresh pull is tried again once its pod is due, not before", wanted: []string{a, b},
			pods: []*corev1.Pod{oldAB, staleABFailedB}, resync: time.Minute, want: planned{create: []string{"4: a! b!"}}},
		{name: "rule 3: then the pod that failed it goes with the due pod", wanted: []string{a, b},
			pods: []*corev1.Pod{oldAB, staleABFailedB, freshAB}, resync: time.Minute, want: planned{delete: names(oldAB, staleABFailedB)}},
		{name: "rule 3: a fresh pod refused at admission is retried, still pulling afresh", wanted: []string{a, b},
			pods: []*corev1.Pod{oldAB, rejectedFreshAB}, resync: time.Hour,
			want: planned{create: []string{"4: a! b!"}, delete: names(rejectedFreshAB), rejected: names(rejectedFreshAB)}},
		{name: "rule 3: a pod refused at admission still owes its fresh pulls", wanted: []string{a},
			pods: []*corev1.Pod{cachedAB, rejectedFreshA},
			want: planned{create: []string{"4: a!"}, delete: names(cachedAB, rejectedFreshA), rejected: names(rejectedFreshA)}},
		{name: "rule 3 waits for an unfinished pod", wanted: []string{a, b},
			pods: []*corev1.Pod{existing([]string{a, b}, 0, t0.Add(-time.Hour), "pulling")}, resync: time.Minute},
		{name: "resync off", wanted: []string{a, b}, pods: []*corev1.Pod{oldAB}},
		{name: "rule 4: a finished pod with unwanted images is re-batched", wanted: []string{a}, pods: []*corev1.Pod{cachedAB},
			want: planned{create: []string{"1: a"}, delete: []string{cachedAB.Name}}},
		{name: "rule 7: a pulling pod with an unwanted image is left alone", wanted: []string{a}, pods: []*corev1.Pod{pullingAB}},
		{name: "rule 8: a new image does not disturb the others", wanted: []string{a, b, d}, pods: []*corev1.Pod{pullingAB},
			want: planned{create: []string{"0: d"}}},
		{name: "rule 8: a new image shares the pod of a resync", wanted: []string{a, b, d}, pods: []*corev1.Pod{oldAB}, resync: time.Minute,
			want: planned{create: []string{"3: a! b! d"}}},
		{name: "a failed image keeps its pod", wanted: []string{c}, pods: []*corev1.Pod{failedC}},
		{name: "a pod being deleted covers nothing, and keeps its name", wanted: []string{d}, pods: []*corev1.Pod{deletingD},
			want: planned{create: []string{"1: d"}}},
		{name: "ownership: a pod without our owner is neither deleted nor counted, and keeps its name", wanted: []string{c},
			pods: []*corev1.Pod{foreign}, want: planned{create: []string{"1: c"}}},
		{name: "ownership: another install's pod is left alone", wanted: nil, pods: []*corev1.Pod{impostor}},
		{name: "rule 0: a pod with our owner's UID but not our marks holds nothing and is deleted", wanted: []string{a}, pods: []*corev1.Pod{forged},
			want: planned{create: []string{"1: a"}, delete: []string{forged.Name}}},
		{name: "rule 0: such a pod counts against the cap until gone", wanted: []string{a, b, c, d}, pods: []*corev1.Pod{forged}, maxPods: 2,
			want: planned{create: []string{"0: a b c"}, delete: []string{forged.Name}, waiting: 1}},
		{name: "cap: no more pods than the cap", wanted: []string{a, b, c, d, e, f, img("g")}, maxPods: 2,
			want: planned{create: []string{"0: a b c", "0: d e f"}, waiting: 1}},
		{name: "cap: terminating pods count until gone", wanted: []string{a, b, c, d}, pods: []*corev1.Pod{deletingD}, maxPods: 2,
			want: planned{create: []string{"0: a b c"}, waiting: 1}},
		{name: "cap: foreign pods do not count", wanted: []string{a, b, c, d}, pods: []*corev1.Pod{foreign}, maxPods: 2,
			want: planned{create: []string{"0: a b c", "0: d"}}},
		{name: "cap: a resync at the cap deletes first and owes the fresh pull", wanted: []string{a, b}, pods: []*corev1.Pod{oldAB},
			resync: time.Minute, maxPods: 1,
			want: planned{delete: []string{oldAB.Name}, owed: []string{"a", "b"}, waiting: 2}},
		{name: "cap: at the cap, a resync waits for the budget before it deletes", wanted: []string{a, b}, pods: []*corev1.Pod{oldAB},
			resync: time.Minute, maxPods: 1, budget: &Budget{Pulls: 1, MinPulls: 5}, want: planned{paced: 2}},
		{name: "cap: below the cap, a resync makes before it breaks", wanted: []string{a, b}, pods: []*corev1.Pod{oldAB},
			resync: time.Minute, maxPods: 2, want: planned{create: []string{"3: a! b!"}}},
		{name: "cap: owed images are pulled afresh once there is room", wanted: []string{a, b, c}, owed: []string{a, b, e}, maxPods: 1,
			want: planned{create: []string{"0: a! b! c"}}},
		{name: "cap: owed images a kept pod holds are paid", wanted: []string{a, b}, pods: []*corev1.Pod{cachedAB}, owed: []string{a},
			maxPods: 1},
		{name: "cap: a rejected pod at the cap is replaced when it is gone", wanted: []string{a, b}, pods: []*corev1.Pod{rejectedABDue},
			maxPods: 1,
			want:    planned{delete: []string{rejectedABDue.Name}, rejected: []string{rejectedABDue.Name}, waiting: 2}},
		{name: "cap: under a lowered cap, finished pods are merged", wanted: []string{a, b, c}, pods: []*corev1.Pod{cachedAB, failedC},
			maxPods: 1, want: planned{delete: []string{failedC.Name, cachedAB.Name}, waiting: 3}},
		{name: "cap: full pods are not merged", wanted: []string{a, b, c, d}, maxPods: 1,
			pods: []*corev1.Pod{existing([]string{a, b, c}, 0, t0, "cached")}, want: planned{waiting: 1}},
		{name: "budget: pulls go MinPulls to a pod while the budget lasts", wanted: []string{a, b, c, d, e, f}, budget: &Budget{Pulls: 4, MinPulls: 2},
			want: planned{create: []string{"0: a b", "0: c d"}, waiting: 2, paced: 2}},
		{name: "budget: fewer than MinPulls wait for more", wanted: []string{a, b, c, d, e, f}, budget: &Budget{Pulls: 5, MinPulls: 2},
			want: planned{create: []string{"0: a b", "0: c d"}, waiting: 2, paced: 2}},
		{name: "budget: a pod never holds more than BatchSize", wanted: []string{a, b, c, d, e, f}, budget: &Budget{Pulls: 10, MinPulls: 5},
			want: planned{create: []string{"0: a b c", "0: d e f"}}},
		{name: "budget: images on the node fill the pods that pull", wanted: []string{a, b, c}, pods: []*corev1.Pod{throttledAB},
			budget: &Budget{Pulls: 10, MinPulls: 1},
			want:   planned{create: []string{"1: a b", "1: c"}, delete: []string{throttledAB.Name}}},
		{name: "budget: the last few images go together", wanted: []string{a}, budget: &Budget{Pulls: 1, MinPulls: 5},
			want: planned{create: []string{"0: a"}}},
		{name: "budget: an empty budget creates no pod that pulls", wanted: []string{a, b}, budget: &Budget{},
			want: planned{waiting: 2, paced: 2}},
		{name: "budget: images on the node cost nothing", wanted: []string{a}, pods: []*corev1.Pod{cachedAB}, budget: &Budget{MinPulls: 5},
			want: planned{create: []string{"1: a"}, delete: []string{cachedAB.Name}}},
		{name: "budget: a resync waits for the budget, its pod kept", wanted: []string{a, b}, pods: []*corev1.Pod{oldAB}, resync: time.Minute,
			budget: &Budget{Pulls: 1, MinPulls: 5}, want: planned{paced: 2}},
		{name: "budget: a resync within the budget", wanted: []string{a, b}, pods: []*corev1.Pod{oldAB}, resync: time.Minute,
			budget: &Budget{Pulls: 2, MinPulls: 5}, want: planned{create: []string{"3: a! b!"}}},
		{name: "budget: a fresh pull costs one though the image is on the node", wanted: []string{a, b, d}, pods: []*corev1.Pod{oldAB},
			resync: time.Minute, budget: &Budget{Pulls: 2, MinPulls: 1},
			want: planned{create: []string{"3: a!", "3: b!"}, waiting: 1, paced: 1}},
		{name: "rule 5: a pod stuck on the pull limit is replaced at once", wanted: []string{a, b}, pods: []*corev1.Pod{throttledAB},
			budget: &Budget{Pulls: 1, MinPulls: 5},
			want:   planned{create: []string{"1: a b"}, delete: []string{throttledAB.Name}}},
		{name: "rule 5: its refused images wait for the budget", wanted: []string{a, b}, pods: []*corev1.Pod{throttledAB},
			budget: &Budget{MinPulls: 5},
			want:   planned{create: []string{"1: a"}, delete: []string{throttledAB.Name}, waiting: 1, paced: 1}},
		{name: "rule 5 waits while another image is on its way", wanted: []string{b, c}, pods: []*corev1.Pod{throttledBC},
			budget: &Budget{Pulls: 10, MinPulls: 5}},
		{name: "rule 9: small pods are merged, make before break", wanted: []string{a, b}, pods: []*corev1.Pod{cachedA, cachedB},
			want: planned{create: []string{"1: a b"}}, pulls: []int{0}},
		{name: "rule 9: the merged pod pulls nothing, so needs no budget", wanted: []string{a, b}, pods: []*corev1.Pod{cachedA, cachedB},
			budget: &Budget{MinPulls: 5}, want: planned{create: []string{"1: a b"}}, pulls: []int{0}},
		{name: "rule 9: owed images a kept pod holds are not pulled again by a merge", wanted: []string{a, b},
			pods: []*corev1.Pod{cachedA, cachedB}, owed: []string{a}, want: planned{create: []string{"1: a b"}}, pulls: []int{0}},
		{name: "rule 9: one generation above the highest it merges", wanted: []string{a, b},
			pods: []*corev1.Pod{existing([]string{a}, 4, t0, "cached"), existing([]string{b}, 1, t0, "cached")},
			want: planned{create: []string{"5: a b"}}},
		{name: "rule 9 never takes the name of a pod still there", wanted: []string{a, b},
			pods: []*corev1.Pod{cachedA, cachedB, deleting(existing([]string{a, b}, 1, t0, "cached"))},
			want: planned{create: []string{"2: a b"}}},
		{name: "rule 9: the smallest first, then by name, as many as fit", wanted: []string{a, b, c, d}, pods: ones,
			want: planned{create: []string{"1: " + strings.Join(firstThree, " ")}}},
		{name: "rule 9: fewest images first", wanted: []string{a, b, c, d}, pods: []*corev1.Pod{cachedCD, cachedA, cachedB},
			want: planned{create: []string{"1: a b"}}},
		{name: "rule 9: no merge that cannot make fewer pods", wanted: []string{a, b, c, d},
			pods: []*corev1.Pod{existing([]string{a, b}, 0, t0, "cached"), cachedCD}},
		{name: "rule 9: full pods are not merged", wanted: []string{a, b, c, d}, pods: []*corev1.Pod{cachedABC, cachedD}},
		{name: "rule 9 waits for a pod still pulling", wanted: []string{a, b, c},
			pods: []*corev1.Pod{cachedA, cachedB, existing([]string{c}, 0, t0, "pulling")}},
		{name: "rule 9 waits while images get new pods", wanted: []string{a, b, c}, pods: []*corev1.Pod{cachedA, cachedB},
			want: planned{create: []string{"0: c"}}},
		{name: "rule 9 waits while pulls are paced", wanted: []string{a, b, c}, pods: []*corev1.Pod{cachedA, cachedB},
			budget: &Budget{MinPulls: 5}, want: planned{waiting: 1, paced: 1}},
		{name: "rule 9 waits for a resync", wanted: []string{a, b, c}, pods: []*corev1.Pod{cachedA, cachedB, oldC},
			resync: time.Minute, want: planned{create: []string{"1: c!"}}},
		{name: "rule 9 waits for a resync's fresh pods", wanted: []string{a, b, c}, resync: time.Minute,
			pods: []*corev1.Pod{cachedA, cachedB, oldC, asListed(cfg.Pod([]string{c}, 1, corev1.PullAlways), t0, "pulling")}},
		{name: "rule 9 does not wait for a due pod kept for a failed fresh pull", wanted: []string{a, b, c}, resync: time.Minute,
			pods: []*corev1.Pod{cachedA, cachedB, oldC, asListed(cfg.Pod([]string{c}, 1, corev1.PullAlways), t0, "failed")},
			want: planned{create: []string{"1: a b"}}},
		{name: "rule 9 waits for a resync the budget holds back", wanted: []string{a, b, c}, pods: []*corev1.Pod{cachedA, cachedB, oldC},
			resync: time.Minute, budget: &Budget{MinPulls: 5}, want: planned{paced: 1}},
		{name: "rule 9 waits for a pod in phase Failed", wanted: []string{a, b, c}, pods: []*corev1.Pod{cachedA, cachedB,
			rejected(existing([]string{c}, 0, t0.Add(-29*time.Second), "none"))}},
		{name: "rule 9 waits for a deletion", wanted: []string{a, b}, pods: []*corev1.Pod{cachedA, cachedB, cachedD},
			want: planned{delete: []string{cachedD.Name}}},
		{name: "rule 9 needs a free slot under MaxPods", wanted: []string{a, b}, pods: []*corev1.Pod{cachedA, cachedB}, maxPods: 2},
		{name: "rule 9 counts terminating pods against MaxPods", wanted: []string{a, b},
			pods: []*corev1.Pod{cachedA, cachedB, deletingD}, maxPods: 3},
		{name: "rule 9 below MaxPods", wanted: []string{a, b}, pods: []*corev1.Pod{cachedA, cachedB}, maxPods: 3,
			want: planned{create: []string{"1: a b"}}},
		{name: "rule 9 never merges a pod with a failed image", wanted: []string{a, b, c}, pods: []*corev1.Pod{cachedA, cachedB, failedC},
			want: planned{create: []string{"1: a b"}}},
		{name: "rule 9 never merges an image that failed in another pod", wanted: []string{a, b, c},
			pods: []*corev1.Pod{cachedA, cachedB, failedAcachedC}},
		{name: "rule 6: a merged pod, finished, supersedes the pods it merged", wanted: []string{a, b},
			pods: []*corev1.Pod{cachedA, cachedB, mergedAB}, want: planned{delete: names(cachedA, cachedB)}},
		{name: "rule 6 waits for the merged pod to finish", wanted: []string{a, b}, pods: []*corev1.Pod{cachedA, cachedB, mergedABPulling}},
		{name: "rule 6 keeps the pod of an image the merged pod failed", wanted: []string{a, b},
			pods: []*corev1.Pod{cachedA, cachedB, mergedABFailedB}, want: planned{delete: names(cachedA)}},
		{name: "rule 9 never merges a merged pod with the pods it supersedes", wanted: []string{a, b},
			pods: []*corev1.Pod{deleting(existing([]string{a}, 0, t0, "cached")), deleting(existing([]string{b}, 0, t0, "cached")), mergedAB}},
		{name: "rule 9 merges a merged pod with other small pods", wanted: []string{a, b, c},
			pods: []*corev1.Pod{deleting(existing([]string{a}, 0, t0, "cached")), deleting(existing([]string{b}, 0, t0, "cached")), mergedAB, cachedC},
			want: planned{create: []string{"2: a b c"}}},
		{name: "rule 6: of two equal pods, the newer stays", wanted: []string{a, b}, pods: []*corev1.Pod{cachedAB, oldAB},
			want: planned{delete: names(oldAB)}},
		{name: "rule 6: of two equal pods of the same age, the greater name stays", wanted: []string{a, b},
			pods: []*corev1.Pod{cachedAB, sameAgeAB}, want: planned{delete: names(lesserAB)}},
		{name: "rule 6: more images outrank a newer pod", wanted: []string{a, b}, pods: []*corev1.Pod{cachedAB, newerA},
			want: planned{delete: names(newerA)}},
		{name: "rule 6: chains leave the top pod", wanted: []string{a, b, c}, pods: []*corev1.Pod{cachedABC, cachedAB, newerA},
			want: planned{delete: names(cachedAB, newerA)}},
		{name: "rule 6: a failed image is superseded where it is cached", wanted: []string{a, b}, pods: []*corev1.Pod{failedA, cachedAB},
			want: planned{delete: names(failedA)}},
		{name: "rule 6 never supersedes a failed image by a pod where it is not cached", wanted: []string{a, b, c},
			pods: []*corev1.Pod{failedBInAB, failedBInABC}},
		{name: "rule 6: a pod being deleted supersedes nothing", wanted: []string{a, b},
			pods: []*corev1.Pod{cachedA, deleting(existing([]string{a, b}, 1, t0, "cached"))}, want: planned{create: []string{"0: b"}}},
		{name: "rule 6: a pod in phase Failed supersedes nothing and is not superseded", wanted: []string{a, b},
			pods: []*corev1.Pod{cachedA, cachedB, mergedABRejectedWaiting}, requeue: time.Second},
		{name: "rule 2: a refused merge is retried at the next generation, pulling nothing", wanted: []string{a, b},
			pods: []*corev1.Pod{cachedA, cachedB, mergedABRejected}, budget: &Budget{MinPulls: 5},
			want: planned{create: []string{"2: a b"}, delete: names(mergedABRejected), rejected: names(mergedABRejected)}, pulls: []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.MaxPods = tc.maxPods
			in := Input{Now: t0, Wanted: tc.wanted, Pods: tc.pods, Resync: tc.resync, Owed: tc.owed, Budget: tc.budget}
			d := Plan(in, c)
			if got := summarize(d); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("plan:\n got  %+v\n want %+v", got, tc.want)
			}
			if tc.requeue != 0 && d.RequeueAfter != tc.requeue {
				t.Fatalf("RequeueAfter = %s, want %s", d.RequeueAfter, tc.requeue)
			}
			if tc.pulls != nil {
				var pulls []int
				for _, p := range d.Create {
					pulls = append(pulls, len(d.Pulls[p.Name]))
				}
				if !reflect.DeepEqual(pulls, tc.pulls) {
					t.Fatalf("pulls by created pod: %v, want %v", pulls, tc.pulls)
				}
			}
			if tc.maxPods > 0 {
				checkCap(t, tc.pods, d, c)
			}
		})
	}
}

// checkCap fails unless a plan keeps the node's owned pods, deleted ones
// still terminating, within the cap: it creates nothing when the node is at
// the cap already, and never goes past it.
func checkCap(t *testing.T, pods []*corev1.Pod, d Decision, c Config) {
	t.Helper()
	before := 0
	for _, p := range pods {
		if c.Owns(p) {
			before++
		}
	}
	if len(d.Create) > 0 && before+len(d.Create) > c.MaxPods {
		t.Fatalf("%d pods before the plan, %d created: past the cap of %d", before, len(d.Create), c.MaxPods)
	}
}

func TestRetryDelay(t *testing.T) {
	for gen, want := range map[int]time.Duration{
		-1: 30 * time.Second, 0: 30 * time.Second, 1: time.Minute, 2: 2 * time.Minute, 4: 8 * time.Minute,
		5: 10 * time.Minute, 1000: 10 * time.Minute, math.MaxInt: 10 * time.Minute,
	} {
		if got := RetryDelay(gen); got != want {
			t.Errorf("RetryDelay(%d) = %s, want %s", gen, got, want)
		}
	}
}

// Images added one at a time make one-image pods; at the cap, finished pods
// that are not full are merged, so the cap never stops the images it has room
// for.
func TestPlanMergesSmallPodsAtTheCap(t *testing.T) {
	c := cfg // 3 images a pod
	c.MaxPods = 2
	a, b, cc, d := img("a"), img("b"), img("c"), img("d")
	wanted := []string{a, b, cc, d}
	pods := []*corev1.Pod{existing([]string{a}, 0, t0, "cached"), existing([]string{b}, 0, t0, "cached")}
	// 2 pods kept + 1 for c and d would make 3: merge the smallest.
	first := Plan(Input{Now: t0, Wanted: wanted, Pods: pods}, c)
	if got := summarize(first); !reflect.DeepEqual(got, planned{delete: []string{pods[0].Name}, waiting: 3}) {
		t.Fatalf("first plan: %+v", got)
	}
	// Once the merged pod is gone, its image and the new ones share a pod.
	second := Plan(Input{Now: t0, Wanted: wanted, Pods: pods[1:]}, c)
	if got := summarize(second); !reflect.DeepEqual(got, planned{create: []string{"0: a c d"}}) {
		t.Fatalf("second plan: %+v", got)
	}
	// Then nothing moves.
	third := Plan(Input{Now: t0, Wanted: wanted, Pods: []*corev1.Pod{pods[1], existing([]string{a, cc, d}, 1, t0, "cached")}}, c)
	if got := summarize(third); !reflect.DeepEqual(got, planned{}) {
		t.Fatalf("third plan: %+v", got)
	}
	// Pulling pods are never merged: the plan waits for them.
	busy := []*corev1.Pod{existing([]string{a}, 0, t0, "pulling"), existing([]string{b}, 0, t0, "pulling")}
	if got := summarize(Plan(Input{Now: t0, Wanted: wanted, Pods: busy}, c)); !reflect.DeepEqual(got, planned{waiting: 2}) {
		t.Fatalf("plan over pulling pods: %+v", got)
	}
}

// However the pods stand, a plan never takes the node past the cap.
func TestPlanRespectsTheCap(t *testing.T) {
	var wanted []string
	for i := range 12 {
		wanted = append(wanted, img(fmt.Sprintf("i%02d", i)))
	}
	states := []string{"cached", "pulling", "failed", "rejected", "deleting"}
	for maxPods := 1; maxPods <= 5; maxPods++ {
		for seed := range 50 {
			var pods []*corev1.Pod
			for i := range seed % 7 {
				n := 1 + (seed+i)%3
				images := wanted[(seed*i)%10 : (seed*i)%10+n]
				p := existing(images, i%3, t0.Add(-time.Duration(seed)*time.Minute), states[(seed+i)%len(states)])
				switch states[(seed+i)%len(states)] {
				case "rejected":
					rejected(p)
				case "deleting":
					deleting(p)
				}
				pods = append(pods, p)
			}
			c := cfg
			c.MaxPods = maxPods
			d := Plan(Input{Now: t0, Wanted: wanted[:3*maxPods], Pods: pods, Resync: 10 * time.Minute}, c)
			checkCap(t, pods, d, c)
		}
	}
}

func TestPlanReplacementNeverReusesAName(t *testing.T) {
	a, b := img("a"), img("b")
	old := existing([]string{a, b}, 4, t0.Add(-time.Hour), "cached")
	d := Plan(Input{Now: t0, Wanted: []string{a, b}, Pods: []*corev1.Pod{old}, Resync: time.Minute}, cfg)
	if len(d.Create) != 1 || d.Create[0].Name == old.Name {
		t.Fatalf("replacement %v has the name of the pod it replaces", d.Create)
	}
	if g := Generation(d.Create[0]); g != 5 {
		t.Fatalf("replacement generation = %d, want 5", g)
	}
}

func TestPlanIsIdempotent(t *testing.T) {
	var wanted []string
	for i := 0; i < 23; i++ {
		wanted = append(wanted, img(fmt.Sprintf("i%02d", i)))
	}
	first := Plan(Input{Now: t0, Wanted: wanted, Resync: time.Hour}, cfg)
	if len(first.Create) != 8 { // 23 images, 3 a pod
		t.Fatalf("created %d pods, want 8", len(first.Create))
	}
	// Apply the decision: the pods now exist and have finished.
	var pods []*corev1.Pod
	for _, p := range first.Create {
		pods = append(pods, existing(Images(p), Generation(p), t0, "cached"))
	}
	second := Plan(Input{Now: t0.Add(time.Minute), Wanted: wanted, Pods: pods, Resync: time.Hour}, cfg)
	if len(second.Create)+len(second.Delete) != 0 {
		t.Fatalf("second plan is not empty: %+v", summarize(second))
	}
	if second.RequeueAfter != 59*time.Minute {
		t.Fatalf("RequeueAfter = %s, want 59m (the first resync)", second.RequeueAfter)
	}
	// The same inputs, shuffled, give the same pods.
	shuffled := append([]string(nil), wanted...)
	sort.Sort(sort.Reverse(sort.StringSlice(shuffled)))
	again := Plan(Input{Now: t0, Wanted: shuffled, Resync: time.Hour}, cfg)
	for i := range first.Create {
		if first.Create[i].Name != again.Create[i].Name {
			t.Fatalf("pod %d: %s vs %s for the same images", i, first.Create[i].Name, again.Create[i].Name)
		}
	}
}

func TestPod(t *testing.T) {
	images := []string{"docker.io/a/x:1", "docker.io/b/x:1", "127.0.0.1:5000/Y_z/9lives@sha256:" + strings.Repeat("b", 64)}
	long := cfg
	long.NodeName = strings.Repeat("very-long-node-name.", 12) + "example"
	long.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	long.ImagePullSecrets = []string{"regcred"}
	long.PriorityClassName = "low"
	p := long.Pod(images, 3, corev1.PullAlways)

	if errs := validation.IsDNS1123Label(p.Name); len(errs) > 0 {
		t.Errorf("pod name %q: %v", p.Name, errs)
	}
	for k, v := range p.Labels {
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("label %s=%q: %v", k, v, errs)
		}
	}
	if !reflect.DeepEqual(p.Labels, mergeLabels(wire.NodeLabels(long.NodeName), map[string]string{wire.LabelGeneration: "3"})) {
		t.Errorf("labels %v", p.Labels)
	}
	if p.Annotations[safeToEvict] != "true" {
		t.Error("no safe-to-evict annotation: cluster-autoscaler would not drain the node")
	}
	if len(p.OwnerReferences) != 1 || p.OwnerReferences[0].Controller != nil || p.OwnerReferences[0].UID != "ds-uid" {
		t.Errorf("owner references %+v: want the DaemonSet, not as controller", p.OwnerReferences)
	}
	if p.Spec.NodeName != long.NodeName {
		t.Errorf("nodeName %q does not pin the node", p.Spec.NodeName)
	}
	s := p.Spec
	if *s.AutomountServiceAccountToken || *s.EnableServiceLinks || s.RestartPolicy != corev1.RestartPolicyNever ||
		!*s.SecurityContext.RunAsNonRoot || *s.SecurityContext.RunAsUser == 0 ||
		s.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod spec is not locked down: %+v", s)
	}
	if s.ImagePullSecrets[0].Name != "regcred" || s.PriorityClassName != "low" || len(s.Tolerations) != 1 {
		t.Errorf("config not applied: %+v", s)
	}
	names := map[string]bool{}
	for _, c := range append(s.InitContainers, s.Containers...) {
		if errs := validation.IsDNS1123Label(c.Name); len(errs) > 0 || names[c.Name] {
			t.Errorf("container name %q invalid or repeated: %v", c.Name, errs)
		}
		names[c.Name] = true
		sc := c.SecurityContext
		if *sc.AllowPrivilegeEscalation || sc.Capabilities.Drop[0] != "ALL" || len(c.Resources.Requests)+len(c.Resources.Limits) > 0 {
			t.Errorf("container %s is not restricted BestEffort: %+v", c.Name, c)
		}
	}
	if got := Images(p); !reflect.DeepEqual(got, sortedUnique(images)) {
		t.Errorf("Images = %v", got)
	}
	for _, c := range s.Containers {
		if c.ImagePullPolicy != corev1.PullAlways || c.Command[0] != "/icd/warden" {
			t.Errorf("container %s: policy %s command %v", c.Name, c.ImagePullPolicy, c.Command)
		}
	}
}

func mergeLabels(a, b map[string]string) map[string]string {
	for k, v := range b {
		a[k] = v
	}
	return a
}

func BenchmarkPlan(b *testing.B) {
	var wanted []string
	for i := 0; i < 500; i++ {
		wanted = append(wanted, img(fmt.Sprintf("image-%03d", i)))
	}
	big := cfg
	big.BatchSize = 10
	var pods []*corev1.Pod
	for i := 0; i < 50; i++ {
		pods = append(pods, existing(wanted[i*10:i*10+10], 0, t0, "cached"))
	}
	b.ReportAllocs()
	for b.Loop() {
		Plan(Input{Now: t0, Wanted: wanted, Pods: pods, Resync: time.Hour}, big)
	}
}

// With the planner's digests, a tag is pulled again when, and only when, a
// pod holds another digest of it than the current one; the other images of
// that pod move to the new pod without a pull; images with no digest are
// refreshed by age as before; pinned references never are.
func TestPlanPullsAgainOnlyAMovedTag(t *testing.T) {
	a, b := img("a"), img("b")
	held := "sha256:" + strings.Repeat("a", 64) // what asListed's cached containers hold
	moved := "sha256:" + strings.Repeat("b", 64)
	pinned := "docker.io/library/p@sha256:" + strings.Repeat("c", 64)
	old := t0.Add(-2 * time.Hour)
	always := func(images []string, created time.Time) *corev1.Pod {
		return asListed(cfg.Pod(images, 1, corev1.PullAlways), created, "cached")
	}
	current := func(digests map[string]string, since time.Time) map[string]Current {
		out := map[string]Current{}
		for img, d := range digests {
			out[img] = Current{Digest: d, Since: since}
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		wanted  []string
		pods    []*corev1.Pod
		current map[string]Current
		want    planned
		pulls   []int
		requeue time.Duration
	}{
		{name: "unchanged digests: an old pod is left alone, and nothing is due by age", wanted: []string{a, b},
			pods:    []*corev1.Pod{existing([]string{a, b}, 0, old, "cached")},
			current: current(map[string]string{a: held, b: held}, old.Add(-time.Hour))},
		{name: "a moved tag is pulled again, its pod's other image moves without a pull", wanted: []string{a, b},
			pods:    []*corev1.Pod{existing([]string{a, b}, 0, old, "cached")},
			current: current(map[string]string{a: moved, b: held}, t0.Add(-time.Minute)),
			want:    planned{create: []string{"1: a! b"}}, pulls: []int{1}},
		{name: "a young pod holding an old digest pulls again too (no waiting for Resync)", wanted: []string{a},
			pods:    []*corev1.Pod{existing([]string{a}, 0, t0.Add(-time.Minute), "cached")},
			current: current(map[string]string{a: moved}, t0.Add(-time.Minute)),
			want:    planned{create: []string{"1: a!"}}, pulls: []int{1}},
		{name: "a pod that pulled afresh after the check holds what came later: left alone", wanted: []string{a},
			pods:    []*corev1.Pod{always([]string{a}, t0.Add(-time.Minute))},
			current: current(map[string]string{a: moved}, t0.Add(-2*time.Minute))},
		{name: "a pod that pulled afresh before the check holds an old digest", wanted: []string{a},
			pods:    []*corev1.Pod{always([]string{a}, t0.Add(-3*time.Minute))},
			current: current(map[string]string{a: moved}, t0.Add(-2*time.Minute)),
			want:    planned{create: []string{"2: a!"}}, pulls: []int{1}},
		{name: "a failed image is not stale (rule 2 has it)", wanted: []string{a, b},
			pods:    []*corev1.Pod{withStates(existing([]string{a, b}, 0, old, "cached"), "failed")},
			current: current(map[string]string{a: moved, b: held}, t0.Add(-time.Minute))},
		{name: "an image with no digest is refreshed by age, beside one with a digest", wanted: []string{a, b},
			pods:    []*corev1.Pod{existing([]string{a, b}, 0, old, "cached")},
			current: current(map[string]string{a: held}, old),
			want:    planned{create: []string{"1: a b!"}}, pulls: []int{1}},
		{name: "an image with no digest waits for its age", wanted: []string{b},
			pods:    []*corev1.Pod{existing([]string{b}, 0, t0.Add(-30*time.Minute), "cached")},
			current: current(map[string]string{a: held}, old), requeue: 30 * time.Minute},
		{name: "a tag whose check is still to come is pulled neither by digest nor by age (a planner that just started)", wanted: []string{a, b},
			pods:    []*corev1.Pod{existing([]string{a, b}, 0, old, "cached")},
			current: map[string]Current{a: {}, b: {}}},
		{name: "without digests at all, by age", wanted: []string{a},
			pods: []*corev1.Pod{existing([]string{a}, 0, old, "cached")},
			want: planned{create: []string{"1: a!"}}, pulls: []int{1}},
		{name: "a pinned reference is never pulled again", wanted: []string{pinned},
			pods: []*corev1.Pod{existing([]string{pinned}, 0, old, "cached")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Plan(Input{Now: t0, Wanted: tc.wanted, Pods: tc.pods, Resync: time.Hour, Current: tc.current}, cfg)
			if got := summarize(d); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("plan:\n got  %+v\n want %+v", got, tc.want)
			}
			var pulls []int
			for _, p := range d.Create {
				pulls = append(pulls, len(d.Pulls[p.Name]))
			}
			if !reflect.DeepEqual(pulls, tc.pulls) {
				t.Errorf("pulls by created pod: %v, want %v", pulls, tc.pulls)
			}
			if d.RequeueAfter != tc.requeue {
				t.Errorf("RequeueAfter = %s, want %s", d.RequeueAfter, tc.requeue)
			}
		})
	}

	// Once the fresh pod holds the current digest, the old pod goes and
	// nothing more is pulled.
	oldPod := existing([]string{a, b}, 0, old, "cached")
	freshPod := asListed(cfg.Pod([]string{a, b}, 1, corev1.PullAlways), t0, "cached")
	freshPod.Spec.Containers[1].ImagePullPolicy = corev1.PullIfNotPresent
	freshPod.Status.ContainerStatuses[0].ImageID = a + "@" + moved
	d := Plan(Input{Now: t0.Add(time.Minute), Wanted: []string{a, b}, Pods: []*corev1.Pod{oldPod, freshPod}, Resync: time.Hour,
		Current: current(map[string]string{a: moved, b: held}, t0.Add(-time.Minute))}, cfg)
	if got, want := summarize(d), (planned{delete: names(oldPod)}); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the fresh pull:\n got  %+v\n want %+v", got, want)
	}
}
