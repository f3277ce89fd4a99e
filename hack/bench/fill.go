package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/dcherman/image-cache-daemon/internal/ociimage"
	"github.com/dcherman/image-cache-daemon/internal/testcluster"
	"github.com/dcherman/image-cache-daemon/pkg/imagelist"
	"github.com/dcherman/image-cache-daemon/pkg/install"
)

// work is one cache fill to measure: n fresh images of size bytes each.
type work struct {
	n    int
	size int64
	// goal is printed with the figure.
	goal string
}

func (w work) String() string {
	if w.size >= 1<<20 {
		return fmt.Sprintf("%d x %d MiB", w.n, w.size>>20)
	}
	return fmt.Sprintf("%d x %d KiB", w.n, w.size>>10)
}

// goals are the goals of the fills in the README's table.
var goals = map[string]string{
	"20 x 4 MiB":   "cached / bare <= 1.5",
	"10 x 64 MiB":  "cached / bare <= 1.05",
	"100 x 64 KiB": "cached <= 1.2 x the kubelet's floor, and at least 2x faster than one pod per image",
}

// parseWorks reads "20x4MiB,100x64KiB".
func parseWorks(s string) ([]work, error) {
	var out []work
	for _, f := range strings.Split(s, ",") {
		var w work
		var unit string
		if _, err := fmt.Sscanf(strings.TrimSpace(f), "%dx%d%s", &w.n, &w.size, &unit); err != nil || w.n < 1 || w.size < 1 {
			return nil, fmt.Errorf("%q is not N x SIZE (e.g. 20x4MiB)", f)
		}
		switch unit {
		case "KiB":
			w.size <<= 10
		case "MiB":
			w.size <<= 20
		default:
			return nil, fmt.Errorf("%q: the size is in KiB or MiB", f)
		}
		w.goal = goals[w.String()]
		out = append(out, w)
	}
	return out, nil
}

// The kubelet's defaults, which the local cluster keeps: registryPullQPS and
// registryBurst.
const (
	kubeletPullQPS   = 5.0
	kubeletPullBurst = 10
)

// installs are the two installations a fill is measured with, side by side
// on the node, each reading only its own namespace's image list: this
// project as shipped, and the original's model (one pod per image, no
// pacing).
type installs struct {
	project, original install.Options
}

func (b *bench) fillInstalls(ctx context.Context, base install.Options) (installs, error) {
	p := base
	p.SourceNamespaces = []string{p.Namespace}
	o := base
	o.Namespace = base.Namespace + "-original"
	o.SourceNamespaces = []string{o.Namespace}
	// The original made a pod per image, all at once; --max-prefetch-pods
	// is raised so that only the node's pod capacity bounds them.
	o.RegistryPullQPS = 0
	o.ExtraArgs = []string{"--batch-size=1", "--max-prefetch-pods=1000"}
	for _, opts := range []install.Options{p, o} {
		if err := b.apply(ctx, opts); err != nil {
			return installs{}, err
		}
	}
	return installs{project: p, original: o}, nil
}

// trial is what one trial of a fill measured.
type trial struct {
	bare, sumBare, cached, original time.Duration
	refusedCached, refusedOriginal  int
	pods                            int // prefetch pods of the project's fill
}

// fill measures each work trials times: bare sequential `crictl pull`,
// this project, and the original's model, each on its own fresh images.
// base is the project's installation, given back at the end.
func (b *bench) fill(ctx context.Context, base install.Options, works []work, trials int) error {
	in, err := b.fillInstalls(ctx, base)
	if err != nil {
		return err
	}
	defer func() {
		if a, err := testcluster.Applier(b.cfg, b.kube); err == nil {
			_, _ = a.Uninstall(context.Background(), in.original.Namespace)
		}
		_ = b.apply(context.Background(), base)
	}()
	fmt.Printf("cache fill, %d trials each, fresh images every trial; the kubelet admits %g pulls a second, bursts of %d\n",
		trials, kubeletPullQPS, kubeletPullBurst)
	for _, w := range works {
		var ts []trial
		for i := range trials {
			t, err := b.fillTrial(ctx, in, w)
			if err != nil {
				return fmt.Errorf("%s, trial %d: %w", w, i+1, err)
			}
			fmt.Printf("  %s trial %d: bare %s (sum of pulls %s), cached %s in %d pods (%d refused), one pod per image %s (%d refused)\n",
				w, i+1, ms(t.bare), ms(t.sumBare), ms(t.cached), t.pods, t.refusedCached, ms(t.original), t.refusedOriginal)
			ts = append(ts, t)
		}
		printFill(w, ts)
	}
	return nil
}

func ms(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }

func printFill(w work, ts []trial) {
	var bare, cached, original, ratio, originalRatio, floorRatio, speedup []float64
	refusedCached, refusedOriginal := 0, 0
	for _, t := range ts {
		bare = append(bare, t.bare.Seconds())
		cached = append(cached, t.cached.Seconds())
		original = append(original, t.original.Seconds())
		ratio = append(ratio, t.cached.Seconds()/t.bare.Seconds())
		originalRatio = append(originalRatio, t.original.Seconds()/t.bare.Seconds())
		floor := max(t.sumBare.Seconds(), float64(w.n-kubeletPullBurst)/kubeletPullQPS)
		floorRatio = append(floorRatio, t.cached.Seconds()/floor)
		speedup = append(speedup, t.original.Seconds()/t.cached.Seconds())
		refusedCached += t.refusedCached
		refusedOriginal += t.refusedOriginal
	}
	fmt.Printf("%s: bare crictl pull %s s; this project %s s, ratio %s; one pod per image %s s, ratio %s\n",
		w, spread(bare, 2), spread(cached, 2), spread(ratio, 2), spread(original, 2), spread(originalRatio, 2))
	fmt.Printf("%s: over the kubelet's floor max(sum of pulls, (N - burst) / QPS): %s; one pod per image / this project: %s; \"pull QPS exceeded\": %d (one pod per image: %d); goal: %s\n",
		w, spread(floorRatio, 2), spread(speedup, 2), refusedCached, refusedOriginal, w.goal)
}

// spread prints the median and the range of v with prec decimals:
// "1.23 (1.10-1.40)".
func spread(v []float64, prec int) string {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return fmt.Sprintf("%.*f (%.*f-%.*f)", prec, s[len(s)/2], prec, s[0], prec, s[len(s)-1])
}

func (b *bench) fillTrial(ctx context.Context, in installs, w work) (trial, error) {
	var t trial
	sets := make([][]string, 3) // bare, project, original
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for s := range sets {
		sets[s] = make([]string, w.n)
		for i := range w.n {
			g.Go(func() error {
				ref, err := b.pushFresh(gctx, fmt.Sprintf("bench/fill-%d", i), w.size)
				sets[s][i] = ref
				return err
			})
		}
	}
	if err := g.Wait(); err != nil {
		return t, err
	}
	defer b.removeImages(append(append(append([]string(nil), sets[0]...), sets[1]...), sets[2]...))

	var err error
	if t.bare, t.sumBare, err = b.crictlPulls(ctx, sets[0]); err != nil {
		return t, err
	}
	if t.cached, t.refusedCached, t.pods, err = b.timeFill(ctx, in.project.Namespace, sets[1]); err != nil {
		return t, fmt.Errorf("this project: %w", err)
	}
	if t.original, t.refusedOriginal, _, err = b.timeFill(ctx, in.original.Namespace, sets[2]); err != nil {
		return t, fmt.Errorf("one pod per image: %w", err)
	}
	return t, nil
}

// pushFresh pushes an image of size bytes of fresh random content (one
// layer, nothing shared with any other image) and returns its reference.
func (b *bench) pushFresh(ctx context.Context, repo string, size int64) (string, error) {
	img, err := ociimage.Random(size, uint64(rand.Int()), 1)
	if err != nil {
		return "", err
	}
	ref := b.registry + "/" + repo + ":" + rand.String(8)
	_, err = ociimage.Push(ctx, img, ref)
	return ref, err
}

// crictlPulls pulls images one after another with crictl, straight from
// containerd (no kubelet, no limit), and returns the total time and the
// sum of the pulls alone.
func (b *bench) crictlPulls(ctx context.Context, images []string) (total, sum time.Duration, err error) {
	b.settle()
	start := time.Now()
	for _, img := range images {
		s := time.Now()
		if out, err := b.crictl(ctx, "pull", img); err != nil {
			return 0, 0, fmt.Errorf("crictl pull %s: %w: %s", img, err, out)
		}
		sum += time.Since(s)
	}
	return time.Since(start), sum, nil
}

func (b *bench) crictl(ctx context.Context, args ...string) ([]byte, error) {
	sock := "unix://" + b.containerd
	cmd := exec.CommandContext(ctx, b.crictlPath, append([]string{"--runtime-endpoint", sock, "--image-endpoint", sock}, args...)...)
	return cmd.CombinedOutput()
}

// removeImages removes the trial's images from the node, so that the disk
// does not fill over the trials (their content goes once no container
// refers to it; the next trial uses fresh images anyway).
func (b *bench) removeImages(images []string) {
	for _, img := range images {
		_, _ = b.crictl(context.Background(), "rmi", img)
	}
}

// settle waits until the kubelet's pull bucket is full again, so that every
// measurement starts from the same budget.
func (b *bench) settle() {
	time.Sleep(time.Duration(float64(kubeletPullBurst)/kubeletPullQPS*float64(time.Second)) + time.Second)
}

// timeFill sets the image list of the installation in ns to images, and
// returns the time until every one is cached on the node, the pulls the
// kubelet refused meanwhile ("pull QPS exceeded" Events) and the prefetch
// pods it took. It then empties the list and waits until the pods are gone.
func (b *bench) timeFill(ctx context.Context, ns string, images []string) (time.Duration, int, int, error) {
	b.settle()
	before, err := testcluster.RefusedPulls(ctx, b.kube, ns)
	if err != nil {
		return 0, 0, 0, err
	}
	start := time.Now()
	if _, err := imagelist.Edit(ctx, b.kube, ns, install.DefaultConfigMap, func([]string) []string { return images }); err != nil {
		return 0, 0, 0, err
	}
	if err := b.waitCached(ctx, ns, images); err != nil {
		return 0, 0, 0, err
	}
	took := time.Since(start)
	pods, err := testcluster.PrefetchPods(ctx, b.kube, ns)
	if err != nil {
		return 0, 0, 0, err
	}
	after, err := testcluster.RefusedPulls(ctx, b.kube, ns)
	if err != nil {
		return 0, 0, 0, err
	}
	refused := 0
	for uid, n := range after {
		refused += n - before[uid]
	}
	if _, err := imagelist.Edit(ctx, b.kube, ns, install.DefaultConfigMap, func([]string) []string { return nil }); err != nil {
		return 0, 0, 0, err
	}
	return took, refused, len(pods), b.waitNoPrefetchPods(ctx, ns)
}

// waitNoPrefetchPods waits until the installation in ns has no prefetch
// pod left, once its image list is empty.
func (b *bench) waitNoPrefetchPods(ctx context.Context, ns string) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		left, err := b.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=prefetch"})
		return err == nil && len(left.Items) == 0, nil
	})
	if err != nil {
		return errors.New("the prefetch pods were not deleted after the list was emptied")
	}
	return nil
}
