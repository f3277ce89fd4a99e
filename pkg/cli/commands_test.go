package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/dcherman/image-cache-daemon/pkg/imagelist"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/install/installtest"
	"github.com/dcherman/image-cache-daemon/pkg/listformat"
	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/version"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

const ns = "image-cache-daemon"

func imageList(images ...string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: install.DefaultConfigMap, Namespace: ns, Labels: imagelist.Labels},
		Data:       map[string]string{"images": listformat.Render(images)},
	}
}

func editOptions(remove bool, objs ...runtime.Object) (*EditOptions, *fake.Clientset, *strings.Builder) {
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	out := &strings.Builder{}
	streams.Out = out
	client := newClient(objs...)
	o := newEditOptions(genericclioptions.NewConfigFlags(false), streams, remove)
	o.client = client
	return o, client, out
}

func listed(t *testing.T, client *fake.Clientset) string {
	t.Helper()
	cm, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), install.DefaultConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(cm.Data["images"])
}

func runOptions(t *testing.T, o options, args ...string) error {
	t.Helper()
	if err := o.Complete(args); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return err
	}
	return o.Run(context.Background())
}

func TestAddCreatesTheListAndSaysWhatItDid(t *testing.T) {
	o, client, out := editOptions(false)
	if err := runOptions(t, o, "alpine", "docker.io/library/alpine:latest", "ghcr.io/org/app:v2"); err != nil {
		t.Fatal(err)
	}
	if got, want := listed(t, client), `- "docker.io/library/alpine:latest"
- "ghcr.io/org/app:v2"`; got != want {
		t.Errorf("image list:\n%s\nwant:\n%s", got, want)
	}
	if want := "alpine added to configmap/image-cache-daemon-images -n image-cache-daemon\nghcr.io/org/app:v2 added to"; !strings.HasPrefix(out.String(), want) {
		t.Errorf("output:\n%s\nwant it to start with:\n%s", out, want)
	}

	// Again: a no-op that says so, and no write.
	o, client, out = editOptions(false, imageList("docker.io/library/alpine:latest"))
	if err := runOptions(t, o, "alpine"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "alpine is already in configmap/image-cache-daemon-images") {
		t.Errorf("output %q does not say that alpine was there", out)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() != "get" {
			t.Errorf("adding what is there made a %s", a.GetVerb())
		}
	}
}

func TestRemove(t *testing.T) {
	o, client, out := editOptions(true, imageList("docker.io/library/alpine:latest", "docker.io/library/nginx:1.27"))
	if err := runOptions(t, o, "alpine", "redis"); err != nil {
		t.Fatal(err)
	}
	if got := listed(t, client); got != `- "docker.io/library/nginx:1.27"` {
		t.Errorf("image list %q, want only nginx:1.27", got)
	}
	for _, want := range []string{"alpine removed from", "redis was not in configmap/image-cache-daemon-images -n image-cache-daemon (nothing to remove)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
}

func TestEditValidate(t *testing.T) {
	o, _, _ := editOptions(false)
	if err := runOptions(t, o); err == nil || !strings.Contains(err.Error(), "name at least one image") {
		t.Errorf("no image: err = %v", err)
	}
	o, _, _ = editOptions(false)
	o.ConfigMap = ""
	if err := runOptions(t, o, "alpine"); err == nil || !strings.Contains(err.Error(), "--configmap") {
		t.Errorf("empty --configmap: err = %v", err)
	}
	o, _, _ = editOptions(false)
	o.Wait.Enabled, o.Wait.Timeout = true, 0
	if err := runOptions(t, o, "alpine"); err == nil || !strings.Contains(err.Error(), "--timeout") {
		t.Errorf("--wait --timeout 0: err = %v", err)
	}
}

// add --wait follows the pull: done when every node has the image, an error
// naming the node and the kubelet's reason when one failed.
func TestAddWait(t *testing.T) {
	o, _, out := editOptions(false, cluster()...)
	o.Wait.Enabled, o.Wait.Interval = true, 10*time.Millisecond
	if err := runOptions(t, o, "alpine"); err != nil {
		t.Fatalf("alpine is cached on both nodes: %v", err)
	}
	if !strings.Contains(out.String(), "cached: alpine 2/2\nevery node (2) has alpine") {
		t.Errorf("output:\n%s", out)
	}

	o, _, _ = editOptions(false, cluster()...)
	o.Wait.Enabled, o.Wait.Interval = true, 10*time.Millisecond
	err := runOptions(t, o, "registry.example/missing:v1")
	if err == nil || ExitCode(err) != ExitError || !strings.Contains(err.Error(), `registry.example/missing:v1 on node node-a: ImagePullBackOff: Back-off pulling image "registry.example/missing:v1": not found`) {
		t.Errorf("a failed pull: err = %v", err)
	}

	o, _, _ = editOptions(false, cluster()...)
	o.Wait.Enabled, o.Wait.Interval, o.Wait.Timeout = true, 10*time.Millisecond, 50*time.Millisecond
	if err := runOptions(t, o, "nginx:1.27"); err == nil || !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "nginx:1.27 1/2") {
		t.Errorf("nginx:1.27 is still pulling on one node: err = %v", err)
	}
}

func TestInstallValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*InstallOptions)
		says string
	}{
		{"server dry run", func(o *InstallOptions) { o.DryRun = "server" }, "--dry-run=server is not supported"},
		{"unknown dry run", func(o *InstallOptions) { o.DryRun = "maybe" }, `--dry-run "maybe"`},
		{"-o without dry run", func(o *InstallOptions) { o.Output = "yaml" }, "use it with --dry-run=client"},
		{"bad output", func(o *InstallOptions) { o.DryRun, o.Output = "client", "table" }, `--output "table"`},
		{"bad image", func(o *InstallOptions) { o.Image = "Not/Valid" }, "--image"},
		{"bad static image", func(o *InstallOptions) { o.StaticImages = []string{"bad image"} }, "--cache-image"},
		{"bad pull policy", func(o *InstallOptions) { o.ImagePullPolicy = "Sometimes" }, "--image-pull-policy"},
		{"resync too short", func(o *InstallOptions) { o.ResyncPeriod = time.Second }, "--resync-period"},
		{"bad namespace", func(o *InstallOptions) { o.Namespace = "Team_A" }, `-n "Team_A" is not a valid namespace name`},
		{"bad source namespace", func(o *InstallOptions) { o.SourceNamespaces = []string{"team-a", "team_b"} }, `--source-namespace "team_b" is not a valid namespace name`},
		{"too long a source namespace", func(o *InstallOptions) { o.SourceNamespaces = []string{strings.Repeat("n", 64)} }, "--source-namespace"},
		{"source namespaces with nothing namespaced to read", func(o *InstallOptions) {
			o.SourceNamespaces = []string{"team-a"}
			o.WatchConfigMaps, o.WatchArgoWorkflowTemplates, o.WatchArgoCronWorkflows = false, false, false
		}, "drop --source-namespace or set one of --watch-configmaps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &InstallOptions{Options: install.DefaultOptions("v1.0.0"), DryRun: "none"}
			tc.set(o)
			if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("err = %v, want it to say %q", err, tc.says)
			}
		})
	}
	o := &InstallOptions{Options: install.DefaultOptions("v1.0.0"), DryRun: "none"}
	if err := o.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestInstallCompleteReadsTolerationsAndNodeSelector(t *testing.T) {
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	o := &InstallOptions{IOStreams: streams, kube: kube{flags: genericclioptions.NewConfigFlags(false), client: fake.NewClientset()},
		Options: install.DefaultOptions("v1.0.0"), DryRun: "client",
		Tolerations: []string{"dedicated=ci:NoSchedule", "gpu"}, NodeSelector: []string{"pool=ci"}}
	if err := o.Complete(nil); err != nil {
		t.Fatal(err)
	}
	want := []corev1.Toleration{
		{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "ci", Effect: corev1.TaintEffectNoSchedule},
		{Key: "gpu", Operator: corev1.TolerationOpExists},
	}
	if len(o.Options.Tolerations) != 2 || o.Options.Tolerations[0] != want[0] || o.Options.Tolerations[1] != want[1] {
		t.Errorf("tolerations %+v, want %+v", o.Options.Tolerations, want)
	}
	if o.Options.NodeSelector["pool"] != "ci" {
		t.Errorf("node selector %v", o.Options.NodeSelector)
	}
	for flag, bad := range map[string]InstallOptions{
		"--toleration":    {Tolerations: []string{"key:Sometimes"}},
		"--node-selector": {NodeSelector: []string{"pool"}},
	} {
		bad.kube, bad.DryRun = o.kube, "client"
		if err := bad.Complete(nil); err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%s: err = %v", flag, err)
		}
	}
}

// installOptions is an install command on a fake cluster.
func installOptions(t *testing.T, a *install.Applier, namespace string, sourceNamespaces ...string) (*InstallOptions, *strings.Builder) {
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	out := &strings.Builder{}
	streams.Out = out
	o := &InstallOptions{IOStreams: streams, kube: kube{client: fake.NewClientset(), namespace: namespace},
		Options: install.DefaultOptions("v1.0.0"), DryRun: "none", applier: a}
	o.Namespace, o.SourceNamespaces = namespace, sourceNamespaces
	return o, out
}

func TestInstallRun(t *testing.T) {
	teamA := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}
	def := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "default"}}

	t.Run("into a namespace that existed before", func(t *testing.T) {
		a, _ := installtest.NewApplier(t, def)
		o, out := installOptions(t, a, "default")
		if err := o.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		want := "namespace default existed before image-cache-daemon: it is used as it is (its Pod Security labels are not changed, " +
			"and the restricted profile is not enforced on the prefetch pods there); uninstall will keep it and remove only image-cache-daemon's objects in it.\n" +
			"namespace/default kept\n"
		if !strings.HasPrefix(out.String(), want) {
			t.Errorf("output:\n%s\nwant it to start with:\n%s", out, want)
		}
	})

	t.Run("source namespaces", func(t *testing.T) {
		a, _ := installtest.NewApplier(t, teamA)
		o, out := installOptions(t, a, "icd", "team-a")
		if err := o.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"\nclusterrole/image-cache-daemon:icd created\n",
			"\nrole/image-cache-daemon:icd created\n", // in the install namespace
			"\nrole/image-cache-daemon:icd -n team-a created\n",
			"\nrolebinding/image-cache-daemon:icd -n team-a created\n",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output:\n%s\nwant it to contain %q", out, want)
			}
		}
	})

	t.Run("a source namespace that does not exist", func(t *testing.T) {
		a, c := installtest.NewApplier(t, teamA)
		o, out := installOptions(t, a, "icd", "team-a", "team-x")
		err := o.Run(context.Background())
		if err == nil || err.Error() != "source namespace team-x does not exist: create it first (kubectl create namespace team-x) or leave it out of --source-namespace; nothing was applied" {
			t.Errorf("err = %v", err)
		}
		if out.Len() != 0 || len(c.Acts) != 0 {
			t.Errorf("a refused install acted: output %q, acts %v", out, c.Acts)
		}
	})
}

// --dry-run=client shows the Roles of the source namespaces and the
// daemon's flags for them.
func TestInstallDryRunWithSourceNamespaces(t *testing.T) {
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	cmd := NewCmdImageCache(streams)
	cmd.SetArgs([]string{"install", "--dry-run=client", "-o", "yaml", "-n", "icd", "--source-namespace", "team-a", "--source-namespace", "team-b"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"kind: ClusterRole\nmetadata:\n  labels:\n    app.kubernetes.io/component: rbac\n    app.kubernetes.io/instance: icd\n    app.kubernetes.io/name: image-cache-daemon\n    app.kubernetes.io/part-of: image-cache-daemon\n  name: image-cache-daemon:icd\n",
		"kind: Role\nmetadata:\n  labels:\n    app.kubernetes.io/component: rbac\n    app.kubernetes.io/instance: icd\n    app.kubernetes.io/name: image-cache-daemon\n    app.kubernetes.io/part-of: image-cache-daemon\n  name: image-cache-daemon:icd\n  namespace: team-b\n",
		"kind: RoleBinding\nmetadata:\n  labels:\n    app.kubernetes.io/component: rbac\n    app.kubernetes.io/instance: icd\n    app.kubernetes.io/name: image-cache-daemon\n    app.kubernetes.io/part-of: image-cache-daemon\n  name: image-cache-daemon:icd\n  namespace: team-a\n",
		"- --source-namespace=icd\n        - --source-namespace=team-a\n        - --source-namespace=team-b\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run lacks:\n%s", want)
		}
	}
	if t.Failed() {
		t.Logf("dry run:\n%s", out)
	}
}

// Uninstall removes one installation and leaves another alone; in a
// namespace that existed before, it waits for the workload, not for the
// namespace (which stays).
func TestUninstallRun(t *testing.T) {
	def := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	a, c := installtest.NewApplier(t, def)
	for _, ns := range []string{"default", "other"} {
		o, _ := installOptions(t, a, ns)
		if err := o.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	o := &UninstallOptions{IOStreams: streams, kube: kube{client: fake.NewClientset(def.DeepCopy()), namespace: "default"},
		applier: a, Yes: true, Wait: true, Timeout: 2 * time.Second}
	if err := o.Run(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"\nclusterrolebinding/image-cache-daemon:default deleted\n", "\nnamespace/default kept (not created by image-cache-daemon)\nimage-cache-daemon uninstalled\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output:\n%s\nwant it to contain %q", out, want)
		}
	}
	if c.Get("ClusterRoleBinding", "", install.RBACName("default")) != nil {
		t.Error("the uninstalled installation's ClusterRoleBinding is still there")
	}
	if c.Get("ClusterRoleBinding", "", install.RBACName("other")) == nil || c.Get("DaemonSet", "other", install.Name) == nil {
		t.Error("uninstalling default removed the installation in other")
	}
}

// Uninstall asks first; a "no" removes nothing.
func TestUninstallAsks(t *testing.T) {
	streams, in, out, _ := genericiooptions.NewTestIOStreams()
	in.WriteString("n\n")
	dyn := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())
	o := &UninstallOptions{IOStreams: streams, kube: kube{client: fake.NewClientset(), namespace: ns},
		applier: &install.Applier{Dynamic: dyn}, Timeout: time.Second}
	err := o.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not confirmed: nothing was removed") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(out.String(), "Remove image-cache-daemon and its cache record from namespace image-cache-daemon? [y/N]") {
		t.Errorf("the question was not asked: %q", out)
	}
	if len(dyn.Actions()) != 0 {
		t.Errorf("a declined uninstall acted: %v", dyn.Actions())
	}
	if err := (&UninstallOptions{Wait: true}).Validate(); err == nil || !strings.Contains(err.Error(), "--timeout") {
		t.Errorf("--wait without a timeout: err = %v", err)
	}
}

func TestVersionWarnsWhenTheDaemonDiffers(t *testing.T) {
	saved := version.Version
	t.Cleanup(func() { version.Version = saved })
	version.Version = "v1.1.0"
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	o := &VersionOptions{IOStreams: streams, kube: kube{client: newClient(cluster()...), namespace: ns}}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := "plugin: v1.1.0\ndaemon: ghcr.io/dcherman/image-cache-daemon:v1.0.0 (namespace image-cache-daemon)\n"; out.String() != want {
		t.Errorf("output %q, want %q", out, want)
	}
	if !strings.Contains(errOut.String(), "warning: the plugin (v1.1.0) and the daemon (v1.0.0) differ") {
		t.Errorf("no warning: %q", errOut)
	}
}

// list reads the sources with the installed daemon's own arguments.
func TestListReadsTheDaemonsSources(t *testing.T) {
	opts := install.DefaultOptions("v1.0.0")
	opts.StaticImages = []string{"busybox:1.36"}
	opts.WatchArgoWorkflowTemplates, opts.WatchArgoClusterWorkflowTemplates, opts.WatchArgoCronWorkflows = false, false, false
	var ds *appsv1.DaemonSet
	for _, obj := range installtest.Objects(t, opts) {
		if d, ok := obj.(*appsv1.DaemonSet); ok {
			ds = d
		}
	}
	teamList := imageList("docker.io/library/alpine:latest")
	teamList.Namespace = "team"
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	o := &ListOptions{IOStreams: streams, kube: kube{client: fake.NewClientset(ds, imageList("docker.io/library/alpine:latest", "docker.io/library/nginx:1.27"), teamList), namespace: ns},
		dynamic: dynamicfake.NewSimpleDynamicClient(runtime.NewScheme()), Timeout: 10 * time.Second, FromSources: true}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := `IMAGE          WANTED BY
alpine         ConfigMap image-cache-daemon/image-cache-daemon-images, ConfigMap team/image-cache-daemon-images
busybox:1.36   flag --image
nginx:1.27     ConfigMap image-cache-daemon/image-cache-daemon-images
3 images
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}

	// With the daemon's --max-images, each object keeps that many images in
	// its own order, and list says how many entries it did not read.
	capped := ds.DeepCopy()
	ctr := &capped.Spec.Template.Spec.Containers[0]
	ctr.Args = append(ctr.Args, "--max-images=1")
	out.Reset()
	o.client = fake.NewClientset(capped, imageList("docker.io/library/nginx:1.27", "docker.io/library/alpine:latest"), teamList)
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want = `IMAGE          WANTED BY
alpine         ConfigMap team/image-cache-daemon-images
busybox:1.36   flag --image
nginx:1.27     ConfigMap image-cache-daemon/image-cache-daemon-images
3 images
not read: 1 entry past --max-images in their objects and namespaces (each keeps at most that many images)
`
	if out.String() != want {
		t.Errorf("output with --max-images=1:\n%s\nwant:\n%s", out, want)
	}

	o.client = fake.NewClientset()
	if err := o.Run(context.Background()); ExitCode(err) != ExitNotInstalled {
		t.Errorf("not installed: err = %v (exit %d), want exit %d", err, ExitCode(err), ExitNotInstalled)
	}
}

// By default list prints the set the planner published: what the nodes
// work from, with the skipped objects and the images left out, read with
// one GET; per image the digest its tag points to now, or why the planner
// could not check it.
func TestListReadsThePublishedSet(t *testing.T) {
	wants := []source.Want{
		{Image: "docker.io/library/busybox:1.36", Origin: "flag --image", Static: true},
		{Image: pinnedRef, Origin: "flag --image", Static: true},
		{Image: "docker.io/library/redis:7", Origin: "flag --image", Static: true},
		{Image: "docker.io/library/alpine:latest", Origin: "ConfigMap team/a", Namespace: "team"},
		{Image: "docker.io/library/nginx:1.27", Origin: "ConfigMap team/a", Namespace: "team"},
	}
	health := []wire.Health{{Source: "configmaps", Synced: true, Objects: 3, Skipped: 1, SkippedSample: []string{"ConfigMap team/broken"}},
		{Source: "cronworkflows", Synced: true, Missing: true}}
	set := wanted.Build(wants, 4, health)
	alpineDigest := "sha256:" + strings.Repeat("ab", 32)
	for i, im := range set.Images {
		switch im.Image {
		case "docker.io/library/alpine:latest": // checked
			set.Images[i].Digest, set.Images[i].Since = alpineDigest, now.Unix()
		case "docker.io/library/busybox:1.36": // its registry refused the planner
			set.Images[i].Unchecked = "the registry refused the planner (HTTP 401)"
		case pinnedRef: // pinned: its own digest
			set.Images[i].Digest = pinnedDigest()
		} // redis: neither (an older planner)
	}
	data, err := wanted.Encode(set)
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: wanted.ConfigMap, Namespace: ns,
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: wanted.Planner, Time: &metav1.Time{Time: time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)}}}},
		BinaryData: map[string][]byte{wanted.Key: data.Head}}
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	client := fake.NewClientset(cm)
	o := &ListOptions{IOStreams: streams, kube: kube{client: client, namespace: ns}}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := `IMAGE                                                                             WANTED BY          DIGEST
alpine                                                                            ConfigMap team/a   sha256:abababababab
busybox:1.36                                                                      flag --image       -
busybox@sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc   flag --image       sha256:cccccccccccc
redis:7                                                                           flag --image       -
4 images
not checked (pulled again every resync): busybox:1.36: the registry refused the planner (HTTP 401)
not checked (pulled again every resync): redis:7: the planner published no digest (a planner older than the plugin?)
skipped: ConfigMap team/broken: skipped (its Events say why; list --from-sources too)
source cronworkflows: its resource is not served by the API server (is its CRD installed?); the planner waits for it
over --max-images: 1 image not cached, such as nginx:1.27 (wanted by ConfigMap team/a)
published by the planner 2026-12-05T08:00:00Z
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	if n := len(client.Actions()); n != 1 {
		t.Errorf("%d requests; want one GET", n)
	}
	if err := (&ListOptions{IOStreams: streams, kube: kube{client: fake.NewClientset(), namespace: ns}}).Run(context.Background()); err == nil ||
		!strings.Contains(err.Error(), "has published no wanted set") {
		t.Errorf("no set: %v", err)
	}

	// -o json: each image's digest, or why it has none.
	out.Reset()
	o = &ListOptions{IOStreams: streams, kube: kube{client: client, namespace: ns}, Output: "json"}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Images []struct{ Image, Digest, Unchecked string }
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	got := map[string][2]string{}
	for _, im := range doc.Images {
		got[im.Image] = [2]string{im.Digest, im.Unchecked}
	}
	for img, want := range map[string][2]string{
		"docker.io/library/alpine:latest": {alpineDigest, ""},
		"docker.io/library/busybox:1.36":  {"", "the registry refused the planner (HTTP 401)"},
		pinnedRef:                         {pinnedDigest(), ""},
		"docker.io/library/redis:7":       {"", noDigest},
	} {
		if got[img] != want {
			t.Errorf("-o json: %s: digest, unchecked %q, want %q", img, got[img], want)
		}
	}
}
