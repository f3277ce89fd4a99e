package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/imageref"
)

// WaitOptions follow images until every node has them.
type WaitOptions struct {
	Enabled bool
	Timeout time.Duration
	// Interval is the least time between two looks at the progress: a
	// watch tells of every change, and a thousand nodes change often.
	Interval time.Duration
}

func defaultWait() WaitOptions {
	return WaitOptions{Timeout: 10 * time.Minute, Interval: time.Second}
}

func (w *WaitOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&w.Enabled, "wait", w.Enabled, "Wait until every node has cached the images; exit 1 if any node fails")
	cmd.Flags().DurationVar(&w.Timeout, "timeout", w.Timeout, "How long --wait waits")
}

func (w *WaitOptions) validate() error {
	if w.Enabled && w.Timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", w.Timeout)
	}
	return nil
}

// run follows the cache with a watch (see follow: the daemons' reports, or
// the pods) and prints a progress line whenever it changes, at most every
// Interval, until every node has cached every image, a node failed (an
// error saying why), or the timeout passed. A pull the kubelet refused
// under its own pull budget is pending, not failed: the kubelet tries
// again.
func (w *WaitOptions) run(ctx context.Context, client kubernetes.Interface, ns string, images []string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	want := map[string]bool{}
	for _, img := range images {
		want[img] = true
	}
	last := ""
	err := follow(ctx, client, ns, followOptions{every: w.Interval, warn: out}, func(s *snapshot) (bool, error) {
		var failures []string
		for _, st := range s.Images {
			if want[st.Image] && st.State == cachestate.Failed {
				failures = append(failures, fmt.Sprintf("%s on node %s: %s: %s", imageref.Familiar(st.Image), st.Node, st.Reason, st.Message))
			}
		}
		done := len(s.Nodes) > 0
		var progress []string
		for _, r := range s.byImage(images) {
			if !want[r.Image] {
				continue
			}
			done = done && r.Cached == r.Nodes
			progress = append(progress, fmt.Sprintf("%s %d/%d", imageref.Familiar(r.Image), r.Cached, r.Nodes))
		}
		line := "cached: " + strings.Join(progress, ", ")
		if line != last {
			fmt.Fprintln(out, imageref.Printable(line))
			last = line
		}
		if len(failures) > 0 {
			return true, fmt.Errorf("%d pull(s) failed:\n  %s", len(failures), strings.Join(failures, "\n  "))
		}
		if done {
			fmt.Fprintf(out, "every node (%d) has %s\n", len(s.Nodes), strings.Join(familiar(images), ", "))
		}
		return done, nil
	})
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %s waiting for %s", w.Timeout, strings.Join(familiar(images), ", "))
		if last != "" {
			err = fmt.Errorf("%w (last: %s)", err, last)
		}
	}
	return err
}

func familiar(images []string) []string {
	out := make([]string, len(images))
	for i, img := range images {
		out[i] = imageref.Familiar(img)
	}
	return out
}
