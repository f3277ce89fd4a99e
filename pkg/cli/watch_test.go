package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// patience bounds every wait for the code under test; a passing test
// never reaches it.
const patience = 10 * time.Second

// syncBuffer is an output that tests read while a command writes it.
type syncBuffer struct {
	mu    sync.Mutex
	b     strings.Builder
	wrote chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{wrote: make(chan struct{}, 1)} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.b.Write(p)
	s.mu.Unlock()
	select {
	case s.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until the output holds want n times.
func (s *syncBuffer) waitFor(t *testing.T, want string, n int) {
	t.Helper()
	timeout := time.After(patience)
	for strings.Count(s.String(), want) < n {
		select {
		case <-s.wrote:
		case <-timeout:
			t.Fatalf("the output never held %q %d times:\n%s", want, n, s)
		}
	}
}

// fakeWatches makes every pod watch on client one the test drives, handed
// out on opened as it is opened; an error sent to fail refuses the next
// watch instead.
func fakeWatches(client *fake.Clientset) (opened <-chan *watch.FakeWatcher, fail chan<- error) {
	watches, failures := make(chan *watch.FakeWatcher, 10), make(chan error, 1)
	client.PrependWatchReactor("pods", func(a k8stesting.Action) (bool, watch.Interface, error) {
		if daemonsOnly(a) {
			// status reads the daemons' reports first; the tests that
			// drive watches follow what it reads next.
			return true, watch.NewFake(), nil
		}
		select {
		case err := <-failures:
			return true, nil, err
		default:
		}
		w := watch.NewFakeWithChanSize(10, false)
		watches <- w
		return true, w, nil
	})
	return watches, failures
}

func nextWatch(t *testing.T, opened <-chan *watch.FakeWatcher) *watch.FakeWatcher {
	t.Helper()
	select {
	case w := <-opened:
		return w
	case <-time.After(patience):
		t.Fatal("no watch was opened")
		return nil
	}
}

// daemonsOnly reports whether a is a list or watch of the daemon pods
// alone: status reading the daemons' reports.
func daemonsOnly(a k8stesting.Action) bool {
	var sel labels.Selector
	switch a := a.(type) {
	case k8stesting.WatchAction:
		sel = a.GetWatchRestrictions().Labels
	case k8stesting.ListAction:
		sel = a.GetListRestrictions().Labels
	default:
		return false
	}
	return sel != nil && strings.Contains(sel.String(), wire.LabelComponent+"="+wire.ComponentDaemon)
}

// podActions are the client's requests about pods, by verb, and the
// resource versions its watches started from, after the reading of the
// daemons' reports alone.
func podActions(client *fake.Clientset) (verbs map[string]int, watchedFrom []string) {
	verbs = map[string]int{}
	for _, a := range client.Actions() {
		if a.GetResource().Resource != "pods" || daemonsOnly(a) {
			continue
		}
		verbs[a.GetVerb()]++
		if w, ok := a.(k8stesting.WatchAction); ok {
			watchedFrom = append(watchedFrom, w.GetWatchRestrictions().ResourceVersion)
		}
	}
	return verbs, watchedFrom
}

// prefetchPodOf finds the prefetch pod of node that holds image in objs.
func prefetchPodOf(t *testing.T, objs []runtime.Object, node, image string) *corev1.Pod {
	t.Helper()
	for _, o := range objs {
		p := o.(*corev1.Pod)
		if p.Spec.NodeName != node || p.Labels[wire.LabelComponent] != wire.ComponentPrefetch {
			continue
		}
		for _, c := range p.Spec.Containers {
			if c.Image == image {
				return p
			}
		}
	}
	t.Fatalf("no prefetch pod of %s holds %s", node, image)
	return nil
}

// withState is pod at resourceVersion rv with image's container in state.
func withState(pod *corev1.Pod, rv, image string, state corev1.ContainerState) *corev1.Pod {
	p := pod.DeepCopy()
	p.ResourceVersion = rv
	for i, c := range p.Spec.Containers {
		if c.Image == image {
			p.Status.ContainerStatuses[i].State = state
		}
	}
	return p
}

var cachedNow = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: metav1.NewTime(now.Add(-time.Minute))}}

// status --watch reads once and then follows the watch: a pod update shows
// without a second LIST, a watch that closes is opened again where it
// stopped, "410 Gone" makes it read the pods again, and so does a watch
// the server refuses, with a warning.
func TestStatusWatch(t *testing.T) {
	objs := cluster()
	client := newClient(objs...)
	opened, fail := fakeWatches(client)
	out, errOut := newSyncBuffer(), newSyncBuffer()
	o := &StatusOptions{IOStreams: genericiooptions.IOStreams{Out: out, ErrOut: errOut},
		kube:     kube{flags: genericclioptions.NewConfigFlags(false), client: client},
		Interval: 100 * time.Millisecond, now: func() time.Time { return now }}
	cmd := newCmdStatus(o)
	cmd.SetArgs([]string{"--watch"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	const nginx, summary = "docker.io/library/nginx:1.27", " images on 2 nodes: "
	out.waitFor(t, "nginx:1.27                    1/2", 1)
	w := nextWatch(t, opened)
	// A change the table does not show (when a cached image finished):
	// no new table.
	quiet := withState(prefetchPodOf(t, objs, "node-a", nginx), "4", nginx, cachedNow)
	if err := client.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), quiet, ns); err != nil {
		t.Fatal(err)
	}
	w.Modify(quiet)
	// Nothing shows that the change was read and printed nothing: give it
	// a few refresh intervals, so that it is not folded into the next one.
	time.Sleep(5 * o.Interval)
	updated := withState(prefetchPodOf(t, objs, "node-b", nginx), "5", nginx, cachedNow)
	// The store the next list reads, and the event.
	if err := client.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), updated, ns); err != nil {
		t.Fatal(err)
	}
	w.Modify(updated)
	out.waitFor(t, "nginx:1.27                    2/2", 1)
	if verbs, _ := podActions(client); verbs["list"] != 1 || verbs["watch"] != 1 {
		t.Errorf("requests after an update: %v, want one list and one watch", verbs)
	}

	w.Stop() // the server ends the watch
	w = nextWatch(t, opened)
	if verbs, from := podActions(client); verbs["list"] != 1 || from[len(from)-1] != "5" {
		t.Errorf("after the watch closed: %v, watches from resource versions %q; want no new list and a watch from 5", verbs, from)
	}

	fail <- apierrors.NewServiceUnavailable("the watch cache is not ready")
	w.Error(&apierrors.NewResourceExpired("too old resource version: 5 (6)").ErrStatus)
	nextWatch(t, opened)
	if verbs, _ := podActions(client); verbs["list"] != 3 {
		t.Errorf("after 410 Gone, then a refused watch: %v, want the pods listed twice more", verbs)
	}
	errOut.waitFor(t, "warning: watching the pods of namespace image-cache-daemon: the watch cache is not ready (trying again)\n", 1)

	cancel()
	if err := <-done; err != nil {
		t.Errorf("interrupted --watch: %v", err)
	}
	if got := strings.Count(out.String(), summary); got != 2 {
		t.Errorf("%d tables, want 2 (the first, and one after the update; reading the same pods again shows nothing new):\n%s", got, out)
	}
}

// add --wait completes from watch events: a pull the kubelet refused under
// its pull budget is pending, and the update that caches it ends the wait.
func TestAddWaitFollowsWatch(t *testing.T) {
	const nginx = "docker.io/library/nginx:1.27"
	objs := cluster()
	onB := prefetchPodOf(t, objs, "node-b", nginx)
	*onB = *withState(onB, "3", nginx, corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
		Reason: "ErrImagePull", Message: "pull QPS exceeded"}})
	o, client, _ := editOptions(false, objs...)
	opened, _ := fakeWatches(client)
	out, done := startAddWait(t, o)

	out.waitFor(t, "cached: nginx:1.27 1/2\n", 1)
	nextWatch(t, opened).Modify(withState(onB, "4", nginx, cachedNow))
	ended(t, done, out)
	if !strings.HasSuffix(out.String(), "cached: nginx:1.27 1/2\ncached: nginx:1.27 2/2\nevery node (2) has nginx:1.27\n") {
		t.Errorf("output:\n%s", out)
	}
	if verbs, _ := podActions(client); verbs["list"] != 1 {
		t.Errorf("requests: %v, want a single list", verbs)
	}
}

// A pod list the API server refuses ends status at once, saying what it
// was reading, instead of retrying in the background.
func TestStatusListRefused(t *testing.T) {
	client := newClient(cluster()...)
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("no RBAC policy matched"))
	})
	for _, args := range [][]string{nil, {"--watch"}} {
		streams, _, _, _ := genericiooptions.NewTestIOStreams()
		o := &StatusOptions{IOStreams: streams, kube: kube{flags: genericclioptions.NewConfigFlags(false), client: client},
			Interval: time.Second, now: time.Now}
		cmd := newCmdStatus(o)
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		cmd.SetArgs(append([]string{}, args...))
		err := cmd.ExecuteContext(context.Background())
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "reading the pods of namespace image-cache-daemon") {
			t.Errorf("status %v: err = %v", args, err)
		}
	}
}

// status reads the daemons' reports with one request, in protobuf, through
// the client the kubectl flags build: a streamed list, or on a server
// without streamed lists the refused attempt and one LIST; one GET of
// the DaemonSet, whose UID says which pods are the installation's, and one
// of the planner's Lease. Without
// reports it reads all the pods in as many more, and the warden ConfigMap
// that owns prefetch pods with one more GET. The output is the same as from
// the fake.
func TestStatusOneRequest(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("testdata", "status.golden"))
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, reports := range []bool{true, false} {
		objs := cluster()
		if reports {
			objs = withReports(t, objs)
		}
		var pods []corev1.Pod
		for _, o := range objs {
			pods = append(pods, *o.(*corev1.Pod))
		}
		srv := newPodServer(t, pods)
		for _, tc := range []struct {
			name     string
			stream   bool
			requests int64
		}{
			{"streamed list", true, 1},
			{"list", false, 2},
		} {
			if !reports {
				tc.requests = 2*tc.requests + 1 // and the warden ConfigMap
			}
			tc.requests += 3 // the DaemonSet, the planner's Lease, its wanted set
			t.Run(fmt.Sprintf("%s/reports=%v", tc.name, reports), func(t *testing.T) {
				srv.stream.Store(tc.stream)
				srv.requests.Store(0)
				flags := genericclioptions.NewConfigFlags(false)
				flags.KubeConfig, flags.APIServer = &kubeconfig, &srv.URL
				streams, _, out, _ := genericiooptions.NewTestIOStreams()
				cmd := newCmdStatus(&StatusOptions{IOStreams: streams, kube: kube{flags: flags}, Interval: time.Second, now: func() time.Time { return now }})
				cmd.SetArgs([]string{})
				if err := cmd.ExecuteContext(context.Background()); err != nil {
					t.Fatal(err)
				}
				if out.String() != string(want) {
					t.Errorf("output:\n%s\nwant:\n%s", out, want)
				}
				if n := srv.requests.Load(); n != tc.requests {
					t.Errorf("%d requests, want %d", n, tc.requests)
				}
			})
		}
		if _, json := srv.accepts.Load(runtime.ContentTypeJSON); json {
			t.Error("status asked for JSON; protobuf decodes thousands of pods several times faster")
		}
	}
}

// reportsCached is daemonB reporting nginx cached on node-b.
func reportsCached(t *testing.T, objs []runtime.Object, _ *fake.Clientset, daemonB *corev1.Pod) *corev1.Pod {
	const nginx = "docker.io/library/nginx:1.27"
	onB := withState(prefetchPodOf(t, objs, "node-b", nginx), "4", nginx, cachedNow)
	var pods []*corev1.Pod
	for _, obj := range objs {
		if p := obj.(*corev1.Pod); cachestate.Node(p) == "node-b" && p.Labels[wire.LabelComponent] == wire.ComponentPrefetch && p.Name != onB.Name {
			pods = append(pods, p)
		}
	}
	raw, _ := wire.EncodeReport(cachestate.Summarize(append(pods, onB)))
	daemonB.Annotations[wire.AnnotationReport] = raw
	return daemonB
}

// Where the daemons publish reports, add --wait follows the daemon pods
// alone: a daemon's new report ends the wait, and no prefetch pod is read,
// also when a daemon publishes its first report after the wait began. When
// a report stops being one to trust during the wait (its daemon crashed),
// the wait goes on from the prefetch pods.
func TestAddWaitOnReports(t *testing.T) {
	const nginx = "docker.io/library/nginx:1.27"
	podsResource := corev1.SchemeGroupVersion.WithResource("pods")
	daemons := wire.LabelComponent + "=" + wire.ComponentDaemon + "," + wire.LabelPartOf + "=" + wire.PartOf
	for _, tc := range []struct {
		name string
		// change makes node-b's pull end, and returns node-b's daemon pod
		// as the watch then shows it.
		change func(t *testing.T, objs []runtime.Object, client *fake.Clientset, daemonB *corev1.Pod) *corev1.Pod
		lists  []string
		// justStarted: node-b's daemon has published no report yet when
		// the wait begins, and the wait gives it reportGrace.
		justStarted bool
	}{
		{"the daemon reports it", reportsCached, []string{daemons}, false},
		{"the daemon reports it first", reportsCached, []string{daemons}, true},
		{"the daemon crashes first", func(t *testing.T, objs []runtime.Object, client *fake.Clientset, daemonB *corev1.Pod) *corev1.Pod {
			if err := client.Tracker().Update(podsResource, withState(prefetchPodOf(t, objs, "node-b", nginx), "4", nginx, cachedNow), ns); err != nil {
				t.Fatal(err)
			}
			daemonB.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
			if err := client.Tracker().Update(podsResource, daemonB, ns); err != nil {
				t.Fatal(err)
			}
			return daemonB
		}, []string{daemons, wire.LabelPartOf + "=" + wire.PartOf}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := withReports(t, cluster())
			if tc.justStarted {
				defer func(g time.Duration) { reportGrace = g }(reportGrace)
				reportGrace = patience
				for _, obj := range objs {
					if p := obj.(*corev1.Pod); p.Name == "daemon-node-b" {
						delete(p.Annotations, wire.AnnotationReport)
					}
				}
			}
			o, client, _ := editOptions(false, objs...)
			opened := make(chan *watch.FakeWatcher, 10)
			client.PrependWatchReactor("pods", func(a k8stesting.Action) (bool, watch.Interface, error) {
				w := watch.NewFakeWithChanSize(10, false)
				if daemonsOnly(a) {
					opened <- w
				}
				return true, w, nil
			})
			out, done := startAddWait(t, o)
			if !tc.justStarted {
				out.waitFor(t, "cached: nginx:1.27 1/2\n", 1)
			} // else nothing is shown until the report comes
			var daemonB *corev1.Pod
			for _, obj := range objs {
				if p := obj.(*corev1.Pod); p.Name == "daemon-node-b" {
					daemonB = p.DeepCopy()
				}
			}
			daemonB.ResourceVersion = "5"
			nextWatch(t, opened).Modify(tc.change(t, objs, client, daemonB))
			ended(t, done, out)
			if !strings.HasSuffix(out.String(), "every node (2) has nginx:1.27\n") {
				t.Errorf("output:\n%s", out)
			}
			if got := podLists(client); !reflect.DeepEqual(got, tc.lists) {
				t.Errorf("pod lists %q, want %q", got, tc.lists)
			}
		})
	}
}

// startAddWait runs add --wait nginx:1.27 with o, in the background.
func startAddWait(t *testing.T, o *EditOptions) (*syncBuffer, <-chan error) {
	out := newSyncBuffer()
	o.Out = out
	o.Wait.Enabled, o.Wait.Interval = true, 10*time.Millisecond
	done := make(chan error)
	go func() { done <- runOptions(t, o, "nginx:1.27") }()
	return out, done
}

// ended waits for add --wait to end, and end well.
func ended(t *testing.T, done <-chan error, out *syncBuffer) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("add --wait: %v\n%s", err, out)
		}
	case <-time.After(patience):
		t.Fatalf("add --wait did not end:\n%s", out)
	}
}
