package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/dcherman/image-cache-daemon/pkg/version"
)

// VersionOptions holds what the version command needs.
type VersionOptions struct {
	genericiooptions.IOStreams
}

// NewCmdVersion returns the "version" command.
func NewCmdVersion(streams genericiooptions.IOStreams) *cobra.Command {
	o := &VersionOptions{IOStreams: streams}
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the plugin's version",
		Example: "  kubectl imagecache version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.Run()
		},
	}
}

// Run prints the version.
func (o *VersionOptions) Run() error {
	_, err := fmt.Fprintf(o.Out, "kubectl-imagecache %s\n", version.String())
	return err
}
