package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/dcherman/image-cache-daemon/pkg/version"
)

// VersionOptions holds what the version command needs.
type VersionOptions struct {
	genericiooptions.IOStreams
	kube
	ClientOnly bool
}

// NewCmdVersion returns the "version" command.
func NewCmdVersion(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &VersionOptions{IOStreams: streams, kube: kube{flags: flags}}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version and the installed daemon's",
		Example: `  kubectl imagecache version
  kubectl imagecache version --client`,
		Args: cobra.NoArgs,
		RunE: runE(o),
	}
	cmd.Flags().BoolVar(&o.ClientOnly, "client", false, "Only the plugin's version; do not contact the cluster")
	return cmd
}

// Complete builds the client unless only the plugin's version is asked for.
func (o *VersionOptions) Complete([]string) error {
	if o.ClientOnly {
		return nil
	}
	return o.kube.complete()
}

// Validate has nothing to check.
func (o *VersionOptions) Validate() error { return nil }

// Run prints the versions and warns when they differ.
func (o *VersionOptions) Run(ctx context.Context) error {
	fmt.Fprintf(o.Out, "plugin: %s\n", version.String())
	if o.ClientOnly {
		return nil
	}
	s, err := takeSnapshot(ctx, o.client, o.namespace)
	if err != nil {
		return err
	}
	daemon := "unknown (no daemon pod running)"
	if s.DaemonImage != "" {
		daemon = s.DaemonImage
	}
	fmt.Fprintf(o.Out, "daemon: %s (namespace %s)\n", daemon, o.namespace)
	if tag := imageTag(s.DaemonImage); tag != "" && tag != version.String() {
		fmt.Fprintf(o.ErrOut, "warning: the plugin (%s) and the daemon (%s) differ; kubectl imagecache install updates the daemon\n", version.String(), tag)
	}
	return nil
}

// imageTag is the tag of an image reference ("" if none).
func imageTag(image string) string {
	image, _, _ = strings.Cut(image, "@")
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}
	return ""
}
