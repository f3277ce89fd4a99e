package prefetch

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
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
	p := cfg.Pod(images, generation, corev1.PullIfNotPresent)
	p.UID = types.UID("uid-" + p.Name)
	p.CreationTimestamp = metav1.NewTime(created)
	p.Spec.NodeName = cfg.NodeName
	p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "warden",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}}
	for _, c := range p.Spec.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
		switch state {
		case "cached":
			cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, FinishedAt: metav1.NewTime(created.Add(time.Second))}
			cs.ImageID = c.Image + "@sha256:" + strings.Repeat("a", 64)
		case "failed":
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "not found"}
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, cs)
	}
	return p
}

type planned struct {
	create [][]string // images of each created pod
	policy []corev1.PullPolicy
	delete []string // names
}

func summarize(d Decision) planned {
	var p planned
	for _, c := range d.Create {
		p.create = append(p.create, Images(c))
		p.policy = append(p.policy, c.Spec.Containers[0].ImagePullPolicy)
	}
	for _, del := range d.Delete {
		p.delete = append(p.delete, del.Name)
	}
	return p
}

func TestPlan(t *testing.T) {
	a, b, c, d := img("a"), img("b"), img("c"), img("d")
	cachedAB := existing([]string{a, b}, 0, t0, "cached")
	pullingAB := existing([]string{a, b}, 0, t0, "pulling")
	failedC := existing([]string{c}, 0, t0, "failed")
	oldAB := existing([]string{a, b}, 2, t0.Add(-time.Hour), "cached")
	deleting := existing([]string{d}, 0, t0, "cached")
	deleting.DeletionTimestamp = ptrTo(metav1.NewTime(t0))

	for _, tc := range []struct {
		name   string
		wanted []string
		pods   []*corev1.Pod
		resync time.Duration
		want   planned
	}{
		{name: "nothing wanted, nothing there"},
		{name: "new images are batched", wanted: []string{d, c, b, a, img("e")},
			want: planned{create: [][]string{{a, b, c}, {d, img("e")}}, policy: []corev1.PullPolicy{"IfNotPresent", "IfNotPresent"}}},
		{name: "covered images need nothing", wanted: []string{a, b}, pods: []*corev1.Pod{cachedAB}},
		{name: "rule 1: a pod of unwanted images goes", wanted: []string{c}, pods: []*corev1.Pod{cachedAB, failedC},
			want: planned{delete: []string{cachedAB.Name}}},
		{name: "rule 1 applies to pods still pulling", wanted: nil, pods: []*corev1.Pod{pullingAB},
			want: planned{delete: []string{pullingAB.Name}}},
		{name: "rule 2: a finished pod due for resync is pulled again", wanted: []string{a, b}, pods: []*corev1.Pod{oldAB}, resync: time.Minute,
			want: planned{create: [][]string{{a, b}}, policy: []corev1.PullPolicy{"Always"}, delete: []string{oldAB.Name}}},
		{name: "rule 2 waits for an unfinished pod", wanted: []string{a, b},
			pods: []*corev1.Pod{existing([]string{a, b}, 0, t0.Add(-time.Hour), "pulling")}, resync: time.Minute},
		{name: "resync off", wanted: []string{a, b}, pods: []*corev1.Pod{oldAB}},
		{name: "rule 3: a finished pod with unwanted images is re-batched", wanted: []string{a}, pods: []*corev1.Pod{cachedAB},
			want: planned{create: [][]string{{a}}, policy: []corev1.PullPolicy{"IfNotPresent"}, delete: []string{cachedAB.Name}}},
		{name: "rule 4: a pulling pod with an unwanted image is left alone", wanted: []string{a}, pods: []*corev1.Pod{pullingAB}},
		{name: "rule 5: a new image does not disturb the others", wanted: []string{a, b, d}, pods: []*corev1.Pod{pullingAB},
			want: planned{create: [][]string{{d}}, policy: []corev1.PullPolicy{"IfNotPresent"}}},
		{name: "a failed image keeps its pod", wanted: []string{c}, pods: []*corev1.Pod{failedC}},
		{name: "a pod being deleted covers nothing", wanted: []string{d}, pods: []*corev1.Pod{deleting},
			want: planned{create: [][]string{{d}}, policy: []corev1.PullPolicy{"IfNotPresent"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := summarize(Plan(t0, tc.wanted, tc.pods, tc.resync, cfg))
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("plan:\n got  %+v\n want %+v", got, tc.want)
			}
		})
	}
}

func TestPlanReplacementNeverReusesAName(t *testing.T) {
	a, b := img("a"), img("b")
	old := existing([]string{a, b}, 4, t0.Add(-time.Hour), "cached")
	d := Plan(t0, []string{a, b}, []*corev1.Pod{old}, time.Minute, cfg)
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
	first := Plan(t0, wanted, nil, time.Hour, cfg)
	if len(first.Create) != 8 { // 23 images, 3 a pod
		t.Fatalf("created %d pods, want 8", len(first.Create))
	}
	// Apply the decision: the pods now exist and have finished.
	var pods []*corev1.Pod
	for _, p := range first.Create {
		pods = append(pods, existing(Images(p), Generation(p), t0, "cached"))
	}
	second := Plan(t0.Add(time.Minute), wanted, pods, time.Hour, cfg)
	if len(second.Create)+len(second.Delete) != 0 {
		t.Fatalf("second plan is not empty: %+v", summarize(second))
	}
	if second.RequeueAfter != 59*time.Minute {
		t.Fatalf("RequeueAfter = %s, want 59m (the first resync)", second.RequeueAfter)
	}
	// The same inputs, shuffled, give the same pods.
	shuffled := append([]string(nil), wanted...)
	sort.Sort(sort.Reverse(sort.StringSlice(shuffled)))
	again := Plan(t0, shuffled, nil, time.Hour, cfg)
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
	if !reflect.DeepEqual(p.Labels, mergeLabels(cachestate.NodeLabels(long.NodeName), map[string]string{cachestate.LabelGeneration: "3"})) {
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
		Plan(t0, wanted, pods, time.Hour, big)
	}
}
