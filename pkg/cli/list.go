package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/dcherman/image-cache-daemon/pkg/daemon"
	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/source"
)

// ListOptions holds what the list command needs.
type ListOptions struct {
	genericiooptions.IOStreams
	kube

	Output  string
	Timeout time.Duration

	argo argoclient.Interface
}

// NewCmdList returns the "list" command.
func NewCmdList(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &ListOptions{IOStreams: streams, kube: kube{flags: flags}, Timeout: time.Minute}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the wanted images and what wants each",
		Long: `List every image the installed daemon is asked to cache, with the sources that
want it: labelled ConfigMaps, Argo WorkflowTemplates, ClusterWorkflowTemplates,
CronWorkflows and the daemon's --image flags. The sources are read the way the
daemon reads them, with the daemon's own settings.`,
		Example: `  kubectl imagecache list
  kubectl imagecache list -o json`,
		Args: cobra.NoArgs,
		RunE: runE(o),
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "Output format: json or yaml")
	completeOutput(cmd, "json", "yaml")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "How long to wait for the sources to be read")
	return cmd
}

// Validate checks the flags.
func (o *ListOptions) Validate() error {
	if o.Output != "" && o.Output != "json" && o.Output != "yaml" {
		return fmt.Errorf("--output %q: want json or yaml", o.Output)
	}
	return nil
}

// Complete builds the clients.
func (o *ListOptions) Complete([]string) error {
	if err := o.kube.complete(); err != nil {
		return err
	}
	if o.argo == nil {
		cfg, err := o.restConfig()
		if err != nil {
			return err
		}
		if o.argo, err = argoclient.NewForConfig(cfg); err != nil {
			return err
		}
	}
	return nil
}

// Run reads the sources once and prints the wanted images.
func (o *ListOptions) Run(ctx context.Context) error {
	cfg, err := o.daemonSources(ctx)
	if err != nil {
		return err
	}
	sources, err := source.New(cfg, source.Clients{Kube: o.client, Argo: o.argo, Discovery: o.client.Discovery()}, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, s := range sources {
		s.Start(ctx, func() {})
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, o.Timeout, true, func(context.Context) (bool, error) {
		for _, s := range sources {
			if !s.HasSynced() {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("reading the sources: %w", err)
	}
	var wants []source.Want
	for _, s := range sources {
		wants = append(wants, s.Wanted()...)
	}
	images := source.Images(wants)
	switch o.Output {
	case "json", "yaml":
		if images == nil {
			images = []source.Image{}
		}
		b, err := json.MarshalIndent(images, "", "  ")
		if err != nil {
			return err
		}
		if o.Output == "yaml" {
			if b, err = yaml.JSONToYAML(b); err != nil {
				return err
			}
		}
		_, err = fmt.Fprintln(o.Out, strings.TrimRight(string(b), "\n"))
		return err
	}
	rows := make([][]string, 0, len(images))
	for _, img := range images {
		rows = append(rows, []string{imageref.Familiar(img.Image), strings.Join(img.Origins, ", ")})
	}
	if err := printTable(o.Out, []string{"IMAGE", "WANTED BY"}, rows); err != nil {
		return err
	}
	_, err = fmt.Fprintln(o.Out, plural(len(images), "image"))
	return err
}

// daemonSources reads the installed DaemonSet's arguments with the daemon's
// own flag definitions, so list sees exactly the sources the daemon sees.
func (o *ListOptions) daemonSources(ctx context.Context) (source.Config, error) {
	ds, err := o.client.AppsV1().DaemonSets(o.namespace).Get(ctx, install.Name, metav1.GetOptions{})
	if err != nil {
		return source.Config{}, notInstalled(o.namespace, err)
	}
	var args []string
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == install.ContainerName {
			args = c.Args
		}
	}
	opts := daemon.NewOptions()
	fs := pflag.NewFlagSet("image-cache-daemon", pflag.ContinueOnError)
	fs.ParseErrorsAllowlist.UnknownFlags = true // logging flags and the like
	opts.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return source.Config{}, fmt.Errorf("reading the arguments of daemonset/%s: %w", install.Name, err)
	}
	return opts.SourceConfig()
}
