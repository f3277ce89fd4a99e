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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/source"
)

// componentDaemon is the component label of the daemon pods.
const componentDaemon = "daemon"

// snapshot is the cache as the pods of one installation show it, read with
// one request whatever the number of nodes and images (see follow).
type snapshot struct {
	// Nodes run a daemon pod: the nodes images are cached on.
	Nodes []string
	// Images holds one status per (node, image) that a prefetch pod holds,
	// on the nodes in Nodes, sorted by node then image.
	Images []cachestate.ImageStatus
	// WithoutDaemon are the nodes that hold prefetch pods but run no
	// daemon pod (the daemon set left them): not counted anywhere.
	WithoutDaemon []string
	// DaemonImage is the image the daemon pods run.
	DaemonImage string
	// Problems are what the daemons report about their sources and
	// limits, each with the nodes whose daemon reports it.
	Problems []problem
	// Warm is each node's warm state as its daemon reports it.
	Warm map[string]*source.Warmth
	// needsPods: read from the daemons' reports alone, but some node's
	// daemon has no usable report, or no daemon pod runs on any node.
	needsPods bool
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

	mu       sync.Mutex
	prefetch map[string]*corev1.Pod // by name
	daemons  map[string]daemonPod   // by name
	synced   bool
	// changed holds a token when the record changed since the last
	// snapshot.
	changed chan struct{}
	// onSync, if set, runs once, when the record is first filled.
	onSync func()
}

// daemonPod is what status reads from a daemon pod.
type daemonPod struct {
	node     string
	image    string
	problems []string
	warm     *source.Warmth
	// report is the node's image statuses as the daemon publishes them;
	// nil when it publishes none that can be trusted.
	report []cachestate.ImageStatus
}

func newPodRecord(daemonsOnly bool) *podRecord {
	return &podRecord{daemonsOnly: daemonsOnly, prefetch: map[string]*corev1.Pod{}, daemons: map[string]daemonPod{}, changed: make(chan struct{}, 1)}
}

// trimmedPod is a pod cut by trimPod. A type of its own, so the record
// does not cut what the reflector's transform already cut.
type trimmedPod struct{ corev1.Pod }

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
	t := &trimmedPod{corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, ResourceVersion: p.ResourceVersion,
			CreationTimestamp: p.CreationTimestamp, DeletionTimestamp: p.DeletionTimestamp},
		Spec: corev1.PodSpec{NodeName: p.Spec.NodeName, Containers: trimContainers(p.Spec.Containers),
			InitContainers: trimContainers(p.Spec.InitContainers)},
		Status: corev1.PodStatus{Phase: p.Status.Phase, Reason: p.Status.Reason, Message: p.Status.Message,
			ContainerStatuses: trimStatuses(p.Status.ContainerStatuses), InitContainerStatuses: trimStatuses(p.Status.InitContainerStatuses)},
	}}
	if c, ok := p.Labels[cachestate.LabelComponent]; ok {
		t.Labels = map[string]string{cachestate.LabelComponent: c}
	}
	for _, key := range []string{cachestate.AnnotationNodeName, source.HealthAnnotation, cachestate.AnnotationReport} {
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
func (r *podRecord) Transformer() cache.TransformFunc { return trimPod }

// Add files a pod (cache.ReflectorStore, as Update, Delete, Replace and
// Resync).
func (r *podRecord) Add(obj any) error { return r.Update(obj) }

// Resync has nothing to do: the record is no queue.
func (r *podRecord) Resync() error { return nil }

// Update files a pod again.
func (r *podRecord) Update(obj any) error {
	r.mu.Lock()
	put(r.prefetch, r.daemons, obj, r.daemonsOnly)
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
		r.mu.Unlock()
		r.notify()
	}
	return nil
}

// Replace files a complete list of the pods, read anew.
func (r *podRecord) Replace(list []any, _ string) error {
	prefetch, daemons := make(map[string]*corev1.Pod, len(list)), map[string]daemonPod{}
	for _, obj := range list {
		put(prefetch, daemons, obj, r.daemonsOnly)
	}
	r.mu.Lock()
	r.prefetch, r.daemons = prefetch, daemons
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

// put files a pod under its component, with a daemon's image report if
// reports is set.
func put(prefetch map[string]*corev1.Pod, daemons map[string]daemonPod, obj any, reports bool) {
	t, ok := obj.(*trimmedPod)
	if !ok {
		cut, _ := trimPod(obj)
		if t, ok = cut.(*trimmedPod); !ok {
			return
		}
	}
	p := &t.Pod
	delete(prefetch, p.Name)
	delete(daemons, p.Name)
	switch p.Labels[cachestate.LabelComponent] {
	case cachestate.ComponentPrefetch:
		prefetch[p.Name] = p
	case componentDaemon:
		report, err := healthReport(p)
		d := daemonPod{node: p.Spec.NodeName, problems: daemonProblems(p, report, err), warm: report.Warm}
		if reports {
			d.report = imageReport(p)
		}
		for _, c := range p.Spec.Containers {
			if c.Name == install.ContainerName {
				d.image = c.Image
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

// empty reports whether the record holds no pod at all.
func (r *podRecord) empty() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.prefetch) == 0 && len(r.daemons) == 0
}

// snapshot reads the cache from the record: the image statuses of each node
// that runs a daemon pod, from its daemon's report or from its prefetch
// pods, and the daemons' health reports.
func (r *podRecord) snapshot() *snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &snapshot{}
	byMessage := map[string][]string{}
	firstDaemon := ""
	for name, d := range r.daemons {
		if firstDaemon == "" || name < firstDaemon {
			firstDaemon, s.DaemonImage = name, d.image
		}
		if d.node == "" {
			continue
		}
		s.Nodes = append(s.Nodes, d.node)
		for _, msg := range d.problems {
			byMessage[msg] = append(byMessage[msg], d.node)
		}
		if d.warm != nil {
			if s.Warm == nil {
				s.Warm = map[string]*source.Warmth{}
			}
			s.Warm[d.node] = d.warm
		}
	}
	slices.Sort(s.Nodes)
	s.Nodes = slices.Compact(s.Nodes)

	if r.daemonsOnly {
		r.fromReports(s)
	} else {
		r.fromPods(s)
	}

	for msg, on := range byMessage {
		slices.Sort(on)
		s.Problems = append(s.Problems, problem{Message: msg, Nodes: slices.Compact(on)})
	}
	slices.SortFunc(s.Problems, func(a, b problem) int { return strings.Compare(a.Message, b.Message) })
	return s
}

// fromReports fills s.Images from the daemons' reports, and says whether
// the prefetch pods must be read instead.
func (r *podRecord) fromReports(s *snapshot) {
	reports := make(map[string][]cachestate.ImageStatus, len(s.Nodes))
	for _, d := range r.daemons {
		if d.node != "" && d.report != nil {
			reports[d.node] = d.report
		}
	}
	// Without a daemon on any node, only the pods can say whether
	// prefetch pods are left on nodes without one.
	s.needsPods = len(s.Nodes) == 0
	for _, n := range s.Nodes {
		st, ok := reports[n]
		if !ok {
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
	s.Images = make([]cachestate.ImageStatus, 0, rows)
	for _, n := range s.Nodes {
		s.Images = append(s.Images, cachestate.Summarize(byNode[n])...)
		delete(byNode, n)
	}
	for n := range byNode {
		s.WithoutDaemon = append(s.WithoutDaemon, n)
	}
	slices.Sort(s.WithoutDaemon)
}

// healthReport reads the health report a daemon publishes on its pod: an
// empty one when there is none yet (an older daemon, or one just started).
func healthReport(p *corev1.Pod) (*source.HealthReport, error) {
	r := &source.HealthReport{}
	raw, ok := p.Annotations[source.HealthAnnotation]
	if !ok {
		return r, nil
	}
	if err := json.Unmarshal([]byte(raw), r); err != nil {
		return &source.HealthReport{}, err
	}
	return r, nil
}

// imageReport reads the node's image statuses that a daemon publishes on
// its pod: nil when there are none to trust, because the daemon does not
// run (crashed, restarting, being deleted: its last report may be stale; a
// daemon that starts again first removes it), publishes none (an older
// daemon, or statuses too large for an annotation) or one that does not
// read.
func imageReport(p *corev1.Pod) []cachestate.ImageStatus {
	raw, ok := p.Annotations[cachestate.AnnotationReport]
	if !ok || p.DeletionTimestamp != nil || p.Spec.NodeName == "" || !daemonRunning(p) {
		return nil
	}
	st, err := cachestate.DecodeReport(p.Spec.NodeName, raw)
	if err != nil {
		return nil
	}
	if st == nil {
		st = []cachestate.ImageStatus{} // a report of no image is a report
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
func daemonProblems(p *corev1.Pod, r *source.HealthReport, readErr error) []string {
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
		case cachestate.Cached:
			r.Cached++
			if st.Digest != "" && !slices.Contains(r.Digests, st.Digest) {
				r.Digests = append(r.Digests, st.Digest)
			}
		case cachestate.Pulling:
			r.Pulling++
		case cachestate.Failed:
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
		slices.EqualFunc(s.Images, t.Images, func(a, b cachestate.ImageStatus) bool {
			return a.Since.Equal(b.Since) && a.Node == b.Node && a.Image == b.Image && a.State == b.State &&
				a.Digest == b.Digest && a.Reason == b.Reason && a.Message == b.Message && a.Pod == b.Pod
		})
}
