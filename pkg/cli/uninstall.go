package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// UninstallOptions holds what the uninstall command needs.
type UninstallOptions struct {
	genericiooptions.IOStreams
	kube

	Yes     bool
	Wait    bool
	Timeout time.Duration

	applier *install.Applier
}

// NewCmdUninstall returns the "uninstall" command.
func NewCmdUninstall(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &UninstallOptions{IOStreams: streams, kube: kube{flags: flags}, Wait: true, Timeout: 5 * time.Minute}
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove image-cache-daemon from the cluster",
		Long: `Remove everything install made: the DaemonSet and its prefetch pods, the RBAC
(with the Roles in --source-namespace namespaces), the service account, the
image list in the install namespace and the namespace itself, unless it existed
before install. Image lists you created in other namespaces are yours and are
kept. Another installation, in another namespace, is left as it is.
Asks first, unless --yes is given.`,
		Example: `  kubectl imagecache uninstall --yes`,
		Args:    cobra.NoArgs,
		RunE:    runE(o),
	}
	cmd.Flags().BoolVarP(&o.Yes, "yes", "y", false, "Do not ask for confirmation")
	cmd.Flags().BoolVar(&o.Wait, "wait", o.Wait, "Wait until everything is gone")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "How long --wait waits")
	return cmd
}

// Complete builds the clients.
func (o *UninstallOptions) Complete([]string) error {
	if err := o.kube.complete(); err != nil {
		return err
	}
	var err error
	o.applier, err = o.kube.applier()
	return err
}

// Validate checks the flags.
func (o *UninstallOptions) Validate() error {
	if o.Wait && o.Timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", o.Timeout)
	}
	return nil
}

// namespaceKept says whether uninstall kept the namespace (it existed
// before the installation).
func namespaceKept(results []install.Result) bool {
	for _, r := range results {
		if r.Kind == "Namespace" && strings.HasPrefix(r.Action, "kept") {
			return true
		}
	}
	return false
}

// namespaceGone is done when the install namespace, and so everything in
// it, is gone.
func (o *UninstallOptions) namespaceGone(ctx context.Context) (bool, error) {
	_, err := o.client.CoreV1().Namespaces().Get(ctx, o.namespace, metav1.GetOptions{})
	return apierrors.IsNotFound(err), nil
}

// workloadGone is done, in a namespace that stays, when the DaemonSet and
// the pods (the daemon's and the prefetch pods it owned) are gone.
func (o *UninstallOptions) workloadGone(ctx context.Context) (bool, error) {
	if _, err := o.client.AppsV1().DaemonSets(o.namespace).Get(ctx, install.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		return false, nil
	}
	pods, err := o.client.CoreV1().Pods(o.namespace).List(ctx, metav1.ListOptions{LabelSelector: wire.LabelPartOf + "=" + install.Name})
	return err == nil && len(pods.Items) == 0, nil
}

// Run asks, deletes and waits.
func (o *UninstallOptions) Run(ctx context.Context) error {
	if !o.Yes {
		fmt.Fprintf(o.Out, "Remove image-cache-daemon and its cache record from namespace %s? [y/N] ", o.namespace)
		answer, _ := bufio.NewReader(o.In).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return errors.New("not confirmed: nothing was removed (pass --yes to skip the question)")
		}
	}
	results, err := o.applier.Uninstall(ctx, o.namespace)
	printResults(o.Out, results, o.namespace)
	if err != nil {
		return fmt.Errorf("%w\nrun the command again to finish", err)
	}
	if !o.Wait {
		return nil
	}
	gone, what := o.namespaceGone, "namespace "+o.namespace+" is still terminating"
	if namespaceKept(results) {
		gone, what = o.workloadGone, "image-cache-daemon's pods are still in namespace "+o.namespace
	}
	if err := wait.PollUntilContextTimeout(ctx, time.Second, o.Timeout, true, gone); err != nil {
		return fmt.Errorf("%s after %s: see kubectl -n %s get pods -l %s=%s", what, o.Timeout, o.namespace, wire.LabelPartOf, install.Name)
	}
	fmt.Fprintf(o.Out, "image-cache-daemon uninstalled\n")
	return nil
}
