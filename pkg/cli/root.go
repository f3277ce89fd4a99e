// Package cli holds the commands of the kubectl-imagecache plugin. Each
// command follows kubectl's pattern: NewCmdX(streams) building an Options
// struct whose Complete, Validate and Run do the work.
package cli

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// NewCmdImageCache returns the root command of the plugin, shown to users as
// "kubectl imagecache".
func NewCmdImageCache(streams genericiooptions.IOStreams) *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true)
	cmd := &cobra.Command{
		Use:   "kubectl-imagecache",
		Short: "Pre-pull images onto every node of a cluster",
		Long: `kubectl imagecache installs image-cache-daemon, edits the list of images it
keeps cached on every node, and reports what is cached where.`,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl imagecache",
		},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	flags.AddFlags(cmd.PersistentFlags())
	completer := &kube{flags: flags}
	_ = cmd.RegisterFlagCompletionFunc("namespace", completer.completeNamespaces)
	_ = cmd.RegisterFlagCompletionFunc("context", completer.completeContexts)
	cmd.AddCommand(
		NewCmdInstall(flags, streams),
		NewCmdUninstall(flags, streams),
		NewCmdAdd(flags, streams),
		NewCmdRemove(flags, streams),
		NewCmdList(flags, streams),
		NewCmdStatus(flags, streams),
		NewCmdVersion(flags, streams),
	)
	return cmd
}
