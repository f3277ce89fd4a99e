package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/utils/ptr"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	daemonoptions "github.com/dcherman/image-cache-daemon/pkg/options"
	"github.com/dcherman/image-cache-daemon/pkg/version"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
)

// InstallOptions holds what the install command needs.
type InstallOptions struct {
	genericiooptions.IOStreams
	kube

	install.Options
	Tolerations  []string
	NodeSelector []string
	DryRun       string
	Output       string
	Wait         bool
	Timeout      time.Duration

	applier  *install.Applier
	printing *printFlags
}

// NewCmdInstall returns the "install" command.
func NewCmdInstall(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	return newCmdInstall(&InstallOptions{IOStreams: streams, kube: kube{flags: flags}, Options: install.DefaultOptions(version.String()), Timeout: 5 * time.Minute})
}

func newCmdInstall(o *InstallOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install image-cache-daemon in the cluster",
		Long: `Install image-cache-daemon: a namespace, service accounts with least-privilege
RBAC, the planner, the DaemonSet and an empty image list, applied with
server-side apply. The objects are the project's Helm chart rendered with the
values these flags mean, so helm install of the chart makes the same ones.
Running it again updates the installation and keeps the image list. Its
cluster-wide objects are named for its namespace (image-cache-daemon:NAMESPACE),
so installations in different namespaces never share them. An installation
that a Helm release manages is left to helm upgrade.`,
		Example: `  kubectl imagecache install --wait

  # Print the manifests instead, for GitOps
  kubectl imagecache install --dry-run=client -o yaml > image-cache-daemon.yaml

  # Private images, and only nodes labelled for CI
  kubectl imagecache install --image-pull-secret regcred --node-selector pool=ci

  # Read image lists and Argo templates only in two teams' namespaces
  kubectl imagecache install --source-namespace team-a --source-namespace team-b`,
		Args: cobra.NoArgs,
		RunE: runE(o),
	}
	f := cmd.Flags()
	f.StringVar(&o.Image, "image", o.Image, "The daemon image (it also holds the warden)")
	f.StringVar((*string)(&o.ImagePullPolicy), "image-pull-policy", string(o.ImagePullPolicy), "Pull policy of the daemon image")
	f.StringArrayVar(&o.Tolerations, "toleration", nil, "A taint the daemon and its prefetch pods tolerate, as KEY[=VALUE][:EFFECT] (repeatable; default: every taint)")
	f.StringArrayVar(&o.NodeSelector, "node-selector", nil, "Run only on nodes with this label, KEY=VALUE (repeatable)")
	f.StringVar(&o.PriorityClassName, "priority-class", "", "PriorityClass of the daemon and its prefetch pods")
	f.StringArrayVar(&o.StaticImages, "cache-image", nil, "An image the daemon always caches, as its --image flag (repeatable); most users prefer kubectl imagecache add")
	f.StringArrayVar(&o.ImagePullSecrets, "image-pull-secret", nil, "A Secret in the install namespace for pulling private images (repeatable)")
	f.DurationVar(&o.ResyncPeriod, "resync-period", o.ResyncPeriod, "How often every image is pulled again (a moved tag is fetched anew); 0 disables")
	f.StringArrayVar(&o.SourceNamespaces, "source-namespace", nil, "Read ConfigMaps, WorkflowTemplates and CronWorkflows only in this namespace, which must exist, and the install namespace; RBAC is granted there alone (repeatable; default: every namespace)")
	f.StringVar(&o.StartupTaint, "startup-taint", "", "Key of a taint new nodes are registered with (e.g. imagecache.dcherman.github.io/warming); the daemon removes it once the node has every wanted image, an image failed, or --warm-timeout passed")
	f.DurationVar(&o.WarmTimeout, "warm-timeout", o.WarmTimeout, "With --startup-taint: the longest a node keeps the taint after its creation while images pull (0: until cached or failed)")
	f.Float64Var(&o.RegistryPullQPS, "registry-pull-qps", o.RegistryPullQPS, "The kubelet's registryPullQPS on your nodes (the kubelet's default is 5); the daemon paces its pulls under it. 0 if your kubelets do not limit pulls")
	f.IntVar(&o.RegistryBurst, "registry-burst", o.RegistryBurst, "The kubelet's registryBurst on your nodes (the kubelet's default is 10)")
	f.BoolVar(&o.WatchConfigMaps, "watch-configmaps", o.WatchConfigMaps, "Read image lists from labelled ConfigMaps")
	f.BoolVar(&o.WatchArgoWorkflowTemplates, "watch-argo-workflow-templates", o.WatchArgoWorkflowTemplates, "Cache the images of Argo WorkflowTemplates")
	f.BoolVar(&o.WatchArgoClusterWorkflowTemplates, "watch-argo-cluster-workflow-templates", o.WatchArgoClusterWorkflowTemplates, "Cache the images of Argo ClusterWorkflowTemplates")
	f.BoolVar(&o.WatchArgoCronWorkflows, "watch-argo-cron-workflows", o.WatchArgoCronWorkflows, "Cache the images of Argo CronWorkflows")
	f.StringVar(&o.DryRun, "dry-run", "none", `"client" prints what would be applied (with -o yaml or json) and changes nothing`)
	f.BoolVar(&o.Wait, "wait", false, "Wait until the DaemonSet is ready on every node")
	f.DurationVar(&o.Timeout, "timeout", o.Timeout, "How long --wait waits")
	o.printFlags().addFlags(cmd)
	cmd.Flags().Lookup("output").Usage = "With --dry-run=client (default yaml): " + strings.Join(o.printFlags().formats(), ", ")
	_ = cmd.RegisterFlagCompletionFunc("dry-run", cobra.FixedCompletions([]string{"none", "client"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// Complete reads the flags into the installation options.
func (o *InstallOptions) Complete([]string) error {
	if err := o.kube.complete(); err != nil && o.DryRun != "client" {
		return err
	}
	o.Namespace = o.namespace
	if o.Namespace == "" {
		o.Namespace = install.DefaultNamespace
	}
	for _, t := range o.Tolerations {
		tol, err := parseToleration(t)
		if err != nil {
			return err
		}
		o.Options.Tolerations = append(o.Options.Tolerations, tol)
	}
	for _, kv := range o.NodeSelector {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--node-selector %q: want KEY=VALUE", kv)
		}
		if o.Options.NodeSelector == nil {
			o.Options.NodeSelector = map[string]string{}
		}
		o.Options.NodeSelector[k] = v
	}
	if o.DryRun == "client" {
		return nil
	}
	var err error
	o.applier, err = o.kube.applier()
	return err
}

// Validate checks the flags.
func (o *InstallOptions) Validate() error {
	switch o.DryRun {
	case "none", "client":
	case "server":
		return errors.New("--dry-run=server is not supported: use --dry-run=client")
	default:
		return fmt.Errorf("--dry-run %q: want none or client", o.DryRun)
	}
	if o.StartupTaint != "" {
		if msgs := validation.IsQualifiedName(o.StartupTaint); len(msgs) > 0 {
			return fmt.Errorf("--startup-taint %q is not a taint key: %s", o.StartupTaint, strings.Join(msgs, "; "))
		}
	}
	if err := daemonoptions.ValidatePullLimit(o.RegistryPullQPS, o.RegistryBurst); err != nil {
		return err
	}
	if o.WarmTimeout < 0 {
		return fmt.Errorf("--warm-timeout must not be negative, got %s", o.WarmTimeout)
	}
	if o.Output != "" && o.DryRun != "client" {
		return errors.New("-o prints manifests: use it with --dry-run=client")
	}
	if _, err := o.printFlags().printer(); err != nil {
		return err
	}
	if _, err := imageref.Normalize(o.Image); err != nil {
		return fmt.Errorf("--image: %w", err)
	}
	for _, img := range o.StaticImages {
		if _, err := imageref.Normalize(img); err != nil {
			return fmt.Errorf("--cache-image: %w", err)
		}
	}
	switch o.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return fmt.Errorf("--image-pull-policy %q: want Always, IfNotPresent or Never", o.ImagePullPolicy)
	}
	if o.ResyncPeriod != 0 && o.ResyncPeriod < 10*time.Second {
		return fmt.Errorf("--resync-period %s: use 0 (off) or at least 10s", o.ResyncPeriod)
	}
	// The namespace names the ClusterRole and the Roles; refused here, it
	// cannot reach a manifest printed by --dry-run=client.
	if msgs := validation.IsDNS1123Label(o.Namespace); len(msgs) > 0 {
		return fmt.Errorf("-n %q is not a valid namespace name: %s", o.Namespace, strings.Join(msgs, "; "))
	}
	for _, ns := range o.SourceNamespaces {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			return fmt.Errorf("--source-namespace %q is not a valid namespace name: %s", ns, strings.Join(msgs, "; "))
		}
	}
	if len(o.SourceNamespaces) > 0 && !o.ReadsNamespacedSources() {
		return errors.New("--source-namespace limits where ConfigMaps, WorkflowTemplates and CronWorkflows are read, but none of them is: " +
			"drop --source-namespace or set one of --watch-configmaps, --watch-argo-workflow-templates, --watch-argo-cron-workflows")
	}
	return nil
}

// Run prints or applies the installation.
func (o *InstallOptions) Run(ctx context.Context) error {
	if o.DryRun == "client" {
		p, err := o.printFlags().printer()
		if err != nil {
			return err
		}
		objs, err := install.Objects(o.Options)
		if err != nil {
			return err
		}
		return printObjects(o.Out, objs, p, o.printFlags().format())
	}
	results, err := o.applier.Install(ctx, o.Options, o.Out)
	printResults(o.Out, results, o.Namespace)
	if err != nil && len(results) == 0 {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w\nthe objects listed above were applied; run the command again to finish", err)
	}
	if !o.Wait {
		return nil
	}
	fmt.Fprintf(o.Out, "waiting for daemonset/%s in namespace %s to be ready...\n", install.Name, o.Namespace)
	err = wait.PollUntilContextTimeout(ctx, time.Second, o.Timeout, true, func(ctx context.Context) (bool, error) {
		ds, err := o.client.AppsV1().DaemonSets(o.Namespace).Get(ctx, install.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		st := ds.Status
		return st.ObservedGeneration >= ds.Generation && st.DesiredNumberScheduled > 0 &&
			st.UpdatedNumberScheduled == st.DesiredNumberScheduled && st.NumberReady == st.DesiredNumberScheduled, nil
	})
	if err != nil {
		return fmt.Errorf("daemonset/%s is not ready after %s: see kubectl -n %s describe daemonset %s (its pods wait for the set deployment/%s publishes)",
			install.Name, o.Timeout, o.Namespace, install.Name, wanted.Planner)
	}
	fmt.Fprintf(o.Out, "daemonset/%s ready\n", install.Name)
	// The node daemons are ready once the planner has published; both of
	// its replicas (the standby too) are waited for, so that a rollout of
	// the planner is over.
	err = wait.PollUntilContextTimeout(ctx, time.Second, o.Timeout, true, func(ctx context.Context) (bool, error) {
		d, err := o.client.AppsV1().Deployments(o.Namespace).Get(ctx, wanted.Planner, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		st, want := d.Status, ptr.Deref(d.Spec.Replicas, 1)
		return st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == want && st.AvailableReplicas == want, nil
	})
	if err != nil {
		return fmt.Errorf("deployment/%s is not available after %s: see kubectl -n %s describe deployment %s", wanted.Planner, o.Timeout, o.Namespace, wanted.Planner)
	}
	fmt.Fprintf(o.Out, "deployment/%s ready\n", wanted.Planner)
	return nil
}

// printResults writes what install or uninstall did, one object a line;
// objects outside the install namespace (the Roles in source namespaces)
// say where they are.
func printResults(w io.Writer, results []install.Result, namespace string) {
	for _, r := range results {
		where := ""
		if r.Namespace != "" && r.Namespace != namespace {
			where = " -n " + r.Namespace
		}
		fmt.Fprintf(w, "%s/%s%s %s\n", strings.ToLower(r.Kind), r.Name, where, r.Action)
	}
}

// printFlags are -o's, all kubectl's printers; none means yaml.
func (o *InstallOptions) printFlags() *printFlags {
	if o.printing == nil {
		o.printing = newPrintFlags(&o.Output, true)
		o.printing.defaultFormat = "yaml"
	}
	return o.printing
}

// printObjects prints objects with p, which prints format: as a stream of
// documents (yaml, kyaml) or lines (name), one per object, as kubectl
// applies them; otherwise as one v1 List, so that json is one document and
// a template reads .items.
func printObjects(w io.Writer, objs []runtime.Object, p printers.ResourcePrinter, format string) error {
	list := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "v1", "kind": "List"}}
	for _, obj := range objs {
		u, err := install.Unstructured(obj)
		if err != nil {
			return err
		}
		list.Items = append(list.Items, *u)
	}
	switch format {
	case "yaml", "kyaml", "name":
		for i := range list.Items {
			if err := p.PrintObj(&list.Items[i], w); err != nil {
				return err
			}
		}
		return nil
	}
	return p.PrintObj(list, w)
}

// parseToleration reads KEY[=VALUE][:EFFECT], as kubectl taint writes taints.
func parseToleration(s string) (corev1.Toleration, error) {
	spec, effect, _ := strings.Cut(s, ":")
	key, value, hasValue := strings.Cut(spec, "=")
	t := corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists}
	if hasValue {
		t.Operator, t.Value = corev1.TolerationOpEqual, value
	}
	switch corev1.TaintEffect(effect) {
	case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		t.Effect = corev1.TaintEffect(effect)
	default:
		return t, fmt.Errorf("--toleration %q: effect %q is not NoSchedule, PreferNoSchedule or NoExecute", s, effect)
	}
	if key == "" {
		return t, fmt.Errorf("--toleration %q: want KEY[=VALUE][:EFFECT]", s)
	}
	return t, nil
}
