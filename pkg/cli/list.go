package cli

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	daemonoptions "github.com/dcherman/image-cache-daemon/pkg/options"
	"github.com/dcherman/image-cache-daemon/pkg/source"
)

// ListOptions holds what the list command needs.
type ListOptions struct {
	genericiooptions.IOStreams
	kube

	Output  string
	Timeout time.Duration

	dynamic  dynamic.Interface
	printing *printFlags
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
  kubectl imagecache list -o json
  kubectl imagecache list -o jsonpath='{.images[*].image}'`,
		Args: cobra.NoArgs,
		RunE: runE(o),
	}
	o.printFlags().addFlags(cmd)
	cmd.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "How long to wait for the sources to be read")
	return cmd
}

// Validate checks the flags.
func (o *ListOptions) Validate() error {
	_, err := o.printFlags().printer()
	return err
}

// printFlags are -o's: the table, or kubectl's printers.
func (o *ListOptions) printFlags() *printFlags {
	if o.printing == nil {
		o.printing = newPrintFlags(&o.Output, false, "")
	}
	return o.printing
}

// Complete builds the clients.
func (o *ListOptions) Complete([]string) error {
	if err := o.kube.complete(); err != nil {
		return err
	}
	if o.dynamic == nil {
		cfg, err := o.restConfig()
		if err != nil {
			return err
		}
		if o.dynamic, err = dynamic.NewForConfig(cfg); err != nil {
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
	problems := &problemList{}
	set, err := source.NewSet(cfg, source.Clients{Kube: o.client, Dynamic: o.dynamic, Discovery: o.client.Discovery()}, problems)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	set.Start(ctx, func() {})
	defer set.Wait()
	defer cancel()
	syncCtx, stop := context.WithTimeout(ctx, o.Timeout)
	defer stop()
	if err := set.WaitForSync(syncCtx); err != nil {
		return fmt.Errorf("reading the sources as the daemon does: %w", err)
	}
	images := set.Wanted()
	skipped := problems.sorted()
	p, err := o.printFlags().printer()
	if err != nil {
		return err
	}
	if p != nil {
		if images == nil {
			images = []source.Image{}
		}
		return printDocument(p, o.Out, "ImageList", &listDoc{Images: images, Problems: skipped})
	}
	rows := make([][]string, 0, len(images))
	for _, img := range images {
		rows = append(rows, []string{imageref.Familiar(img.Image), strings.Join(img.Origins, ", ")})
	}
	if err := printTable(o.Out, []string{"IMAGE", "WANTED BY"}, rows); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(o.Out, plural(len(images), "image")); err != nil {
		return err
	}
	for _, p := range skipped {
		// An object's problem skips (some of) its images; a source's
		// (a CRD not installed) is a note about the source.
		label := "skipped: "
		if strings.HasPrefix(p.Object, "source ") {
			label = ""
		}
		if _, err := fmt.Fprintf(o.Out, "%s%s: %s\n", label, imageref.Printable(p.Object), imageref.Printable(p.Problem)); err != nil {
			return err
		}
	}
	unread := 0
	for _, h := range set.Health() {
		unread += h.Unread
	}
	if unread > 0 {
		if _, err := fmt.Fprintf(o.Out, "not read: %s past --max-images in their objects (each object keeps at most that many images)\n", entries(unread)); err != nil {
			return err
		}
	}
	return nil
}

// listDoc is the document of list that kubectl's printers print.
type listDoc struct {
	metav1.TypeMeta `json:",inline"`
	Images          []source.Image `json:"images"`
	Problems        []listProblem  `json:"problems,omitempty"`
}

func (d *listDoc) DeepCopyObject() runtime.Object {
	c := &listDoc{}
	copyJSON(d, c)
	return c
}

// listProblem is what keeps an object's images, or some of them, from
// being cached.
type listProblem struct {
	Object  string `json:"object"`
	Problem string `json:"problem"`
}

// problemList is the sources' Reporter for list: it keeps what they report,
// to print under the images.
type problemList struct {
	mu   sync.Mutex
	list []listProblem
}

func (l *problemList) Problems(src string, obj runtime.Object, problems []error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	where := "source " + src
	if m, err := meta.Accessor(obj); obj != nil && err == nil {
		where = obj.GetObjectKind().GroupVersionKind().Kind + " " + m.GetName()
		if m.GetNamespace() != "" {
			where = obj.GetObjectKind().GroupVersionKind().Kind + " " + m.GetNamespace() + "/" + m.GetName()
		}
	}
	for _, p := range problems {
		l.list = append(l.list, listProblem{Object: where, Problem: p.Error()})
	}
}

func (l *problemList) sorted() []listProblem {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := slices.Clone(l.list)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Object < out[j].Object })
	return out
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
	opts := daemonoptions.NewOptions()
	fs := pflag.NewFlagSet("image-cache-daemon", pflag.ContinueOnError)
	fs.ParseErrorsAllowlist.UnknownFlags = true // logging flags and the like
	opts.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return source.Config{}, fmt.Errorf("reading the arguments of daemonset/%s: %w", install.Name, err)
	}
	return opts.SourceConfig()
}

func entries(n int) string {
	if n == 1 {
		return "1 entry"
	}
	return fmt.Sprintf("%d entries", n)
}
