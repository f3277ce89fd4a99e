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
	"github.com/dcherman/image-cache-daemon/pkg/version"
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
		Long: `Remove everything install made: the DaemonSet and its prefetch pods, the RBAC,
the service account, the image list in the install namespace and the namespace
itself. Image lists you created in other namespaces are yours and are kept.
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

// Run asks, deletes and waits.
func (o *UninstallOptions) Run(ctx context.Context) error {
	if !o.Yes {
		fmt.Fprintf(o.Out, "Remove image-cache-daemon and its cache record from namespace %s? [y/N] ", o.namespace)
		answer, _ := bufio.NewReader(o.In).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return errors.New("not confirmed: nothing was removed (pass --yes to skip the question)")
		}
	}
	opts := install.DefaultOptions(version.String())
	opts.Namespace = o.namespace
	results, err := o.applier.Delete(ctx, install.Objects(opts))
	for _, r := range results {
		fmt.Fprintf(o.Out, "%s/%s %s\n", strings.ToLower(r.Kind), r.Name, r.Action)
	}
	if err != nil {
		return fmt.Errorf("%w\nrun the command again to finish", err)
	}
	if !o.Wait {
		return nil
	}
	err = wait.PollUntilContextTimeout(ctx, time.Second, o.Timeout, true, func(ctx context.Context) (bool, error) {
		_, err := o.client.CoreV1().Namespaces().Get(ctx, o.namespace, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		return fmt.Errorf("namespace %s is still terminating after %s", o.namespace, o.Timeout)
	}
	fmt.Fprintf(o.Out, "image-cache-daemon uninstalled\n")
	return nil
}
