package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// snapshot is the cache as the pods of one installation show it, read with
// one request whatever the number of nodes and images (see follow).
type snapshot struct {
	// Nodes run a daemon pod: the nodes images are cached on.
	Nodes []string
	// Images holds one status per (node, image) that a prefetch pod holds,
	// on the nodes in Nodes, sorted by node then image.
	Images []wire.ImageStatus
	// WithoutDaemon are the nodes that hold prefetch pods but run no
	// daemon pod (the daemon set left them): not counted anywhere.
	WithoutDaemon []string
	// DaemonImage is the image the daemon pods run.
	DaemonImage string
	// Problems are what the daemons report about their sources and
	// limits, each with the nodes whose daemon reports it.
	Problems []problem
	// Warm is each node's warm state as its daemon reports it.
	Warm map[string]*wire.Warmth
	// Ignored are the pods that claim a node as its daemon or as its
	// cache, but that the installation's live owners do not own (see
	// cachestate.Owners), sorted by name: not counted, named.
	Ignored []ignoredPod
	// needsPods: read from the daemons' reports alone, but some node's
	// daemon has no usable report, or no daemon pod runs on any node.
	needsPods bool
}

// ignoredPod is a pod that claims a node but is not the installation's.
type ignoredPod struct {
	Pod  string `json:"pod"`
	Node string `json:"node"`
	// Component is what it claims to be: daemon or prefetch.
	Component string `json:"component"`
}

// problem is one thing that keeps daemons from caching, and where.
type problem struct {
	Message string   `json:"message"`
	Nodes   []string `json:"nodes"`
}

// takeSnapshot reads the cache once (see follow).
func takeSnapshot(ctx context.Context, client kubernetes.Interface, ns string) (*snapshot, error) {
	var s *snapshot
	err := follow(ctx, client, ns, followOptions{once: true}, func(got *snapshot) (bool, error) {
		s = got
		return true, nil
	})
	return s, err
}

// podRecord is the pods of one installation, cut to what status reads: the
// store a reflector keeps current. It is safe for concurrent use.
type podRecord struct {
	// daemonsOnly: the record holds the daemon pods only, and reads the
	// cache from their reports.
	daemonsOnly bool
	// owners decide which pods count (see cachestate.Owners).
	owners cachestate.Owners
	// reports reads the daemons' reports; used by the reflector's
	// goroutine alone.
	reports wire.ReportReader

	mu       sync.Mutex
	prefetch map[string]*corev1.Pod // by name, the installation's only
	daemons  map[string]daemonPod   // by name
	strays   map[string]ignoredPod  // prefetch-labelled pods not the installation's, by name
	synced   bool
	// changed holds a token when the record changed since the last
	// snapshot.
	changed chan struct{}
	// onSync, if set, runs once, when the record is first filled.
	onSync func()
}

// daemonPod is what status reads from a daemon pod.
type daemonPod struct {
	name string
	node string
	// trusted: the live DaemonSet is its controller.
	trusted bool
	// live: running, not being deleted; created orders pods of one node.
	live     bool
	created  time.Time
	image    string
	problems []string
	warm     *wire.Warmth
	// report is the node's image statuses as the daemon publishes them;
	// nil when it publishes none that can be trusted.
	report []wire.ImageStatus
}

func newPodRecord(daemonsOnly bool, owners cachestate.Owners) *podRecord {
	return &podRecord{daemonsOnly: daemonsOnly, owners: owners, prefetch: map[string]*corev1.Pod{}, daemons: map[string]daemonPod{},
		strays: map[string]ignoredPod{}, changed: make(chan struct{}, 1)}
}

// trimmedPod is a pod cut by trimPod. A type of its own, so the record
// does not cut what the reflector's transform already cut.
type trimmedPod struct {
	corev1.Pod
	// trusted: the installation's live owners own the pod, as the whole
	// pod showed (see podRecord.transform).
	trusted bool
}

// trimPod keeps of a pod what status reads: of a prefetch pod what
// cachestate.FromPod and Summarize read, of a daemon pod what
// daemonProblems and healthReport read. A watch of thousands of pods holds
// a quarter of the memory, since managed fields, volumes, security contexts
// and conditions are most of a pod.
func trimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	t := &trimmedPod{Pod: corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, ResourceVersion: p.ResourceVersion,
			CreationTimestamp: p.CreationTimestamp, DeletionTimestamp: p.DeletionTimestamp},
		Spec: corev1.PodSpec{NodeName: p.Spec.NodeName, Containers: trimContainers(p.Spec.Containers),
			InitContainers: trimContainers(p.Spec.InitContainers)},
		Status: corev1.PodStatus{Phase: p.Status.Phase, Reason: p.Status.Reason, Message: p.Status.Message,
			ContainerStatuses: trimStatuses(p.Status.ContainerStatuses), InitContainerStatuses: trimStatuses(p.Status.InitContainerStatuses)},
	}}
	if c, ok := p.Labels[wire.LabelComponent]; ok {
		t.Labels = map[string]string{wire.LabelComponent: c}
	}
	for _, key := range []string{wire.AnnotationNodeName, wire.AnnotationHealth, wire.AnnotationReport} {
		if v, ok := p.Annotations[key]; ok {
			if t.Annotations == nil {
				t.Annotations = map[string]string{}
			}
			t.Annotations[key] = v
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			t.Status.Conditions = []corev1.PodCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	return t, nil
}

func trimContainers(cs []corev1.Container) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, Image: c.Image}
	}
	return out
}

func trimStatuses(cs []corev1.ContainerStatus) []corev1.ContainerStatus {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(cs))
	for i, c := range cs {
		out[i] = corev1.ContainerStatus{Name: c.Name, State: c.State, ImageID: c.ImageID}
	}
	return out
}

// Transformer makes the record a cache.TransformingStore: the reflector
// cuts a streamed initial list as it arrives, not once it is all read.
func (r *podRecord) Transformer() cache.TransformFunc { return r.transform }

// transform cuts a pod (trimPod), noting first whether the installation's
// live owners own it: that takes fields the cut pod no longer has.
func (r *podRecord) transform(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	cut, err := trimPod(p)
	t, ok := cut.(*trimmedPod)
	if err != nil || !ok {
		return cut, err
	}
	switch p.Labels[wire.LabelComponent] {
	case wire.ComponentPrefetch:
		t.trusted = r.owners.Prefetch(p) == nil
	case wire.ComponentDaemon:
		t.trusted = r.owners.Daemon(p) == nil
	}
	return t, nil
}

// Add files a pod (cache.ReflectorStore, as Update, Delete, Replace and
// Resync).
func (r *podRecord) Add(obj any) error { return r.Update(obj) }

// Resync has nothing to do: the record is no queue.
func (r *podRecord) Resync() error { return nil }

// Update files a pod again.
func (r *podRecord) Update(obj any) error {
	t := r.cut(obj)
	r.mu.Lock()
	r.put(r.prefetch, r.daemons, r.strays, t)
	r.mu.Unlock()
	r.notify()
	return nil
}

// Delete forgets a pod.
func (r *podRecord) Delete(obj any) error {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if p, ok := obj.(metav1.Object); ok {
		r.mu.Lock()
		delete(r.prefetch, p.GetName())
		delete(r.daemons, p.GetName())
		delete(r.strays, p.GetName())
		r.mu.Unlock()
		r.notify()
	}
	return nil
}

// Replace files a complete list of the pods, read anew.
func (r *podRecord) Replace(list []any, _ string) error {
	prefetch, daemons, strays := make(map[string]*corev1.Pod, len(list)), map[string]daemonPod{}, map[string]ignoredPod{}
	for _, obj := range list {
		r.put(prefetch, daemons, strays, r.cut(obj))
	}
	r.mu.Lock()
	r.prefetch, r.daemons, r.strays = prefetch, daemons, strays
	first := !r.synced
	r.synced = true
	r.mu.Unlock()
	if first && r.onSync != nil {
		r.onSync()
	}
	r.notify()
	return nil
}

func (r *podRecord) notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// cut is obj as the reflector's transform leaves it (nil if it is no pod).
func (r *podRecord) cut(obj any) *trimmedPod {
	if t, ok := obj.(*trimmedPod); ok {
		return t
	}
	t, _ := r.transform(obj)
	cut, _ := t.(*trimmedPod)
	return cut
}

// put files a pod under its component: a prefetch pod the installation does
// not own among the strays, a daemon pod with its image report when the
// record reads reports.
func (r *podRecord) put(prefetch map[string]*corev1.Pod, daemons map[string]daemonPod, strays map[string]ignoredPod, t *trimmedPod) {
	if t == nil {
		return
	}
	p := &t.Pod
	delete(prefetch, p.Name)
	delete(daemons, p.Name)
	delete(strays, p.Name)
	switch p.Labels[wire.LabelComponent] {
	case wire.ComponentPrefetch:
		if t.trusted {
			prefetch[p.Name] = p
		} else if n := cachestate.Node(p); n != "" {
			strays[p.Name] = ignoredPod{Pod: p.Name, Node: imageref.Printable(n), Component: wire.ComponentPrefetch}
		}
	case wire.ComponentDaemon:
		report, err := healthReport(p)
		d := daemonPod{name: p.Name, node: p.Spec.NodeName, trusted: t.trusted, created: p.CreationTimestamp.Time,
			live: p.DeletionTimestamp == nil && daemonRunning(p), problems: daemonProblems(p, report, err), warm: report.Warm}
		// What a terminal would act on is escaped once, here: status,
		// add --wait and version print it, as tables, lines or -o json.
		for i, msg := range d.problems {
			d.problems[i] = imageref.Printable(msg)
		}
		if w := d.warm; w != nil {
			w.Reason, w.Message, w.Took = imageref.Printable(w.Reason), imageref.Printable(w.Message), imageref.Printable(w.Took)
		}
		if r.daemonsOnly && t.trusted {
			d.report = imageReport(&r.reports, p)
		}
		for _, c := range p.Spec.Containers {
			if c.Name == install.ContainerName {
				d.image = imageref.Printable(c.Image)
			}
		}
		daemons[p.Name] = d
	}
}

// filled reports whether the pods were read once.
func (r *podRecord) filled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.synced
}

// snapshot reads the cache from the record: the image statuses of each node
// that runs a daemon pod, from its daemon's report or from its prefetch
// pods, and the daemons' health reports. Only the installation's pods
// count; the others that claim a node are named in s.Ignored. Where several
// daemon pods of the installation are on one node (a rolling update), one
// speaks for it: live before not, then the newest, then the first by name.
func (r *podRecord) snapshot() *snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &snapshot{}
	byNode := map[string]daemonPod{}
	firstDaemon := ""
	for name, d := range r.daemons {
		switch {
		case d.node == "":
			continue
		case !d.trusted:
			s.Ignored = append(s.Ignored, ignoredPod{Pod: name, Node: d.node, Component: wire.ComponentDaemon})
			continue
		}
		if firstDaemon == "" || name < firstDaemon {
			firstDaemon, s.DaemonImage = name, d.image
		}
		if other, ok := byNode[d.node]; !ok || speaksBefore(d, other) {
			byNode[d.node] = d
		}
	}
	for _, st := range r.strays {
		s.Ignored = append(s.Ignored, st)
	}
	slices.SortFunc(s.Ignored, func(a, b ignoredPod) int { return strings.Compare(a.Pod, b.Pod) })

	byMessage := map[string][]string{}
	for node, d := range byNode {
		s.Nodes = append(s.Nodes, node)
		for _, msg := range d.problems {
			byMessage[msg] = append(byMessage[msg], node)
		}
		if d.warm != nil {
			if s.Warm == nil {
				s.Warm = map[string]*wire.Warmth{}
			}
			s.Warm[node] = d.warm
		}
	}
	slices.Sort(s.Nodes)

	if r.daemonsOnly {
		s.fromReports(byNode)
	} else {
		r.fromPods(s)
	}

	for msg, on := range byMessage {
		slices.Sort(on)
		s.Problems = append(s.Problems, problem{Message: msg, Nodes: on})
	}
	slices.SortFunc(s.Problems, func(a, b problem) int { return strings.Compare(a.Message, b.Message) })
	return s
}

// speaksBefore orders the daemon pods of one node (see snapshot).
func speaksBefore(a, b daemonPod) bool {
	switch {
	case a.live != b.live:
		return a.live
	case !a.created.Equal(b.created):
		return a.created.After(b.created)
	}
	return a.name < b.name
}

// fromReports fills s.Images from the reports of the daemons that speak for
// the nodes, and says whether the prefetch pods must be read instead.
func (s *snapshot) fromReports(byNode map[string]daemonPod) {
	// Without a daemon on any node, only the pods can say whether
	// prefetch pods are left on nodes without one.
	s.needsPods = len(s.Nodes) == 0
	for _, n := range s.Nodes {
		st := byNode[n].report
		if st == nil {
			s.needsPods = true
		}
		s.Images = append(s.Images, st...)
	}
}

// fromPods fills s.Images from the prefetch pods of the nodes in s.Nodes,
// one node at a time (the rows come out sorted without sorting them all),
// and s.WithoutDaemon with the nodes of the others.
func (r *podRecord) fromPods(s *snapshot) {
	byNode := make(map[string][]*corev1.Pod, len(s.Nodes))
	rows := 0
	for _, p := range r.prefetch {
		if n := cachestate.Node(p); n != "" {
			byNode[n] = append(byNode[n], p)
			rows += len(p.Spec.Containers)
		}
	}
	s.Images = make([]wire.ImageStatus, 0, rows)
	for _, n := range s.Nodes {
		s.Images = append(s.Images, cachestate.Summarize(byNode[n])...)
		delete(byNode, n)
	}
	// The kubelet's messages hold what registries answered; a report
	// holds nothing imageref.Printable would change (wire.DecodeReport).
	for i := range s.Images {
		st := &s.Images[i]
		st.Image, st.Digest, st.Pod = imageref.Printable(st.Image), imageref.Printable(st.Digest), imageref.Printable(st.Pod)
		st.Reason, st.Message = imageref.Printable(st.Reason), imageref.Printable(st.Message)
	}
	for n := range byNode {
		s.WithoutDaemon = append(s.WithoutDaemon, n)
	}
	slices.Sort(s.WithoutDaemon)
}

// healthReport reads the health report a daemon publishes on its pod: an
// empty one when there is none yet (an older daemon, or one just started).
func healthReport(p *corev1.Pod) (*wire.HealthReport, error) {
	r := &wire.HealthReport{}
	raw, ok := p.Annotations[wire.AnnotationHealth]
	if !ok {
		return r, nil
	}
	if err := json.Unmarshal([]byte(raw), r); err != nil {
		return &wire.HealthReport{}, err
	}
	return r, nil
}

// imageReport reads the node's image statuses that a daemon publishes on
// its pod: nil when there are none to trust, because the daemon does not
// run (crashed, restarting, being deleted: its last report may be stale; a
// daemon that starts again first removes it), publishes none (an older
// daemon, or statuses too large for an annotation) or one that does not
// read.
func imageReport(reports *wire.ReportReader, p *corev1.Pod) []wire.ImageStatus {
	raw, ok := p.Annotations[wire.AnnotationReport]
	if !ok || p.DeletionTimestamp != nil || p.Spec.NodeName == "" || !daemonRunning(p) {
		return nil
	}
	st, err := reports.Decode(p.Spec.NodeName, raw)
	if err != nil {
		return nil
	}
	if st == nil {
		st = []wire.ImageStatus{} // a report of no image is a report
	}
	return st
}

// daemonRunning reports whether the daemon container of a daemon pod runs.
func daemonRunning(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == install.ContainerName {
			return cs.State.Running != nil
		}
	}
	return false
}

// daemonProblems says what keeps a daemon from caching: its pod's
// readiness, and r, the health report it publishes (readErr if that does not
// read).
func daemonProblems(p *corev1.Pod, r *wire.HealthReport, readErr error) []string {
	var out []string
	if p.Status.Phase == corev1.PodRunning {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue {
				out = append(out, "the daemon is not ready (kubectl describe pod shows why)")
			}
		}
	} else if p.Status.Phase != "" && p.DeletionTimestamp == nil {
		out = append(out, fmt.Sprintf("the daemon pod is %s", p.Status.Phase))
	}
	if readErr != nil {
		return append(out, fmt.Sprintf("the daemon's health report does not read: %v", readErr))
	}
	for _, h := range r.Sources {
		switch {
		case h.Problem != "":
			out = append(out, fmt.Sprintf("source %s cannot read: %s", h.Source, h.Problem))
		case !h.Synced:
			out = append(out, fmt.Sprintf("source %s has not synced yet", h.Source))
		}
		if h.Skipped > 0 {
			msg := fmt.Sprintf("source %s skipped %s (%s", h.Source, plural(h.Skipped, "object"), strings.Join(h.SkippedSample, ", "))
			if h.Skipped > len(h.SkippedSample) {
				msg += ", ..."
			}
			out = append(out, msg+"): kubectl imagecache list says why")
		}
	}
	if r.OverLimit > 0 {
		var sample []string
		for _, img := range r.OverLimitSample {
			sample = append(sample, fmt.Sprintf("%s (wanted by %s)", imageref.Familiar(img.Image), strings.Join(img.Origins, ", ")))
		}
		out = append(out, fmt.Sprintf("%s over the daemon's limits (--max-images, --max-prefetch-pods) not cached: %s",
			plural(r.OverLimit, "wanted image"), strings.Join(sample, "; ")))
	}
	return out
}

// imageRow is one image across all nodes.
type imageRow struct {
	Image   string   `json:"image"`
	Cached  int      `json:"cached"`
	Pulling int      `json:"pulling"`
	Failed  int      `json:"failed"`
	Pending int      `json:"pending"`
	Nodes   int      `json:"nodes"`
	Digests []string `json:"digests,omitempty"`
	// Digest is the digest the tag points to now, as the planner's set
	// gives it (addDigests; a pinned reference's own); Stale counts the
	// nodes that hold another (nil when Digest is not known); Unchecked
	// says why the planner could not check the tag.
	Digest    string `json:"digest,omitempty"`
	Stale     *int   `json:"stale,omitempty"`
	Unchecked string `json:"unchecked,omitempty"`
}

// byImage folds the per-node statuses into one row per image; want adds
// images that no pod holds yet (pending everywhere). Images holds at most
// one status per (node, image), all on nodes in Nodes, so the nodes without
// a status for an image are its count of nodes minus its statuses.
func (s *snapshot) byImage(want []string) []imageRow {
	rows := map[string]*imageRow{}
	row := func(img string) *imageRow {
		r := rows[img]
		if r == nil {
			r = &imageRow{Image: img, Nodes: len(s.Nodes), Pending: len(s.Nodes)}
			rows[img] = r
		}
		return r
	}
	for _, st := range s.Images {
		r := row(st.Image)
		switch st.State {
		case wire.Cached:
			r.Cached++
			if st.Digest != "" && !slices.Contains(r.Digests, st.Digest) {
				r.Digests = append(r.Digests, st.Digest)
			}
		case wire.Pulling:
			r.Pulling++
		case wire.Failed:
			r.Failed++
		default:
			continue // pending: counted already
		}
		r.Pending--
	}
	for _, img := range want {
		row(img)
	}
	out := make([]imageRow, 0, len(rows))
	for _, r := range rows {
		sort.Strings(r.Digests)
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b imageRow) int { return strings.Compare(a.Image, b.Image) })
	return out
}

// same reports whether s and t show the same: pods change in ways status
// does not show (the kubelet's conditions, a daemon's report rewritten).
func (s *snapshot) same(t *snapshot) bool {
	return slices.Equal(s.Nodes, t.Nodes) && slices.Equal(s.WithoutDaemon, t.WithoutDaemon) &&
		s.DaemonImage == t.DaemonImage && reflect.DeepEqual(s.Problems, t.Problems) && reflect.DeepEqual(s.Warm, t.Warm) &&
		slices.EqualFunc(s.Images, t.Images, func(a, b wire.ImageStatus) bool {
			return a.Since.Equal(b.Since) && a.Node == b.Node && a.Image == b.Image && a.State == b.State &&
				a.Digest == b.Digest && a.Reason == b.Reason && a.Message == b.Message && a.Pod == b.Pod
		})
}
