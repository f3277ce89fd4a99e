package cli

import (
	"context"
	"sort"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/source"
)

// Shell completion. kubectl completes a plugin's arguments through an
// executable named kubectl_complete-imagecache on the PATH that runs
// `kubectl imagecache __complete "$@"` (the README shows it); the plugin
// binary itself also has a `completion` command.
//
// The functions that ask the cluster do so with the kubectl flags already on
// the command line (--context, -n, ...) and complete nothing when the cluster
// cannot be reached: a completion never prints an error into a shell.

// completionTimeout bounds what a completion asks the cluster: an
// unreachable cluster must not hang the shell.
const completionTimeout = 5 * time.Second

func completionContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, completionTimeout)
}

// completeOutput completes -o with the formats a command prints.
func completeOutput(cmd *cobra.Command, formats ...string) {
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
}

// completeListed completes the images of the edited image list (remove).
func (o *EditOptions) completeListed(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if err := o.kube.complete(); err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	ctx, cancel := completionContext(cmd)
	defer cancel()
	cm, err := o.client.CoreV1().ConfigMaps(o.namespace).Get(ctx, o.ConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	images, _ := source.ImagesFromConfigMap(cm)
	return familiarExcept(images, args), cobra.ShellCompDirectiveNoFileComp
}

// completeCached completes --image and --node of status from what the
// prefetch pods hold: one LIST, as status itself.
func (k *kube) completeCached(node bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if err := k.complete(); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		ctx, cancel := completionContext(cmd)
		defer cancel()
		s, err := takeSnapshot(ctx, k.client, k.namespace)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		if node {
			return s.Nodes, cobra.ShellCompDirectiveNoFileComp
		}
		var images []string
		for _, st := range s.Images {
			images = append(images, st.Image)
		}
		return familiarExcept(images, nil), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeNamespaces completes -n with the cluster's namespaces.
func (k *kube) completeNamespaces(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if err := k.complete(); err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	ctx, cancel := completionContext(cmd)
	defer cancel()
	list, err := k.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	var names []string
	for _, n := range list.Items {
		names = append(names, n.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// completeContexts completes --context with the kubeconfig's contexts.
func (k *kube) completeContexts(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	raw, err := k.flags.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	var names []string
	for name := range raw.Contexts {
		names = append(names, name)
	}
	sort.Strings(names)
	return names, cobra.ShellCompDirectiveNoFileComp
}

// familiarExcept returns images in their short form (as users type them),
// sorted and unique, leaving out those already on the command line.
func familiarExcept(images, given []string) []string {
	skip := map[string]bool{}
	for _, g := range given {
		if n, err := imageref.Normalize(g); err == nil {
			skip[n] = true
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, img := range images {
		if skip[img] || seen[img] {
			continue
		}
		seen[img] = true
		out = append(out, imageref.Familiar(img))
	}
	sort.Strings(out)
	return out
}
