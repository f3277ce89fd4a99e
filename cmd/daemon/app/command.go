// Package app is image-cache-daemon's command line: the node daemon
// (node.Run) and the planner subcommand (planner.Run), with the options' and
// the logging flags. It only wires; cmd/daemon's main runs it.
package app

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	_ "k8s.io/component-base/logs/json/register" // --logging-format=json
	"k8s.io/klog/v2"

	"github.com/dcherman/image-cache-daemon/pkg/node"
	"github.com/dcherman/image-cache-daemon/pkg/options"
	"github.com/dcherman/image-cache-daemon/pkg/planner"
	"github.com/dcherman/image-cache-daemon/pkg/version"
)

// NewCommand returns the daemon's command line: the node daemon, and the
// planner as a subcommand with the same flags.
func NewCommand() *cobra.Command {
	cmd := command("image-cache-daemon", "Pre-pull images onto this node before pods need them",
		`image-cache-daemon runs on every node (a DaemonSet). It finds the images the
cluster wants (--image, labelled ConfigMaps, Argo WorkflowTemplates,
ClusterWorkflowTemplates and CronWorkflows), or with --from-planner reads the
set the planner publishes, and keeps prefetch pods on its node that pull them.`, node.Run)
	cmd.Version = version.String()
	cmd.AddCommand(command("planner", "Read the sources once for the cluster and publish the wanted set for the node daemons",
		`The planner (a Deployment of two replicas, one leading) reads the sources
(--image, labelled ConfigMaps, the Argo kinds), ranks their images within
--max-images, reports the problems of objects as Events and publishes the
wanted set in configmap/image-cache-daemon-wanted of its namespace, which the
node daemons (--from-planner) cache. It takes the node daemon's flags; those
about nodes and prefetch pods are ignored.`, planner.Run))
	return cmd
}

// command is a daemon command: the options' flags and the logging flags,
// checked, then run.
func command(use, short, long string, run func(context.Context, *options.Options) error) *cobra.Command {
	o := options.NewOptions()
	logging := logsapi.NewLoggingConfiguration()
	cmd := &cobra.Command{
		Use:           use,
		Short:         short,
		Long:          long,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := logsapi.ValidateAndApply(logging, nil); err != nil {
				return fmt.Errorf("logging flags: %w", err)
			}
			defer logs.FlushLogs()
			if err := o.Validate(); err != nil {
				return err
			}
			return run(klog.NewContext(cmd.Context(), klog.Background()), o)
		},
	}
	o.AddFlags(cmd.Flags())
	logsapi.AddFlags(logging, cmd.Flags())
	return cmd
}

// Main runs the daemon until ctx ends and returns the process exit code.
func Main(ctx context.Context, args []string) int {
	cmd := NewCommand()
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		klog.ErrorS(err, "image-cache-daemon failed")
		logs.FlushLogs()
		return 1
	}
	return 0
}
