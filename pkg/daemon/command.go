package daemon

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	_ "k8s.io/component-base/logs/json/register" // --logging-format=json
	"k8s.io/klog/v2"

	"github.com/dcherman/image-cache-daemon/pkg/options"
	"github.com/dcherman/image-cache-daemon/pkg/version"
)

// NewCommand returns the daemon's command line.
func NewCommand() *cobra.Command {
	o := options.NewOptions()
	logging := logsapi.NewLoggingConfiguration()
	cmd := &cobra.Command{
		Use:   "image-cache-daemon",
		Short: "Pre-pull images onto this node before pods need them",
		Long: `image-cache-daemon runs on every node (a DaemonSet). It finds the images the
cluster wants (--image, labelled ConfigMaps, Argo WorkflowTemplates,
ClusterWorkflowTemplates and CronWorkflows) and keeps prefetch pods on its
node that pull them.`,
		Version:       version.String(),
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
			ctx := klog.NewContext(cmd.Context(), klog.Background())
			return Run(ctx, o)
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
