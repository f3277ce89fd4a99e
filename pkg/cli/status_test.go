package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

var now = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// dsUID and wardenUID are the UIDs of the live DaemonSet and warden
// ConfigMap of the test installation.
const (
	dsUID     = "0b5e2c1e-0000-4000-8000-000000000001"
	wardenUID = "0b5e2c1e-0000-4000-8000-000000000002"
)

// dsOwner is the owner reference the daemon sets on its prefetch pods.
var dsOwner = &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: install.Name, UID: dsUID}

// newClient is a fake API server holding objs and, unless objs hold one,
// the installation's DaemonSet.
func newClient(objs ...runtime.Object) *fake.Clientset {
	// A planner leads.
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: wanted.Planner, Namespace: install.DefaultNamespace},
		Spec: coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: now.Add(-5 * time.Second)}}}
	objs = append([]runtime.Object{lease, publishedSet()}, objs...)
	for _, o := range objs {
		if _, ok := o.(*appsv1.DaemonSet); ok {
			return fake.NewClientset(objs...)
		}
	}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: install.Name, Namespace: install.DefaultNamespace, UID: dsUID}}
	return fake.NewClientset(append([]runtime.Object{ds}, objs...)...)
}

// Images of the test installation, and the digests the planner's set
// gives them.
const (
	alpineRef  = "docker.io/library/alpine:latest"
	nginxRef   = "docker.io/library/nginx:1.27"
	missingRef = "registry.example/missing:v1"
)

var (
	digestA, digestB = "sha256:" + strings.Repeat("a", 64), "sha256:" + strings.Repeat("b", 64)
	// pinnedRef is pinned by digest: the set gives its own digest.
	pinnedRef = "docker.io/library/busybox@sha256:" + strings.Repeat("c", 64)
)

// testSet is the planner's set of the test installation: alpine and nginx
// at the digests cluster()'s nodes hold, busybox pinned by digest, the
// missing image unchecked (its registry has no such tag).
func testSet() *wanted.Set {
	return &wanted.Set{V: 1, Images: []wanted.Image{
		{Image: alpineRef, Origins: []string{"flag --image"}, Digest: digestA, Since: now.Add(-time.Minute).Unix()},
		{Image: nginxRef, Origins: []string{"flag --image"}, Digest: digestB, Since: now.Add(-2 * time.Hour).Unix()},
		{Image: pinnedRef, Origins: []string{"flag --image"}, Digest: imageref.Pinned(pinnedRef)},
		{Image: missingRef, Origins: []string{"flag --image"}, Unchecked: "the registry has no such tag (HTTP 404)"},
	}}
}

// publishedSet is the ConfigMap the planner publishes testSet in.
func publishedSet() *corev1.ConfigMap {
	data, err := wanted.Encode(testSet())
	if err != nil {
		panic(err)
	}
	return setConfigMap(data.Head)
}

// setConfigMap is the planner's ConfigMap holding data.
func setConfigMap(data []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: wanted.ConfigMap, Namespace: install.DefaultNamespace},
		BinaryData: map[string][]byte{wanted.Key: data}}
}

// daemonPodOn is the daemon pod the DaemonSet controller makes on node.
func daemonPodOn(node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "daemon-" + node, Namespace: "image-cache-daemon",
			Labels:          map[string]string{wire.LabelPartOf: wire.PartOf, wire.LabelComponent: wire.ComponentDaemon},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: install.Name, UID: dsUID, Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "daemon", Image: "ghcr.io/dcherman/image-cache-daemon:v1.0.0"}}},
	}
}

// prefetchPod is a prefetch pod of the test installation on node, an hour
// old, its containers in states, each holding its image under a digest of
// its own (sha256:aaaa..., sha256:bbbb..., by position).
func prefetchPod(node string, images []string, states ...corev1.ContainerState) *corev1.Pod {
	cfg := prefetch.Config{Namespace: "image-cache-daemon", NodeName: node, WardenImage: "w", BatchSize: 20, Owner: dsOwner}
	p := cfg.Pod(images, 0, corev1.PullIfNotPresent)
	p.CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
	p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "warden", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}}}
	for i, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, State: states[i], ImageID: c.Image + "@sha256:" + strings.Repeat(string(rune('a'+i)), 64)})
	}
	return p
}

// cachedState is a prefetch container that ran, 30 minutes ago.
var cachedState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: metav1.NewTime(now.Add(-30 * time.Minute))}}

// cluster builds the pods of an installation on two nodes: alpine cached on
// both, nginx cached on one and pulling on the other, a missing image failed.
func cluster() []runtime.Object {
	cached := cachedState
	pulling := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	failed := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "registry.example/missing:v1": not found`}}
	alpine, nginx, missing := "docker.io/library/alpine:latest", "docker.io/library/nginx:1.27", "registry.example/missing:v1"
	// Both daemons skip a hostile object; node-b's may not read ConfigMaps.
	health := func(problem string) string {
		warm := `{"warm":true,"reason":"Warm","message":"every wanted image is cached (3/3)","took":"42s"}`
		if problem != "" {
			warm = `{"warm":false,"reason":"Warming","message":"2/3 images cached"}`
		}
		return `{"sources":[{"source":"static","synced":true},{"source":"configmaps","synced":` + fmt.Sprint(problem == "") +
			`,"problem":"` + problem + `"},{"source":"workflowtemplates","synced":true,"objects":3,"skipped":1,"skippedSample":["WorkflowTemplate team/bomb"]}],"warm":` + warm + `}`
	}
	a, b := daemonPodOn("node-a"), daemonPodOn("node-b")
	a.Annotations = map[string]string{wire.AnnotationHealth: health("")}
	b.Annotations = map[string]string{wire.AnnotationHealth: health("configmaps is forbidden: User cannot list resource")}
	return []runtime.Object{
		a, b,
		prefetchPod("node-a", []string{alpine, nginx}, cached, cached),
		prefetchPod("node-b", []string{alpine, nginx}, cached, pulling),
		prefetchPod("node-a", []string{missing}, failed),
	}
}

func runStatus(t *testing.T, objs []runtime.Object, args ...string) (string, error) {
	t.Helper()
	return runStatusWith(t, newClient(objs...), args...)
}

func runStatusWith(t *testing.T, client kubernetes.Interface, args ...string) (string, error) {
	t.Helper()
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	o := &StatusOptions{IOStreams: streams, kube: kube{flags: genericclioptions.NewConfigFlags(false), client: client},
		Interval: time.Second, now: func() time.Time { return now }}
	cmd := newCmdStatus(o)
	cmd.SetArgs(append([]string{}, args...)) // nil would make cobra read os.Args
	cmd.SetContext(context.Background())
	err := cmd.Execute()
	return out.String(), err
}

// withoutDaemon is cluster() with the prefetch pod of a node that runs no
// daemon pod (the daemon set left it): not counted, named apart.
func withoutDaemon() []runtime.Object {
	cfg := prefetch.Config{Namespace: "image-cache-daemon", NodeName: "node-c", WardenImage: "w", BatchSize: 20, Owner: dsOwner}
	p := cfg.Pod([]string{"docker.io/library/alpine:latest"}, 0, corev1.PullIfNotPresent)
	p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "warden", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: p.Spec.Containers[0].Name,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: metav1.NewTime(now.Add(-time.Hour))}}}}
	return append(cluster(), p)
}

func TestStatusTables(t *testing.T) {
	for _, tc := range []struct {
		name string
		objs []runtime.Object
		args []string
	}{
		{"status", cluster(), nil},
		{"status-wide", cluster(), []string{"-o", "wide"}},
		{"status-node", cluster(), []string{"-o", "wide", "--node", "node-b"}},
		{"status-image", cluster(), []string{"--image", "nginx:1.27"}},
		{"status-json", cluster(), []string{"-o", "json"}},
		{"status-without-daemon", withoutDaemon(), nil},
		{"status-without-daemon-wide", withoutDaemon(), []string{"-o", "wide"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runStatus(t, tc.objs, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", tc.name+".golden"), []byte(out))
		})
	}
}

// withReports is objs with the reports the daemons would publish: each
// daemon pod runs, and carries the statuses of its node's prefetch pods.
func withReports(t testing.TB, objs []runtime.Object) []runtime.Object {
	t.Helper()
	byNode := map[string][]*corev1.Pod{}
	var out []runtime.Object
	for _, o := range objs {
		pod, ok := o.(*corev1.Pod)
		if !ok {
			out = append(out, o)
			continue
		}
		p := pod.DeepCopy()
		if p.Labels[wire.LabelComponent] == wire.ComponentPrefetch {
			byNode[cachestate.Node(p)] = append(byNode[cachestate.Node(p)], p)
		}
		out = append(out, p)
	}
	for _, o := range out {
		p, ok := o.(*corev1.Pod)
		if !ok || p.Labels[wire.LabelComponent] != wire.ComponentDaemon {
			continue
		}
		raw, ok := wire.EncodeReport(cachestate.Summarize(byNode[p.Spec.NodeName]))
		if !ok {
			t.Fatalf("the report of node %s does not fit", p.Spec.NodeName)
		}
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[wire.AnnotationReport] = raw
		p.Status.Phase = corev1.PodRunning
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: install.ContainerName,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	}
	return out
}

// withoutPrefetchPods is objs without its prefetch pods.
func withoutPrefetchPods(objs []runtime.Object) []runtime.Object {
	var out []runtime.Object
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); !ok || p.Labels[wire.LabelComponent] != wire.ComponentPrefetch {
			out = append(out, o)
		}
	}
	return out
}

// podLists are the label selectors of the pod LISTs client made.
func podLists(client *fake.Clientset) []string {
	var out []string
	for _, a := range client.Actions() {
		if l, ok := a.(k8stesting.ListAction); ok && a.GetResource().Resource == "pods" {
			out = append(out, l.GetListRestrictions().Labels.String())
		}
	}
	return out
}

// Where every daemon publishes its node's statuses, status reads the daemon
// pods alone and prints what it prints from the prefetch pods: the same
// tables with the prefetch pods gone from the cluster.
func TestStatusFromReports(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"status", nil},
		{"status-wide", []string{"-o", "wide"}},
		{"status-node", []string{"-o", "wide", "--node", "node-b"}},
		{"status-image", []string{"--image", "nginx:1.27"}},
		{"status-json", []string{"-o", "json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := newClient(withoutPrefetchPods(withReports(t, cluster()))...)
			out, err := runStatusWith(t, client, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", tc.name+".golden"), []byte(out))
			if got, want := podLists(client), []string{wire.LabelComponent + "=" + wire.ComponentDaemon + "," + wire.LabelPartOf + "=" + wire.PartOf}; !reflect.DeepEqual(got, want) {
				t.Errorf("pod lists %q, want %q", got, want)
			}
		})
	}
}

// A daemon's report is not used when it cannot be trusted: status then
// reads the prefetch pods (a second request), and prints what they say.
func TestStatusDistrustsReports(t *testing.T) {
	// A report that would show node-b with no image, were it read.
	const lie = `{"v":1,"images":[]}`
	for name, spoil := range map[string]func(p *corev1.Pod){
		"none": func(p *corev1.Pod) { delete(p.Annotations, wire.AnnotationReport) },
		// Its last report may be stale.
		"not running": func(p *corev1.Pod) { p.Status.Phase, p.Annotations[wire.AnnotationReport] = "", lie },
		"crash loop": func(p *corev1.Pod) {
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
			p.Annotations[wire.AnnotationReport] = lie
		},
		"deleted": func(p *corev1.Pod) {
			p.DeletionTimestamp, p.Annotations[wire.AnnotationReport] = &metav1.Time{Time: now}, lie
		},
		"unreadable": func(p *corev1.Pod) { p.Annotations[wire.AnnotationReport] = `{"v":1,"images":[["a","gone"]]}` },
		"twice": func(p *corev1.Pod) {
			p.Annotations[wire.AnnotationReport] = `{"v":1,"images":[["a","cached"],["a","failed"]]}`
		},
		"newer": func(p *corev1.Pod) { p.Annotations[wire.AnnotationReport] = `{"v":2,"images":[]}` },
	} {
		t.Run(name, func(t *testing.T) {
			objs := withReports(t, cluster())
			for _, o := range objs {
				if p := o.(*corev1.Pod); p.Name == "daemon-node-b" {
					spoil(p)
				}
			}
			client := newClient(objs...)
			out, err := runStatusWith(t, client)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "status.golden"), []byte(out))
			if got := podLists(client); len(got) != 2 || got[1] != wire.LabelPartOf+"="+wire.PartOf {
				t.Errorf("pod lists %q, want the daemons' then all", got)
			}
		})
	}
}

func TestStatusNotInstalled(t *testing.T) {
	_, err := runStatusWith(t, fake.NewClientset(cluster()...))
	if ExitCode(err) != ExitNotInstalled || !strings.Contains(err.Error(), "kubectl imagecache install") {
		t.Fatalf("err = %v (exit %d), want exit %d with advice", err, ExitCode(err), ExitNotInstalled)
	}
}

func TestAddRefusesInvalidReferences(t *testing.T) {
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	client := fake.NewClientset()
	o := newEditOptions(genericclioptions.NewConfigFlags(false), streams, false)
	o.client = client
	err := o.Complete([]string{"alpine", "Not/Valid:x", "{{template}}"})
	if err == nil || !strings.Contains(err.Error(), "Not/Valid:x") || !strings.Contains(err.Error(), "{{template}}") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("err = %v", err)
	}
	if len(client.Actions()) != 0 {
		t.Fatalf("an invalid add reached the API: %v", client.Actions())
	}
}

// trimPod keeps every field status reads: the statuses cachestate reads
// from a cut pod, and the problems read from a cut daemon pod, are those of
// the whole pod, in every state a prefetch pod can be in.
func TestTrimKeepsWhatStatusReads(t *testing.T) {
	objs := cluster()
	pods := map[string]*corev1.Pod{}
	for _, o := range objs {
		p := o.(*corev1.Pod)
		pods[p.Name] = p
	}
	base := prefetchPodOf(t, objs, "node-b", "docker.io/library/nginx:1.27")
	variant := func(name string, change func(p *corev1.Pod)) {
		p := base.DeepCopy()
		change(p)
		p.Name = name
		pods[name] = p
	}
	variant("warden-failed", func(p *corev1.Pod) {
		p.Status.InitContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "not found"}}
	})
	variant("warden-crashed", func(p *corev1.Pod) {
		p.Status.InitContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error", Message: "no space"}}
	})
	variant("rejected", func(p *corev1.Pod) {
		p.Status = corev1.PodStatus{Phase: corev1.PodFailed, Reason: "OutOfpods", Message: "Node didn't have enough resource: pods"}
	})
	variant("exited", func(p *corev1.Pod) {
		p.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 127, Reason: "Error"}}
	})
	variant("running", func(p *corev1.Pod) {
		p.Status.ContainerStatuses[1].State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	})
	variant("rate-limited", func(p *corev1.Pod) {
		p.Status.ContainerStatuses[1].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "pull QPS exceeded"}}
	})
	variant("unscheduled-newer", func(p *corev1.Pod) {
		p.Spec.NodeName, p.Status = "", corev1.PodStatus{}
		p.CreationTimestamp = metav1.NewTime(now)
	})
	variant("deleting-newest", func(p *corev1.Pod) {
		p.CreationTimestamp, p.DeletionTimestamp = metav1.NewTime(now), &metav1.Time{Time: now}
	})
	variant("daemon-not-ready", func(p *corev1.Pod) {
		*p = *pods["daemon-node-b"].DeepCopy()
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionFalse}}
	})
	variant("daemon-pending", func(p *corev1.Pod) {
		*p = *pods["daemon-node-a"].DeepCopy()
		p.Status.Phase = corev1.PodPending
	})
	variant("daemon-bad-report", func(p *corev1.Pod) {
		*p = *pods["daemon-node-a"].DeepCopy()
		p.Annotations[wire.AnnotationHealth] = "{"
	})

	var whole, cut []*corev1.Pod
	for name, p := range pods {
		obj, _ := trimPod(p)
		tp := &obj.(*trimmedPod).Pod
		whole, cut = append(whole, p), append(cut, tp)
		t.Run(name, func(t *testing.T) {
			if got, want := cachestate.FromPod(tp), cachestate.FromPod(p); !reflect.DeepEqual(got, want) {
				t.Errorf("statuses of the cut pod:\n%+v\nwant:\n%+v", got, want)
			}
			r, err := healthReport(p)
			cr, cerr := healthReport(tp)
			if got, want := daemonProblems(tp, cr, cerr), daemonProblems(p, r, err); !reflect.DeepEqual(got, want) || !reflect.DeepEqual(cr, r) {
				t.Errorf("problems of the cut pod: %q, want %q", got, want)
			}
		})
	}
	if got, want := cachestate.Summarize(cut), cachestate.Summarize(whole); !reflect.DeepEqual(got, want) {
		t.Errorf("summary of the cut pods:\n%+v\nwant:\n%+v", got, want)
	}
}

// Lines about nodes name a few and count the rest: at 1,000 nodes they
// stay lines.
func TestFirstOf(t *testing.T) {
	nodes := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("n%d", i))
		}
		return out
	}
	for _, tc := range []struct {
		items []string
		want  string
	}{
		{nil, ""},
		{nodes(1), "n0"},
		{nodes(5), "n0, n1, n2, n3, n4"},
		{nodes(1000), "n0, n1, n2, n3, n4, ... (995 more)"},
	} {
		t.Run(fmt.Sprint(len(tc.items)), func(t *testing.T) {
			if got := firstOf(tc.items, ", "); got != tc.want {
				t.Errorf("firstOf = %q, want %q", got, tc.want)
			}
		})
	}
	s := &snapshot{Nodes: nodes(1000), Warm: map[string]*wire.Warmth{}}
	for _, n := range s.Nodes {
		s.Warm[n] = &wire.Warmth{Reason: "Warming", Message: "2/3 images cached"}
	}
	if got, want := warmLine(s), "warm: 0/1000 nodes; not warm: n0 Warming (2/3 images cached); n1 Warming (2/3 images cached); "+
		"n2 Warming (2/3 images cached); n3 Warming (2/3 images cached); n4 Warming (2/3 images cached); ... (995 more)"; got != want {
		t.Errorf("warm line:\n%s\nwant:\n%s", got, want)
	}
}

// A user who may list pods but not read the DaemonSet is told which rights
// status needs, not given a bare "forbidden".
func TestStatusSaysWhichRightsItNeeds(t *testing.T) {
	client := newClient(cluster()...)
	client.PrependReactor("get", "daemonsets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(appsv1.Resource("daemonsets"), "image-cache-daemon", errors.New("no"))
	})
	_, err := runStatusWith(t, client)
	if err == nil || !strings.Contains(err.Error(), "it needs get on that DaemonSet (and on configmap/") {
		t.Fatalf("err = %v", err)
	}
}

// When no planner leads, status says so: the nodes keep caching the last
// set, and nothing new reaches them.
func TestStatusSaysWhenThePlannerIsDown(t *testing.T) {
	ctx := context.Background()
	client := newClient(cluster()...)
	leases := client.CoordinationV1().Leases(install.DefaultNamespace)
	lease, err := leases.Get(ctx, wanted.Planner, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lease.Spec.RenewTime = &metav1.MicroTime{Time: now.Add(-10 * time.Minute)}
	if _, err := leases.Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := runStatusWith(t, client)
	if err != nil || !strings.Contains(out, "the planner is down (no leader for 10m0s)") {
		t.Errorf("a stale Lease: %v\n%s", err, out)
	}
	if err := leases.Delete(ctx, wanted.Planner, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err = runStatusWith(t, client)
	if err != nil || !strings.Contains(out, "no planner has led yet") {
		t.Errorf("no Lease: %v\n%s", err, out)
	}
}

// The gap after the planner's leader died and before a standby took its
// Lease over: the Lease is still fresh, but its holder is gone or not
// running, and status names it.
func TestStatusNamesAGoneLeader(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"deleted", nil, "the planner's leader planner-0 is gone: a standby takes over when its Lease expires (in 10s)"},
		{"being deleted", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "planner-0", Namespace: install.DefaultNamespace,
			DeletionTimestamp: &metav1.Time{Time: now}, Finalizers: []string{"x"}}, Status: corev1.PodStatus{Phase: corev1.PodRunning}},
			"the planner's leader planner-0 is being deleted"},
		{"failed", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "planner-0", Namespace: install.DefaultNamespace},
			Status: corev1.PodStatus{Phase: corev1.PodFailed}}, "the planner's leader planner-0 is not running (Failed)"},
		{"running", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "planner-0", Namespace: install.DefaultNamespace},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}}, ""},
		{"running, late", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "planner-0", Namespace: install.DefaultNamespace},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}},
			"the planner's leader planner-0 has not renewed its Lease for 7s (it renews every 2s): a standby takes over when its Lease expires (in 8s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := cluster()
			if tc.pod != nil {
				objs = append(objs, tc.pod)
			}
			client := newClient(objs...)
			leases := client.CoordinationV1().Leases(install.DefaultNamespace)
			lease, err := leases.Get(ctx, wanted.Planner, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds = ptr.To("planner-0"), ptr.To[int32](15)
			if tc.name == "running, late" {
				lease.Spec.RenewTime = &metav1.MicroTime{Time: now.Add(-7 * time.Second)}
			}
			if _, err := leases.Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			out, err := runStatusWith(t, client)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(out, "the planner's leader"); got != (tc.want != "") || tc.want != "" && !strings.Contains(out, tc.want) {
				t.Errorf("output:\n%s\nwant a line holding %q", out, tc.want)
			}
		})
	}
}
