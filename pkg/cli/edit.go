package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/dcherman/image-cache-daemon/pkg/imagelist"
	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/install"
)

// EditOptions are shared by add and remove: both edit one image list.
type EditOptions struct {
	genericiooptions.IOStreams
	kube

	ConfigMap string
	images    []string // normalised
	raw       []string
	remove    bool

	// add --wait
	Wait WaitOptions
}

func newEditOptions(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams, remove bool) *EditOptions {
	return &EditOptions{IOStreams: streams, kube: kube{flags: flags}, ConfigMap: install.DefaultConfigMap, remove: remove, Wait: defaultWait()}
}

func (o *EditOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.ConfigMap, "configmap", o.ConfigMap, "The image list (a labelled ConfigMap in the namespace given by -n) to edit; created if missing")
}

// Complete normalises the images and builds the client.
func (o *EditOptions) Complete(args []string) error {
	o.raw = args
	var errs []error
	for _, a := range args {
		n, err := imageref.Normalize(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !slices.Contains(o.images, n) {
			o.images = append(o.images, n)
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Refused as a whole: nothing is half added.
		return fmt.Errorf("%w\nnothing was changed", err)
	}
	return o.kube.complete()
}

// Validate checks the arguments.
func (o *EditOptions) Validate() error {
	if len(o.raw) == 0 {
		return errors.New("name at least one image, e.g. kubectl imagecache add alpine:3.20")
	}
	if o.ConfigMap == "" {
		return errors.New("--configmap must not be empty")
	}
	return o.Wait.validate()
}

// Run edits the list and reports what changed.
func (o *EditOptions) Run(ctx context.Context) error {
	change := func(current []string) []string {
		if o.remove {
			return slices.DeleteFunc(slices.Clone(current), func(s string) bool { return slices.Contains(o.images, s) })
		}
		return append(slices.Clone(current), o.images...)
	}
	res, err := imagelist.Edit(ctx, o.client, o.namespace, o.ConfigMap, change)
	if err != nil {
		return err
	}
	where := fmt.Sprintf("configmap/%s -n %s", o.ConfigMap, o.namespace)
	for _, img := range o.images {
		had, has := slices.Contains(res.Before, img), slices.Contains(res.After, img)
		switch {
		case o.remove && had:
			fmt.Fprintf(o.Out, "%s removed from %s\n", imageref.Familiar(img), where)
		case o.remove:
			fmt.Fprintf(o.Out, "%s was not in %s (nothing to remove)\n", imageref.Familiar(img), where)
		case had:
			fmt.Fprintf(o.Out, "%s is already in %s (nothing to add)\n", imageref.Familiar(img), where)
		case has:
			fmt.Fprintf(o.Out, "%s added to %s\n", imageref.Familiar(img), where)
		}
	}
	if !o.remove && o.Wait.Enabled {
		return o.Wait.run(ctx, o.client, o.namespace, o.images, o.Out)
	}
	return nil
}

// NewCmdAdd returns the "add" command.
func NewCmdAdd(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := newEditOptions(flags, streams, false)
	cmd := &cobra.Command{
		Use:   "add IMAGE...",
		Short: "Cache images on every node",
		Long: `Add images to the image list that image-cache-daemon keeps cached on every node.
References are checked and normalised first (alpine means
docker.io/library/alpine:latest); if any is invalid, nothing is changed.
Concurrent edits are safe: none is lost. With --wait, wait until every node
has cached them, each at the digest its tag points to now as the planner
checked it at its registry (a node that holds an older digest pulls the tag
again first); for a tag the planner could not check, any digest will do.`,
		Example: `  # Cache alpine and a pinned nginx on every node
  kubectl imagecache add alpine nginx:1.27

  # Add an image and wait until every node has its current digest (exit 1 if a node fails)
  kubectl imagecache add --wait ghcr.io/org/app:v2`,
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE:              runE(o),
	}
	o.addFlags(cmd)
	o.Wait.addFlags(cmd)
	return cmd
}

// NewCmdRemove returns the "remove" command.
func NewCmdRemove(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	return newCmdRemove(newEditOptions(flags, streams, true))
}

func newCmdRemove(o *EditOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "remove IMAGE...",
		Aliases: []string{"rm"},
		Short:   "Stop caching images",
		Long: `Remove images from the image list. Once no source wants an image any more,
image-cache-daemon deletes the prefetch pods that held it, and the kubelet may
garbage-collect it. Images that other sources (ConfigMaps, Argo templates,
--image) still want stay cached: kubectl imagecache list shows who wants what.`,
		Example:           `  kubectl imagecache remove alpine`,
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: o.completeListed,
		RunE:              runE(o),
	}
	o.addFlags(cmd)
	return cmd
}
