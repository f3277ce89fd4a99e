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
	corev1 "k8s.io/api/core/v1"
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
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// ListOptions holds what the list command needs.
type ListOptions struct {
	genericiooptions.IOStreams
	kube

	Output      string
	Timeout     time.Duration
	FromSources bool

	dynamic  dynamic.Interface
	printing *printFlags
}

// NewCmdList returns the "list" command.
func NewCmdList(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &ListOptions{IOStreams: streams, kube: kube{flags: flags}, Timeout: time.Minute}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the wanted images and what wants each",
		Long: `List every image the nodes are asked to cache, with what wants it (labelled
ConfigMaps, Argo WorkflowTemplates, ClusterWorkflowTemplates, CronWorkflows, the
--image flags), as the planner published it for the nodes: exactly what they
work from, read with one request and no right to read the sources. DIGEST is
the digest each tag points to now, as the planner checked it at its registry
(nodes that hold another pull the tag again); "-" where it could not, with
why under the table (those tags are pulled again every --resync-period). With
--from-sources, read the sources yourself the way the planner does, with its
settings, and see each skipped object's problem.`,
		Example: `  kubectl imagecache list
  kubectl imagecache list --from-sources
  kubectl imagecache list -o json
  kubectl imagecache list -o jsonpath='{.images[*].image}'`,
		Args: cobra.NoArgs,
		RunE: runE(o),
	}
	o.printFlags().addFlags(cmd)
	cmd.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "With --from-sources: how long to wait for the sources to be read")
	cmd.Flags().BoolVar(&o.FromSources, "from-sources", false, "Read the sources as the planner does, with your credentials (which must read them all), instead of the set it published")
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

// Run prints the wanted images: those the planner published, or with
// FromSources those the sources want now.
func (o *ListOptions) Run(ctx context.Context) error {
	if !o.FromSources {
		return o.runPublished(ctx)
	}
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
	images := []listImage{}
	for _, im := range set.Wanted() {
		images = append(images, listImage{Image: im})
	}
	skipped := problems.sorted()
	p, err := o.printFlags().printer()
	if err != nil {
		return err
	}
	if p != nil {
		return printDocument(p, o.Out, "ImageList", &listDoc{Images: images, Problems: skipped})
	}
	unread := 0
	for _, h := range set.Health() {
		unread += h.Unread
	}
	return o.printList(images, skipped, unread, false)
}

// printList prints the table of images, then which tags the planner could
// not check (with digests: from its set), what was skipped and how many
// entries were not read.
func (o *ListOptions) printList(images []listImage, skipped []listProblem, unread int, digests bool) error {
	rows := make([][]string, 0, len(images))
	header := []string{"IMAGE", "WANTED BY"}
	if digests {
		header = append(header, "DIGEST")
	}
	var unchecked []uncheckedImage
	for _, img := range images {
		row := []string{imageref.Familiar(img.Image.Image), strings.Join(img.Origins, ", ")}
		if digests {
			d := shortDigest(img.Digest)
			if d == "" {
				d = "-"
				unchecked = append(unchecked, uncheckedImage{image: img.Image.Image, why: img.Unchecked})
			}
			row = append(row, d)
		}
		rows = append(rows, row)
	}
	if err := printTable(o.Out, header, rows); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(o.Out, plural(len(images), "image")); err != nil {
		return err
	}
	for _, l := range uncheckedLines(unchecked) {
		if _, err := fmt.Fprintln(o.Out, imageref.Printable(l)); err != nil {
			return err
		}
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
	if unread > 0 {
		if _, err := fmt.Fprintf(o.Out, "not read: %s past --max-images in their objects and namespaces (each keeps at most that many images)\n", entries(unread)); err != nil {
			return err
		}
	}
	return nil
}

// listDoc is the document of list that kubectl's printers print.
type listDoc struct {
	metav1.TypeMeta `json:",inline"`
	Images          []listImage   `json:"images"`
	Problems        []listProblem `json:"problems,omitempty"`
	// From the planner's set: when it was published, and the images its
	// limits left out (a count, and the first few).
	PublishedAt *metav1.Time `json:"publishedAt,omitempty"`
	Over        int          `json:"over,omitempty"`
	OverSample  []wire.Image `json:"overSample,omitempty"`
}

// listImage is an image of list: what wants it and, from the planner's
// set, the digest its tag points to now (a pinned reference's own), or why
// the planner could not check it.
type listImage struct {
	wire.Image `json:",inline"`
	Digest     string `json:"digest,omitempty"`
	Unchecked  string `json:"unchecked,omitempty"`
}

// runPublished prints the set the planner published.
func (o *ListOptions) runPublished(ctx context.Context) error {
	set, cm, err := readWantedSet(ctx, o.client, o.namespace)
	if err != nil {
		return fmt.Errorf("%w; list --from-sources reads the sources directly", err)
	}
	doc := &listDoc{Images: []listImage{}, Over: set.Over, OverSample: set.OverSample, PublishedAt: publishedAt(cm)}
	for _, im := range set.Images {
		origins := slices.Clone(im.Origins)
		if im.MoreOrigins > 0 {
			origins = append(origins, fmt.Sprintf("and %d more", im.MoreOrigins))
		}
		li := listImage{Image: wire.Image{Image: im.Image, Origins: origins}}
		li.Digest, li.Unchecked = checkOf(im)
		doc.Images = append(doc.Images, li)
	}
	slices.SortFunc(doc.Images, func(a, b listImage) int { return strings.Compare(a.Image.Image, b.Image.Image) })
	unread := 0
	for _, h := range set.Sources {
		unread += h.Unread
		switch {
		case h.Problem != "":
			doc.Problems = append(doc.Problems, listProblem{Object: "source " + h.Source, Problem: h.Problem})
		case h.Missing:
			doc.Problems = append(doc.Problems, listProblem{Object: "source " + h.Source,
				Problem: "its resource is not served by the API server (is its CRD installed?); the planner waits for it"})
		}
		for _, obj := range h.SkippedSample {
			doc.Problems = append(doc.Problems, listProblem{Object: obj, Problem: "skipped (its Events say why; list --from-sources too)"})
		}
		if more := h.Skipped - len(h.SkippedSample); more > 0 {
			doc.Problems = append(doc.Problems, listProblem{Object: "source " + h.Source, Problem: fmt.Sprintf("%d more objects skipped", more)})
		}
	}
	p, err := o.printFlags().printer()
	if err != nil {
		return err
	}
	if p != nil {
		return printDocument(p, o.Out, "ImageList", doc)
	}
	if err := o.printList(doc.Images, doc.Problems, unread, true); err != nil {
		return err
	}
	if set.Over > 0 {
		var names []string
		for _, im := range set.OverSample {
			names = append(names, fmt.Sprintf("%s (wanted by %s)", imageref.Printable(imageref.Familiar(im.Image)), imageref.Printable(strings.Join(im.Origins, ", "))))
		}
		if _, err := fmt.Fprintf(o.Out, "over --max-images: %s not cached, such as %s\n", plural(set.Over, "image"), strings.Join(names, "; ")); err != nil {
			return err
		}
	}
	when := "at an unknown time"
	if doc.PublishedAt != nil {
		when = doc.PublishedAt.UTC().Format(time.RFC3339)
	}
	partial := ""
	if set.Partial {
		partial = ", before every source was read (partial)"
	}
	_, err = fmt.Fprintf(o.Out, "published by the planner %s%s\n", when, partial)
	return err
}

// publishedAt is when the planner last wrote cm.
func publishedAt(cm *corev1.ConfigMap) *metav1.Time {
	var at *metav1.Time
	for _, f := range cm.ManagedFields {
		if f.Manager == wanted.Planner && f.Time != nil && (at == nil || f.Time.After(at.Time)) {
			at = f.Time
		}
	}
	if at == nil && !cm.CreationTimestamp.IsZero() {
		at = &cm.CreationTimestamp
	}
	return at
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
