//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/dcherman/image-cache-daemon/internal/ociimage"
	"github.com/dcherman/image-cache-daemon/internal/testcluster"
	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/install/installtest"
	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// daemonImage is the project image built from this commit (make image).
func daemonImage(t *testing.T) string {
	t.Helper()
	img := os.Getenv("ICD_IMAGE")
	if img == "" {
		t.Fatal("ICD_IMAGE is not set: run the e2e suite through make e2e, which builds and pushes the project image")
	}
	return img
}

func applier(t *testing.T) *install.Applier {
	t.Helper()
	a, err := testcluster.Applier(env.config, env.client)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// installDaemon installs the daemon with o and uninstalls it (waiting for
// its namespace to go) when the test ends.
func installDaemon(t *testing.T, o install.Options) {
	t.Helper()
	ctx := context.Background()
	a := applier(t)
	objs := installtest.Objects(t, o)
	if _, err := a.Apply(ctx, objs); err != nil {
		t.Fatalf("install: %v", err)
	}
	t.Cleanup(func() {
		saveArtifacts(t, o.Namespace)
		if _, err := a.Delete(context.Background(), objs); err != nil {
			t.Errorf("uninstall: %v", err)
		}
		err := wait.PollUntilContextTimeout(context.Background(), time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := env.client.CoreV1().Namespaces().Get(ctx, o.Namespace, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Errorf("namespace %s was not removed: %v", o.Namespace, err)
		}
	})
	waitRollout(t, o.Namespace)
}

// reconfigure applies o to a running installation and waits for the
// daemon pods to be replaced.
func reconfigure(t *testing.T, o install.Options) {
	t.Helper()
	if _, err := applier(t).Apply(context.Background(), installtest.Objects(t, o)); err != nil {
		t.Fatalf("reconfigure: %v", err)
	}
	waitRollout(t, o.Namespace)
}

func waitRollout(t *testing.T, ns string) {
	t.Helper()
	if err := testcluster.WaitRollout(context.Background(), env.client, ns, 2*time.Minute); err != nil {
		t.Fatalf("the DaemonSet never became ready: %v\n%s", err, daemonLogs(t, ns))
	}
}

// daemonsAndPlanner selects the node daemons' and the planner's pods.
const daemonsAndPlanner = wire.LabelComponent + " in (" + wire.ComponentDaemon + "," + wire.ComponentPlanner + ")"

func daemonLogs(t *testing.T, ns string) string {
	pods, err := env.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: daemonsAndPlanner})
	if err != nil || len(pods.Items) == 0 {
		return "(no daemon pod)"
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "--- %s\n%s", p.Name, describe(&p))
		raw, err := env.client.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: ptrTo[int64](40)}).Do(context.Background()).Raw()
		if err == nil {
			b.Write(raw)
		}
	}
	return b.String()
}

func ptrTo[T any](v T) *T { return &v }

// saveArtifacts writes the daemon's logs and the prefetch pods to
// $ICD_E2E_ARTIFACTS (make e2e sets it), for a look after the run.
func saveArtifacts(t *testing.T, ns string) {
	dir := os.Getenv("ICD_E2E_ARTIFACTS")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("artifacts: %v", err)
		return
	}
	ctx := context.Background()
	pods, err := env.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "--- %s created %s\n%s", p.Name, p.CreationTimestamp.Format(time.RFC3339), describe(&p))
		if p.Labels[wire.LabelComponent] == wire.ComponentDaemon {
			raw, err := env.client.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{}).Do(ctx).Raw()
			if err == nil {
				_ = os.WriteFile(filepath.Join(dir, t.Name()+"-"+p.Name+".log"), raw, 0o644)
			}
		}
	}
	_ = os.WriteFile(filepath.Join(dir, t.Name()+"-pods.txt"), []byte(b.String()), 0o644)
}

// prefetchPods lists the prefetch pods in ns.
func prefetchPods(t *testing.T, ns string) []*corev1.Pod {
	t.Helper()
	pods, err := testcluster.PrefetchPods(context.Background(), env.client, ns)
	if err != nil {
		t.Fatal(err)
	}
	return pods
}

// imageStatus waits until cond holds for image's state on the node and
// returns that state.
func imageStatus(t *testing.T, ns, image string, timeout time.Duration, what string, cond func(wire.ImageStatus) bool) wire.ImageStatus {
	t.Helper()
	image = mustNormalize(t, image)
	var last wire.ImageStatus
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		for _, st := range cachestate.Summarize(prefetchPods(t, ns)) {
			if st.Image == image {
				last = st
				return cond(st), nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("%s never became %s within %s; last state %+v\n%s", image, what, timeout, last, daemonLogs(t, ns))
	}
	return last
}

func waitCached(t *testing.T, ns, image string) wire.ImageStatus {
	t.Helper()
	st := imageStatus(t, ns, image, 3*time.Minute, "cached", func(s wire.ImageStatus) bool { return s.State == wire.Cached })
	nodeHasImage(t, st.Node, image, st.Digest)
	return st
}

// nodeHasImage checks on the node itself (the kubelet's report of
// containerd's images), not only in pod status.
func nodeHasImage(t *testing.T, node, image, digest string) {
	t.Helper()
	repo := image
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	want := repo + "@" + digest
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		n, err := env.client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, img := range n.Status.Images {
			for _, name := range img.Names {
				if name == want {
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("node %s does not list %s among its images", node, want)
	}
}

func mustNormalize(t *testing.T, image string) string {
	t.Helper()
	n, err := imageref.Normalize(image)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// imageList creates or replaces a labelled image ConfigMap in ns.
func imageList(t *testing.T, ns, name, data string) {
	t.Helper()
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{wire.LabelPartOf: wire.PartOf}},
		Data:       map[string]string{source.DefaultKey: data},
	}
	cms := env.client.CoreV1().ConfigMaps(ns)
	if _, err := cms.Create(context.Background(), cm, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		_, err = cms.Update(context.Background(), cm, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
}

func randomImage(t *testing.T, repo string, seed uint64) string {
	t.Helper()
	img, err := ociimage.Random(1<<20, seed, 1)
	if err != nil {
		t.Fatal(err)
	}
	return push(t, img, repo)
}

// TestDaemon runs the daemon on the local cluster and walks through its
// life: sources appear, change and break; the registry refuses; the daemon
// restarts; a tag moves; Argo's CRDs arrive after it started.
func TestDaemon(t *testing.T) {
	ctx := context.Background()
	dropArgoCRDs(t)
	ns := "icd-e2e-" + strings.ToLower(rand.String(4))
	static := randomImage(t, "e2e/static:"+rand.String(6), uint64(rand.Int()))
	o := install.DefaultOptions("e2e")
	o.Namespace = ns
	o.Image = daemonImage(t)
	// Resync stays off until the moved-tag case, so that no pod is
	// replaced for its age while the others look for replacements.
	o.ResyncPeriod = 0
	o.ExtraArgs = []string{"--image=" + static, "--v=2"}
	installDaemon(t, o)
	users := newNamespace(t)

	t.Run("static image", func(t *testing.T) {
		st := waitCached(t, ns, static)
		if !strings.HasPrefix(st.Digest, "sha256:") {
			t.Errorf("digest %q", st.Digest)
		}
	})

	var fromList string
	t.Run("ConfigMap add", func(t *testing.T) {
		fromList = randomImage(t, "e2e/listed:"+rand.String(6), uint64(rand.Int()))
		imageList(t, users, "team-images", fmt.Sprintf("- %s\n", fromList))
		waitCached(t, ns, fromList)
	})

	t.Run("malformed ConfigMap is reported and loses nothing", func(t *testing.T) {
		imageList(t, users, "broken", "{this is: [not a list")
		waitEvent(t, users, "broken", "InvalidImages")
		imageList(t, users, "half-broken", "[\"Alpine:3\", \""+static+"\"]")
		waitEvent(t, users, "half-broken", "InvalidImages")
		for _, img := range []string{static, fromList} {
			if st := imageStatus(t, ns, img, 10*time.Second, "cached", func(s wire.ImageStatus) bool { return s.State == wire.Cached }); st.State != wire.Cached {
				t.Errorf("%s is %s", img, st.State)
			}
		}
		assertDaemonNotRestarted(t, ns)
	})

	t.Run("registry refuses", func(t *testing.T) {
		missing := env.registry + "/e2e/missing:" + rand.String(6)
		imageList(t, users, "missing", "[\""+missing+"\"]")
		st := imageStatus(t, ns, missing, 2*time.Minute, "failed", func(s wire.ImageStatus) bool { return s.State == wire.Failed })
		if !strings.Contains(st.Message, "not found") {
			t.Errorf("failure message %q does not say why", st.Message)
		}
	})

	t.Run("ConfigMap remove", func(t *testing.T) {
		held := false
		for _, p := range prefetchPods(t, ns) {
			for _, c := range p.Spec.Containers {
				held = held || (c.Image == mustNormalize(t, fromList) && p.DeletionTimestamp == nil)
			}
		}
		if !held {
			t.Fatalf("precondition: no live prefetch pod holds %s", fromList)
		}
		if err := env.client.CoreV1().ConfigMaps(users).Delete(ctx, "team-images", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(context.Context) (bool, error) {
			for _, p := range prefetchPods(t, ns) {
				for _, c := range p.Spec.Containers {
					if c.Image == mustNormalize(t, fromList) && p.DeletionTimestamp == nil {
						return false, nil
					}
				}
			}
			return true, nil
		})
		if err != nil {
			t.Fatalf("a prefetch pod still holds %s after it left every source", fromList)
		}
	})

	t.Run("daemon deleted mid-work adopts its pods", func(t *testing.T) {
		var before []string // images cached on node 1 before its daemon restarted
		for _, st := range cachestate.Summarize(prefetchPods(t, ns)) {
			if st.State == wire.Cached && st.Node == "icd-node" {
				before = append(before, st.Image)
			}
		}
		// Node 1's daemon; the other nodes' go on.
		daemons, err := env.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: wire.LabelComponent + "=" + wire.ComponentDaemon,
			FieldSelector: "spec.nodeName=icd-node"})
		if err != nil || len(daemons.Items) != 1 {
			t.Fatalf("want one daemon pod on icd-node: %v %d", err, len(daemons.Items))
		}
		// A large image is being fetched while the daemon goes away.
		big, err := ociimage.Random(64<<20, uint64(rand.Int()), 2)
		if err != nil {
			t.Fatal(err)
		}
		bigRef := push(t, big, "e2e/big:"+rand.String(6))
		imageList(t, users, "big", "[\""+bigRef+"\"]")
		time.Sleep(500 * time.Millisecond)
		restart := metav1.Now()
		if err := env.client.CoreV1().Pods(ns).Delete(ctx, daemons.Items[0].Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitDaemonReplaced(t, ns, &daemons.Items[0])
		waitCachedOn(t, ns, bigRef, "icd-node")
		assertNoDuplicates(t, ns)
		// The new daemon adopts the pods; it may merge small ones into
		// bigger ones (no pull: the images are on the node), but it must
		// pull nothing again that was cached.
		events, err := env.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=Pulling"})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events.Items {
			if e.LastTimestamp.Before(&metav1.Time{Time: restart.Truncate(time.Second)}) || e.Source.Host != "icd-node" {
				continue
			}
			for _, img := range before {
				if strings.Contains(e.Message, `"`+img+`"`) {
					t.Errorf("%s was cached before the daemon restarted, and pulled again after: %s", img, e.Message)
				}
			}
		}
	})

	t.Run("moved tag is pulled again at resync", func(t *testing.T) {
		o.ResyncPeriod = 20 * time.Second
		reconfigure(t, o)
		tag := "e2e/moving:" + rand.String(6)
		first := randomImage(t, tag, 1)
		imageList(t, users, "moving", "[\""+first+"\"]")
		old := waitCached(t, ns, first)
		randomImage(t, tag, 2) // new content under the same tag
		st := imageStatus(t, ns, first, 3*time.Minute, "re-pulled", func(s wire.ImageStatus) bool {
			return s.State == wire.Cached && s.Digest != old.Digest
		})
		nodeHasImage(t, st.Node, first, st.Digest)
	})

	t.Run("Argo CRDs installed after the daemon started", func(t *testing.T) {
		installArgoCRDs(t)
		argo, err := argoclient.NewForConfig(env.config)
		if err != nil {
			t.Fatal(err)
		}
		imgs := map[string]string{}
		for _, pos := range []string{"container", "script", "set", "init", "sidecar", "defaults", "param", "call-site", "cluster", "cron"} {
			imgs[pos] = randomImage(t, "e2e/argo-"+pos+":"+rand.String(5), uint64(rand.Int()))
		}
		wft := &wfv1.WorkflowTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: "every-position"},
			Spec: wfv1.WorkflowSpec{
				Arguments:        wfv1.Arguments{Parameters: []wfv1.Parameter{{Name: "img", Value: wfv1.AnyStringPtr(imgs["param"])}}},
				TemplateDefaults: &wfv1.Template{Container: &corev1.Container{Image: imgs["defaults"]}},
				Templates: []wfv1.Template{
					{Name: "c", Container: &corev1.Container{Image: imgs["container"]},
						InitContainers: []wfv1.UserContainer{{Container: corev1.Container{Name: "i", Image: imgs["init"]}}},
						Sidecars:       []wfv1.UserContainer{{Container: corev1.Container{Name: "s", Image: imgs["sidecar"]}}}},
					{Name: "s", Script: &wfv1.ScriptTemplate{Container: corev1.Container{Image: imgs["script"]}, Source: "true"}},
					{Name: "set", ContainerSet: &wfv1.ContainerSetTemplate{Containers: []wfv1.ContainerNode{{Container: corev1.Container{Name: "a", Image: imgs["set"]}}}}},
					{Name: "p", Container: &corev1.Container{Image: "{{workflow.parameters.img}}"}},
					// An image passed by the calling step, over the callee's default.
					{Name: "main", Steps: []wfv1.ParallelSteps{{Steps: []wfv1.WorkflowStep{{Name: "deploy", Template: "run",
						Arguments: wfv1.Arguments{Parameters: []wfv1.Parameter{{Name: "image", Value: wfv1.AnyStringPtr(imgs["call-site"])}}}}}}}},
					{Name: "run", Inputs: wfv1.Inputs{Parameters: []wfv1.Parameter{{Name: "image"}}},
						Container: &corev1.Container{Image: "{{inputs.parameters.image}}"}},
					{Name: "unresolvable", Container: &corev1.Container{Image: "{{item}}"}},
				},
			},
		}
		if _, err := argo.ArgoprojV1alpha1().WorkflowTemplates(users).Create(ctx, wft, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cwft := &wfv1.ClusterWorkflowTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: users + "-cluster"},
			Spec:       wfv1.WorkflowSpec{Templates: []wfv1.Template{{Name: "c", Container: &corev1.Container{Image: imgs["cluster"]}}}},
		}
		if _, err := argo.ArgoprojV1alpha1().ClusterWorkflowTemplates().Create(ctx, cwft, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = argo.ArgoprojV1alpha1().ClusterWorkflowTemplates().Delete(context.Background(), cwft.Name, metav1.DeleteOptions{})
		})
		cron := &wfv1.CronWorkflow{
			ObjectMeta: metav1.ObjectMeta{Name: "nightly"},
			Spec: wfv1.CronWorkflowSpec{Schedules: []string{"0 0 * * *"}, WorkflowSpec: wfv1.WorkflowSpec{
				Templates: []wfv1.Template{{Name: "c", Container: &corev1.Container{Image: imgs["cron"]}}},
			}},
		}
		if _, err := argo.ArgoprojV1alpha1().CronWorkflows(users).Create(ctx, cron, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for pos, img := range imgs {
			t.Run(pos, func(t *testing.T) { waitCached(t, ns, img) })
		}
		waitEvent(t, users, "every-position", "InvalidImages")
		for _, p := range prefetchPods(t, ns) {
			for _, c := range p.Spec.Containers {
				if strings.Contains(c.Image, "{{") {
					t.Errorf("prefetch pod %s has a templated image %q", p.Name, c.Image)
				}
			}
		}
	})

	assertNoDuplicates(t, ns)
	assertDaemonNotRestarted(t, ns)
}

// assertNoDuplicates: no image is held by two live prefetch pods of one node.
func assertNoDuplicates(t *testing.T, ns string) {
	t.Helper()
	// A re-batch creates the new pod a moment before it deletes the old
	// one: what must hold is that duplicates do not last.
	var dups []string
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, 30*time.Second, true, func(context.Context) (bool, error) {
		dups = nil
		seen := map[[2]string]string{} // node, image: pod
		for _, p := range prefetchPods(t, ns) {
			if p.DeletionTimestamp != nil {
				continue
			}
			for _, c := range p.Spec.Containers {
				key := [2]string{p.Spec.NodeName, c.Image}
				if other, ok := seen[key]; ok {
					dups = append(dups, fmt.Sprintf("%s is held by two prefetch pods on %s: %s and %s", c.Image, p.Spec.NodeName, other, p.Name))
				}
				seen[key] = p.Name
			}
		}
		return len(dups) == 0, nil
	})
	if err != nil {
		t.Errorf("duplicates for 30 s:\n%s", strings.Join(dups, "\n"))
	}
}

func assertDaemonNotRestarted(t *testing.T, ns string) {
	t.Helper()
	pods, err := env.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: daemonsAndPlanner})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.RestartCount > 0 {
				t.Errorf("pod %s restarted %d times\n%s", p.Name, cs.RestartCount, daemonLogs(t, ns))
			}
		}
	}
}

// waitDaemonReplaced waits for a ready daemon pod other than old on old's node.
func waitDaemonReplaced(t *testing.T, ns string, old *corev1.Pod) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := env.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: wire.LabelComponent + "=" + wire.ComponentDaemon})
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			if p.UID == old.UID || p.DeletionTimestamp != nil || p.Spec.NodeName != old.Spec.NodeName {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no new ready daemon pod on %s: %v", old.Spec.NodeName, err)
	}
}

// waitEvent waits for an Event with reason on the object named name in ns.
func waitEvent(t *testing.T, ns, name, reason string) {
	t.Helper()
	waitEventWith(t, ns, name, reason, "")
}

// waitEventWith waits for an Event with reason on the object named name in
// ns whose message holds text, and returns it.
func waitEventWith(t *testing.T, ns, name, reason, text string) corev1.Event {
	t.Helper()
	var found corev1.Event
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		evs, err := env.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=" + name + ",reason=" + reason})
		if err != nil {
			return false, nil
		}
		for _, e := range evs.Items {
			if strings.Contains(e.Message, text) {
				found = e
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s Event on %s/%s with %q", reason, ns, name, text)
	}
	return found
}

// dropArgoCRDs removes the Argo CRDs now (the daemon must start without
// them) and again when the test ends.
func dropArgoCRDs(t *testing.T) {
	t.Helper()
	if err := testcluster.DeleteArgoCRDs(context.Background(), env.config); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := testcluster.DeleteArgoCRDs(context.Background(), env.config); err != nil {
			t.Error(err)
		}
	})
}

func installArgoCRDs(t *testing.T) {
	t.Helper()
	if err := testcluster.InstallArgoCRDs(context.Background(), env.config); err != nil {
		t.Fatalf("installing the Argo CRDs: %v", err)
	}
}
