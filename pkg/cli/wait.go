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

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
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
	cmd.Flags().BoolVar(&w.Enabled, "wait", w.Enabled, "Wait until every node has cached the images, each at the digest its tag points to now where the planner could check it (a node that holds an older one pulls it again); exit 1 if any node fails")
	cmd.Flags().DurationVar(&w.Timeout, "timeout", w.Timeout, "How long --wait waits")
}

func (w *WaitOptions) validate() error {
	if w.Enabled && w.Timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", w.Timeout)
	}
	return nil
}

// setRefresh is how often add --wait reads the planner's set again.
const setRefresh = 5 * time.Second

// run follows the cache with a watch (see follow: the daemons' reports, or
// the pods) and prints a progress line whenever it changes, at most every
// Interval, until every node has cached every image, a node failed (an
// error saying why), or the timeout passed. Where the planner's set gives
// the digest an image's tag points to now, a node that holds another (it
// pulls the tag again) has not cached it yet; where it gives none (the
// planner could not check the tag, or the set cannot be read), any digest
// will do. A pull the kubelet refused under its own pull budget is
// pending, not failed: the kubelet tries again.
func (w *WaitOptions) run(ctx context.Context, client kubernetes.Interface, ns string, images []string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	want := map[string]bool{}
	for _, img := range images {
		want[img] = true
	}
	last, told := "", false
	sets := &setReader{client: client, ns: ns, every: setRefresh}
	err := follow(ctx, client, ns, followOptions{every: w.Interval, refresh: setRefresh, warn: out}, func(s *snapshot) (bool, error) {
		var failures []string
		for _, st := range s.Images {
			if want[st.Image] && st.State == wire.Failed {
				failures = append(failures, fmt.Sprintf("%s on node %s: %s: %s", imageref.Familiar(st.Image), st.Node, st.Reason, st.Message))
			}
		}
		done := len(s.Nodes) > 0
		var progress []string
		rows := s.byImage(images)
		set, err := sets.get(ctx)
		if err != nil && !told {
			// Without the set, the images cached at any digest will do.
			fmt.Fprintln(out, imageref.Printable("any digest will do: "+err.Error()))
			told = true
		}
		addDigests(rows, s.Images, newCurrentDigests(set))
		for _, r := range rows {
			if !want[r.Image] {
				continue
			}
			stale := 0
			if r.Stale != nil {
				stale = *r.Stale
			}
			done = done && r.Cached == r.Nodes && stale == 0
			p := fmt.Sprintf("%s %d/%d", imageref.Familiar(r.Image), r.Cached, r.Nodes)
			if stale > 0 {
				p += fmt.Sprintf(" (%d at an older digest)", stale)
			}
			progress = append(progress, p)
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
