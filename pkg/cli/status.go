package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// StatusOptions holds what the status command needs.
type StatusOptions struct {
	genericiooptions.IOStreams
	kube

	Output   string
	Image    string
	Node     string
	Watch    bool
	Interval time.Duration

	image    string // normalised filter
	now      func() time.Time
	printing *printFlags
	// set is the planner's published set (the tags' current digests), or
	// setErr why it could not be read.
	set    *wanted.Set
	setErr error
}

// setEvery is how often status --watch reads the planner's set again (and
// redraws when it changed, the pods or not). A variable for the tests.
var setEvery = 10 * time.Second

// NewCmdStatus returns the "status" command.
func NewCmdStatus(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	return newCmdStatus(&StatusOptions{IOStreams: streams, kube: kube{flags: flags}, Interval: 2 * time.Second, now: time.Now})
}

func newCmdStatus(o *StatusOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show which images are cached on which nodes",
		Long: `Show the cache: by default one row per image with how many nodes have it
cached, how many of them hold an older digest than the one its tag points to
now (STALE: they pull it again soon; "-" where the planner could not check
the tag, named below the table with why), are pulling it or failed to;
-o wide shows one row per node and image, with the digest the node holds,
the tag's current one where the node's is older (CURRENT; "-" where not
known), and the kubelet's message for failures. Read with one request,
whatever the size of the cluster, from the report each daemon publishes on
its pod (the statuses of its node's prefetch pods); where a daemon has no
report to trust, from the prefetch pods themselves, with one more; the
tags' current digests from the wanted set the planner publishes (one GET).
Nodes that run no daemon pod are not counted. --watch keeps that request
open as a watch and prints the table again when it changes.`,
		Example: `  kubectl imagecache status
  kubectl imagecache status -o wide --node worker-3
  kubectl imagecache status --image alpine -o json
  kubectl imagecache status -o jsonpath='{range .images[*]}{.image}{"\t"}{.cached}{"\n"}{end}'
  kubectl imagecache status --watch`,
		Args: cobra.NoArgs,
		RunE: runE(o),
	}
	o.printFlags().addFlags(cmd)
	cmd.Flags().StringVar(&o.Image, "image", "", "Only this image")
	cmd.Flags().StringVar(&o.Node, "node", "", "Only this node")
	cmd.Flags().BoolVarP(&o.Watch, "watch", "w", false, "Refresh until interrupted")
	cmd.Flags().DurationVar(&o.Interval, "interval", o.Interval, "With --watch, the least time between two tables")
	_ = cmd.RegisterFlagCompletionFunc("image", o.completeCached(false))
	_ = cmd.RegisterFlagCompletionFunc("node", o.completeCached(true))
	return cmd
}

// Complete builds the client and normalises the image filter.
func (o *StatusOptions) Complete([]string) error {
	if o.Image != "" {
		n, err := imageref.Normalize(o.Image)
		if err != nil {
			return fmt.Errorf("--image: %w", err)
		}
		o.image = n
	}
	return o.kube.complete()
}

// Validate checks the flags.
func (o *StatusOptions) Validate() error {
	p, err := o.printFlags().printer()
	if err != nil {
		return err
	}
	if o.Watch && p != nil {
		return errors.New("--watch prints tables: use it with no -o, or -o wide")
	}
	if o.Interval < 100*time.Millisecond {
		return fmt.Errorf("--interval %s is too short: use 100ms or more", o.Interval)
	}
	return nil
}

// Run prints the status once, or with --watch again after every change, at
// most every Interval, until interrupted.
func (o *StatusOptions) Run(ctx context.Context) error {
	sets := &setReader{client: o.client, ns: o.namespace, every: setEvery}
	if !o.Watch {
		s, err := takeSnapshot(ctx, o.client, o.namespace)
		if err != nil {
			return err
		}
		o.filter(s)
		o.checkPlanner(ctx, s)
		o.set, o.setErr = sets.get(ctx)
		return o.print(o.Out, s)
	}
	var shown *snapshot
	var shownSet *wanted.Set
	var shownErr error
	var last []byte
	err := follow(ctx, o.client, o.namespace, followOptions{every: o.Interval, refresh: setEvery, warn: o.ErrOut}, func(s *snapshot) (bool, error) {
		o.filter(s)
		o.checkPlanner(ctx, s)
		o.set, o.setErr = sets.get(ctx)
		if shown != nil && s.same(shown) && o.set == shownSet && o.setErr == shownErr {
			return false, nil // a change status does not show
		}
		shownSet, shownErr = o.set, o.setErr
		// Or one it shows the same way (a daemon's health report
		// written again, a warm-up time to the second).
		var out bytes.Buffer
		if err := o.print(&out, s); err != nil {
			return false, err
		}
		shown = s
		if bytes.Equal(out.Bytes(), last) {
			return false, nil
		}
		if last != nil {
			fmt.Fprintln(o.Out)
		}
		last = out.Bytes()
		_, err := o.Out.Write(last)
		return false, err
	})
	if ctx.Err() != nil {
		return nil // interrupted: the way --watch ends
	}
	return err
}

// checkPlanner adds to s a problem when no planner leads: the nodes keep
// caching the last set it published, and nothing new reaches them. The
// Lease is read once (a user who may not read it is told nothing).
func (o *StatusOptions) checkPlanner(ctx context.Context, s *snapshot) {
	lease, err := o.client.CoordinationV1().Leases(o.namespace).Get(ctx, wanted.Planner, metav1.GetOptions{})
	var msg string
	var down bool
	var renewed time.Time
	if err == nil {
		down, renewed = wanted.PlannerDown(lease, o.now())
	}
	switch {
	case apierrors.IsNotFound(err):
		msg = fmt.Sprintf("no planner has led yet: the nodes cache nothing new (kubectl -n %s get deployment %s)", o.namespace, wanted.Planner)
	case err != nil:
		return
	case down:
		since := "ever"
		if !renewed.IsZero() {
			since = o.now().Sub(renewed).Round(time.Second).String()
		}
		msg = fmt.Sprintf("the planner is down (no leader for %s): the nodes keep caching the last wanted set it published, and nothing new reaches them (kubectl -n %s get deployment %s)",
			since, o.namespace, wanted.Planner)
	default:
		msg = o.leaderGone(ctx, lease)
	}
	if msg != "" {
		s.Problems = append(s.Problems, problem{Message: msg})
	}
}

// leaderGone says when the pod that holds the planner's Lease is gone or
// not running (killed, evicted), or has missed its renewals (frozen, cut
// off, its node lost): the gap until a standby takes the Lease over.
func (o *StatusOptions) leaderGone(ctx context.Context, lease *coordinationv1.Lease) string {
	holder := ptr.Deref(lease.Spec.HolderIdentity, "")
	if holder == "" {
		return ""
	}
	pod, err := o.client.CoreV1().Pods(o.namespace).Get(ctx, holder, metav1.GetOptions{})
	var why string
	switch {
	case apierrors.IsNotFound(err):
		why = "is gone"
	case err != nil:
		return "" // a user who may not read pods is told nothing
	case pod.DeletionTimestamp != nil:
		why = "is being deleted"
	case pod.Status.Phase != corev1.PodRunning:
		why = fmt.Sprintf("is not running (%s)", pod.Status.Phase)
	default:
		// Running, but it has missed renewals (frozen, cut off from the
		// API server, its node lost): a healthy leader renews every
		// RenewEvery.
		if lease.Spec.RenewTime == nil {
			return ""
		}
		late := o.now().Sub(lease.Spec.RenewTime.Time)
		if late <= 3*wanted.RenewEvery {
			return ""
		}
		why = fmt.Sprintf("has not renewed its Lease for %s (it renews every %s)", late.Round(time.Second), wanted.RenewEvery)
	}
	left := "now"
	if d := ptr.Deref(lease.Spec.LeaseDurationSeconds, 0); lease.Spec.RenewTime != nil && d > 0 {
		if rest := lease.Spec.RenewTime.Add(time.Duration(d) * time.Second).Sub(o.now()); rest > 0 {
			left = "in " + rest.Round(time.Second).String()
		}
	}
	return fmt.Sprintf("the planner's leader %s %s: a standby takes over when its Lease expires (%s); until then nothing new reaches the nodes, which keep caching the last wanted set",
		holder, why, left)
}

func (o *StatusOptions) filter(s *snapshot) {
	if o.image == "" && o.Node == "" {
		return
	}
	kept := s.Images[:0]
	for _, st := range s.Images {
		if (o.image == "" || st.Image == o.image) && (o.Node == "" || st.Node == o.Node) {
			kept = append(kept, st)
		}
	}
	s.Images = kept
	if o.Node != "" {
		only := func(nodes []string) []string {
			if slices.Contains(nodes, o.Node) {
				return []string{o.Node}
			}
			return nil
		}
		s.Nodes, s.WithoutDaemon = only(s.Nodes), only(s.WithoutDaemon)
		s.Ignored = slices.DeleteFunc(s.Ignored, func(p ignoredPod) bool { return p.Node != o.Node })
		var problems []problem
		for _, p := range s.Problems {
			if slices.Contains(p.Nodes, o.Node) {
				problems = append(problems, problem{Message: p.Message, Nodes: []string{o.Node}})
			}
		}
		s.Problems = problems
	}
}

// printFlags are -o's: the tables, or kubectl's printers.
func (o *StatusOptions) printFlags() *printFlags {
	if o.printing == nil {
		o.printing = newPrintFlags(&o.Output, false, "", "wide")
	}
	return o.printing
}

// statusDoc is the document kubectl's printers print: stable field names
// for scripts.
type statusDoc struct {
	metav1.TypeMeta `json:",inline"`
	Nodes           []string                `json:"nodes"`
	Images          []imageRow              `json:"images"`
	Status          []nodeStatus            `json:"status"`
	Problems        []problem               `json:"problems,omitempty"`
	Warm            map[string]*wire.Warmth `json:"warm,omitempty"`
	WithoutDaemon   []string                `json:"nodesWithoutDaemon,omitempty"`
	Ignored         []ignoredPod            `json:"ignored,omitempty"`
	// WantedSetProblem says why the planner's set, and so the tags'
	// current digests (each image's digest and stale), could not be read.
	WantedSetProblem string `json:"wantedSetProblem,omitempty"`
}

// nodeStatus is one image on one node, as status -o json prints it: Stale
// when the node holds it under an older digest than the one its tag points
// to now (imageRow.Digest).
type nodeStatus struct {
	wire.ImageStatus
	Stale bool `json:"stale,omitempty"`
}

func (o *StatusOptions) print(w io.Writer, s *snapshot) error {
	rows := s.byImage(nil)
	digests := newCurrentDigests(o.set)
	addDigests(rows, s.Images, digests)
	p, err := o.printFlags().printer()
	if err != nil {
		return err
	}
	if p != nil {
		doc := &statusDoc{Nodes: s.Nodes, Images: rows, Status: make([]nodeStatus, len(s.Images)), Problems: s.Problems, Warm: s.Warm,
			WithoutDaemon: s.WithoutDaemon, Ignored: s.Ignored}
		for i, st := range s.Images {
			current, _ := digests.of(st.Image)
			doc.Status[i] = nodeStatus{ImageStatus: st, Stale: cachestate.Stale(st, current)}
		}
		if doc.Nodes == nil {
			doc.Nodes = []string{}
		}
		if o.setErr != nil {
			doc.WantedSetProblem = imageref.Printable(o.setErr.Error())
		}
		return printDocument(p, w, "ImageCacheStatus", doc)
	}
	switch o.Output {
	case "wide":
		if err := o.printWide(w, s, digests); err != nil {
			return err
		}
	default:
		var table [][]string
		for _, r := range rows {
			digest := ""
			if len(r.Digests) == 1 {
				digest = shortDigest(r.Digests[0])
			} else if len(r.Digests) > 1 {
				digest = fmt.Sprintf("%d digests", len(r.Digests))
			}
			table = append(table, []string{imageref.Familiar(r.Image), fmt.Sprintf("%d/%d", r.Cached, r.Nodes),
				staleCell(r), fmt.Sprint(r.Pulling), fmt.Sprint(r.Failed), digest})
		}
		if err := printTable(w, []string{"IMAGE", "CACHED", "STALE", "PULLING", "FAILED", "DIGEST"}, table); err != nil {
			return err
		}
	}
	lines := []string{summary(s, rows), warmLine(s)}
	if o.setErr != nil {
		lines = append(lines, "STALE unknown: "+o.setErr.Error())
	}
	lines = append(lines, uncheckedLines(uncheckedOf(rows))...)
	if n := len(s.WithoutDaemon); n > 0 {
		lines = append(lines, fmt.Sprintf("not counted: prefetch pods on %s without a daemon pod (being removed): %s",
			plural(n, "node"), firstOf(s.WithoutDaemon, ", ")))
	}
	lines = append(lines, ignoredLines(s.Ignored)...)
	for _, p := range s.Problems {
		where := "on node " + strings.Join(p.Nodes, ", ")
		switch {
		case len(p.Nodes) > 1 && len(p.Nodes) == len(s.Nodes):
			where = fmt.Sprintf("on every node (%d)", len(p.Nodes))
		case len(p.Nodes) > 3:
			where = fmt.Sprintf("on %d nodes (%s, ...)", len(p.Nodes), strings.Join(p.Nodes[:3], ", "))
		case len(p.Nodes) > 1:
			where = "on nodes " + strings.Join(p.Nodes, ", ")
		}
		lines = append(lines, fmt.Sprintf("problem %s: %s", where, p.Message))
	}
	for _, l := range lines {
		if l == "" {
			continue
		}
		if _, err := fmt.Fprintln(w, imageref.Printable(l)); err != nil {
			return err
		}
	}
	return nil
}

// printWide streams one row per (node, image): a first pass finds the
// column widths, the second writes each row as it is made, so 100,000 rows
// cost no table in memory. One reference parse per image and one age per
// second of age, not one per row.
//
// DIGEST is the digest the node holds; CURRENT the one the tag points to
// now, only where the node holds another (a stale row stands out, a row
// that is current shows nothing more), "-" where that is not known (see
// the lines under the table).
func (o *StatusOptions) printWide(w io.Writer, s *snapshot, digests currentDigests) error {
	header := []string{"NODE", "IMAGE", "STATE", "DIGEST", "CURRENT", "SINCE", "MESSAGE"}
	widths := make([]int, len(header))
	fit(widths, header...)
	type cells struct{ familiar, current string }
	byImage := map[string]cells{}
	currentCell := func(st wire.ImageStatus) string {
		switch cur := byImage[st.Image].current; {
		case cur == "":
			return "-"
		case cachestate.Stale(st, cur):
			return shortDigest(cur)
		}
		return ""
	}
	ages := make([]string, len(s.Images))
	ageOf := map[time.Duration]string{}
	now := o.now()
	for i, st := range s.Images {
		c, ok := byImage[st.Image]
		if !ok {
			c.familiar = imageref.Familiar(st.Image)
			c.current, _ = digests.of(st.Image)
			byImage[st.Image] = c
		}
		short := c.familiar
		if !st.Since.IsZero() {
			d := now.Sub(st.Since).Truncate(time.Second)
			age, ok := ageOf[d]
			if !ok {
				age = duration.HumanDuration(d)
				ageOf[d] = age
			}
			ages[i] = age
		}
		fit(widths, st.Node, short, string(st.State), shortDigest(st.Digest), currentCell(st), ages[i])
	}
	t, err := newTable(w, widths, header...)
	if err != nil {
		return err
	}
	for i, st := range s.Images {
		msg := st.Message
		if st.Reason != "" {
			msg = st.Reason + ": " + msg
		}
		if err := t.row(st.Node, byImage[st.Image].familiar, string(st.State), shortDigest(st.Digest), currentCell(st), ages[i], msg); err != nil {
			return err
		}
	}
	return t.flush()
}

// ignoredLines name the pods that claim a node but are not the
// installation's, a line each, the first namedAtMost of them: a namespace
// full of them stays a few lines.
func ignoredLines(ignored []ignoredPod) []string {
	var out []string
	for i, p := range ignored {
		if i == namedAtMost {
			out = append(out, fmt.Sprintf("ignored: %s that claim nodes but are not the DaemonSet's", plural(len(ignored)-i, "more pod")))
			break
		}
		what := "claims node " + p.Node
		if p.Component == wire.ComponentPrefetch {
			what = "claims to hold the cache of node " + p.Node
		}
		out = append(out, fmt.Sprintf("ignored: pod %s %s but is not the DaemonSet's", p.Pod, what))
	}
	return out
}

// namedAtMost is how many items a one-line list names before "... (N more)".
const namedAtMost = 5

// firstOf joins the first few of items, and says how many more there are:
// a line about 1,000 nodes stays a line.
func firstOf(items []string, sep string) string {
	if len(items) <= namedAtMost {
		return strings.Join(items, sep)
	}
	return fmt.Sprintf("%s%s... (%d more)", strings.Join(items[:namedAtMost], sep), sep, len(items)-namedAtMost)
}

// warmLine says which nodes are warm (every wanted image cached, as their
// Node condition says), how long warming took, and why the others are not.
func warmLine(s *snapshot) string {
	if len(s.Warm) == 0 {
		return ""
	}
	var warm int
	var took, cold []string
	for _, n := range s.Nodes {
		w := s.Warm[n]
		switch {
		case w == nil:
		case w.Warm:
			warm++
			if w.Took != "" {
				took = append(took, n+" in "+w.Took)
			}
		default:
			cold = append(cold, fmt.Sprintf("%s %s (%s)", n, w.Reason, w.Message))
		}
	}
	line := fmt.Sprintf("warm: %d/%d nodes", warm, len(s.Nodes))
	if len(took) > 0 {
		line += "; warmed up: " + firstOf(took, ", ")
	}
	if len(cold) > 0 {
		line += "; not warm: " + firstOf(cold, "; ")
	}
	return line
}

// summary is the line under the table.
func summary(s *snapshot, rows []imageRow) string {
	var cached, pulling, failed int
	for _, st := range s.Images {
		switch st.State {
		case wire.Cached:
			cached++
		case wire.Failed:
			failed++
		default:
			pulling++
		}
	}
	return fmt.Sprintf("%s on %s: %d cached, %d pulling or pending, %d failed",
		plural(len(rows), "image"), plural(len(s.Nodes), "node"), cached, pulling, failed)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

func (d *statusDoc) DeepCopyObject() runtime.Object {
	c := &statusDoc{}
	copyJSON(d, c)
	return c
}
