package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/source"
)

// snapshot is the cache as the pods of one installation show it, read with
// a single LIST whatever the number of nodes and images.
type snapshot struct {
	// Nodes run a daemon pod: the nodes images are cached on.
	Nodes []string
	// Images holds one status per (node, image) that a prefetch pod holds.
	Images []cachestate.ImageStatus
	// DaemonImage is the image the daemon pods run.
	DaemonImage string
	// Problems are what the daemons report about their sources and
	// limits, each with the nodes whose daemon reports it.
	Problems []problem
	// Warm is each node's warm state as its daemon reports it.
	Warm map[string]*source.Warmth
}

// problem is one thing that keeps daemons from caching, and where.
type problem struct {
	Message string   `json:"message"`
	Nodes   []string `json:"nodes"`
}

func takeSnapshot(ctx context.Context, client kubernetes.Interface, ns string) (*snapshot, error) {
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
		LabelSelector: cachestate.LabelPartOf + "=" + cachestate.PartOf,
	})
	if err != nil {
		return nil, fmt.Errorf("listing the pods of namespace %s: %w", ns, err)
	}
	s := &snapshot{}
	nodes := map[string]bool{}
	byMessage := map[string][]string{}
	var prefetch = pods.Items[:0:0]
	for _, p := range pods.Items {
		switch p.Labels[cachestate.LabelComponent] {
		case cachestate.ComponentPrefetch:
			prefetch = append(prefetch, p)
		case "daemon":
			if p.Spec.NodeName != "" {
				nodes[p.Spec.NodeName] = true
				report, err := healthReport(&p)
				for _, msg := range daemonProblems(&p, report, err) {
					byMessage[msg] = append(byMessage[msg], p.Spec.NodeName)
				}
				if w := report.Warm; w != nil {
					if s.Warm == nil {
						s.Warm = map[string]*source.Warmth{}
					}
					s.Warm[p.Spec.NodeName] = w
				}
			}
			for _, c := range p.Spec.Containers {
				if c.Name == install.ContainerName {
					s.DaemonImage = c.Image
				}
			}
		}
	}
	if len(pods.Items) == 0 {
		// No pod at all: is it installed? One more request, only here.
		if _, err := client.AppsV1().DaemonSets(ns).Get(ctx, install.Name, metav1.GetOptions{}); err != nil {
			return nil, notInstalled(ns, err)
		}
	}
	ptrs := make([]*corev1.Pod, len(prefetch))
	for i := range prefetch {
		ptrs[i] = &prefetch[i]
	}
	s.Images = cachestate.Summarize(ptrs)
	for n := range nodes {
		s.Nodes = append(s.Nodes, n)
	}
	sort.Strings(s.Nodes)
	for msg, on := range byMessage {
		sort.Strings(on)
		s.Problems = append(s.Problems, problem{Message: msg, Nodes: slices.Compact(on)})
	}
	sort.Slice(s.Problems, func(i, j int) bool { return s.Problems[i].Message < s.Problems[j].Message })
	return s, nil
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
// images that no pod holds yet (pending everywhere).
func (s *snapshot) byImage(want []string) []imageRow {
	rows := map[string]*imageRow{}
	row := func(img string) *imageRow {
		if rows[img] == nil {
			rows[img] = &imageRow{Image: img, Nodes: len(s.Nodes)}
		}
		return rows[img]
	}
	seen := map[string]map[string]bool{}
	for _, st := range s.Images {
		r := row(st.Image)
		switch st.State {
		case cachestate.Cached:
			r.Cached++
			if st.Digest != "" && !contains(r.Digests, st.Digest) {
				r.Digests = append(r.Digests, st.Digest)
			}
		case cachestate.Pulling:
			r.Pulling++
		case cachestate.Failed:
			r.Failed++
		default:
			r.Pending++
		}
		if seen[st.Image] == nil {
			seen[st.Image] = map[string]bool{}
		}
		seen[st.Image][st.Node] = true
	}
	for _, img := range want {
		row(img)
	}
	out := make([]imageRow, 0, len(rows))
	for img, r := range rows {
		// Nodes with a daemon but no pod for the image yet.
		for _, n := range s.Nodes {
			if !seen[img][n] {
				r.Pending++
			}
		}
		sort.Strings(r.Digests)
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Image < out[j].Image })
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
