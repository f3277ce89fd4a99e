package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/warden"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// followOptions say how follow reads.
type followOptions struct {
	// once stops reading once the pods are read: status without --watch.
	once bool
	// daemonsOnly reads the daemon pods alone, and the cache from their
	// reports (set by follow).
	daemonsOnly bool
	// poke asks for a snapshot without a change (set by follow).
	poke <-chan struct{}
	// every is the least time between two snapshots.
	every time.Duration
	// refresh, when set, is the most time between two snapshots: what
	// render reads besides the pods (the planner's set) changes without
	// them.
	refresh time.Duration
	// warn is told when the watch breaks after the first snapshot (the
	// reflector then watches or reads the pods again, backing off while
	// the API server fails). A watch refused for want of rights ends
	// follow instead.
	warn io.Writer
	// owners are the installation's live owners (set by follow).
	owners cachestate.Owners
}

// errNeedsPods stops reading the daemons' reports alone.
var errNeedsPods = errors.New("some node has no usable image report")

// reportGrace is how long a watch waits for a daemon's report before it
// reads the pods instead: a daemon that just started publishes its first
// within a second or two. (A variable for the tests.)
var reportGrace = 5 * time.Second

// follow reads the cache of the installation in namespace ns and hands
// render a snapshot: once it is read, then after each change, at most every
// opts.every, until render says it is done or fails, or ctx ends.
//
// It reads the reports the daemons publish on their pods
// (wire.AnnotationReport): one small pod per node, however many
// images and prefetch pods there are. When a node's daemon has no usable
// report (an older daemon, one not running or just started, a node whose
// statuses do not fit in an annotation), or no daemon pod runs at all, it
// reads every pod of the installation instead, from then on: at once for a
// single snapshot, after reportGrace when following (showing nothing
// meanwhile). So add --wait ends on the reports that status reads next,
// which lag the pods by a second or so, and never shows an image cached
// that status then shows pulling.
//
// Only the installation's pods count (cachestate.Owners): follow first
// reads its DaemonSet (one GET; not installed when there is none), and
// before it reads the prefetch pods, the warden ConfigMap (one more).
func follow(ctx context.Context, client kubernetes.Interface, ns string, opts followOptions, render func(*snapshot) (bool, error)) error {
	ds, err := client.AppsV1().DaemonSets(ns).Get(ctx, install.Name, metav1.GetOptions{})
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("reading daemonset/%s in namespace %s: status counts only the pods it owns, so it needs get on that DaemonSet (and on configmap/%s): %w", install.Name, ns, warden.ConfigMap, err)
	}
	if err != nil {
		return notInstalled(ns, err)
	}
	opts.owners.DaemonSet = cachestate.Owner{Name: ds.Name, UID: ds.UID}
	opts.daemonsOnly = true
	poke := make(chan struct{}, 1)
	opts.poke = poke
	var since time.Time // since when a report is missing
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	err = followPods(ctx, client, ns, opts, func(s *snapshot) (bool, error) {
		switch {
		case !s.needsPods:
			since = time.Time{}
		case opts.once:
			return true, errNeedsPods
		case since.IsZero():
			since = time.Now()
			if timer != nil {
				timer.Stop()
			}
			timer = time.AfterFunc(reportGrace, func() {
				select {
				case poke <- struct{}{}:
				default:
				}
			})
			return false, nil
		case time.Since(since) >= reportGrace:
			return true, errNeedsPods
		default:
			return false, nil
		}
		return render(s)
	})
	if !errors.Is(err, errNeedsPods) {
		return err
	}
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, warden.ConfigMap, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		// An installation by an older version: no prefetch pod mounts it.
	case err != nil:
		return fmt.Errorf("reading ConfigMap %s/%s, the owner of the prefetch pods that status checks: %w", ns, warden.ConfigMap, err)
	default:
		opts.owners.Warden = cachestate.Owner{Name: cm.Name, UID: cm.UID}
	}
	opts.daemonsOnly = false
	return followPods(ctx, client, ns, opts, render)
}

// followPods reads the pods of the installation in namespace ns (with
// opts.daemonsOnly, its daemon pods only) and hands render a snapshot: once
// they are read, then after each change, at most every opts.every, until
// render says it is done or fails, or ctx ends (it then returns ctx.Err()).
//
// A reflector reads them, as informers do, so the number of requests does
// not grow with nodes or images: a streamed list (one WATCH with
// sendInitialEvents, served from the API server's watch cache, with no list
// of thousands of pods held in one response on either side) where the
// server offers it (on by default in Kubernetes 1.32 and since 1.34), else
// one LIST at resourceVersion 0 (served whole from the watch cache, which
// ignores the page size there) and a WATCH from its resource version. Both
// travel as protobuf, which client-go prefers for built-in types. A watch
// that ends is resumed where it stopped; after "410 Gone" or another watch
// error the pods are read again. With opts.once the reflector stops as soon
// as the pods are read: one request (two where the server refuses the
// stream).
func followPods(ctx context.Context, client kubernetes.Interface, ns string, opts followOptions, render func(*snapshot) (bool, error)) error {
	rec := newPodRecord(opts.daemonsOnly, opts.owners)
	errs := make(chan error, 1)
	if opts.warn == nil {
		opts.warn = io.Discard
	}

	// The reflector's own logs would reach the user's terminal through
	// klog: errors come to errs instead.
	discard := logr.Discard()
	rctx, stop := context.WithCancel(klog.NewContext(ctx, discard))
	defer stop()
	if opts.once {
		// Stop before the reflector starts its watch.
		rec.onSync = stop
	}
	report := func(err error) {
		if err != nil && rctx.Err() == nil {
			select {
			case errs <- err:
			default:
			}
		}
	}
	pods := client.CoreV1().Pods(ns)
	selector := wire.LabelPartOf + "=" + wire.PartOf
	if opts.daemonsOnly {
		selector += "," + wire.LabelComponent + "=" + wire.ComponentDaemon
	}
	lw := cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			list, err := pods.List(ctx, o)
			report(err)
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			w, err := pods.Watch(ctx, o)
			if o.SendInitialEvents == nil {
				// A refused streamed list is no error: the reflector
				// lists instead, on servers that do not stream.
				report(err)
			}
			return w, err
		},
	}, client)
	r := cache.NewReflectorWithOptions(lw, &corev1.Pod{}, rec, cache.ReflectorOptions{
		Name: "pods of namespace " + ns, Logger: &discard})
	var wg sync.WaitGroup
	wg.Go(func() { r.RunWithContext(rctx) })
	defer wg.Wait()
	defer stop()

	var last time.Time
	synced := false
	var refresh <-chan time.Time
	if opts.refresh > 0 && !opts.once {
		t := time.NewTicker(opts.refresh)
		defer t.Stop()
		refresh = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-refresh:
			if !synced {
				continue
			}
		case err := <-errs:
			if !synced && !rec.filled() {
				return fmt.Errorf("reading the pods of namespace %s: %w", ns, err)
			}
			if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
				// Retrying would list every pod again and again, in vain.
				return fmt.Errorf("watching the pods of namespace %s: %w", ns, err)
			}
			fmt.Fprintln(opts.warn, imageref.Printable(fmt.Sprintf("warning: watching the pods of namespace %s: %v (trying again)", ns, err)))
			continue
		case <-rec.changed:
		case <-opts.poke:
			if !synced {
				continue
			}
		}
		if !synced {
			synced = true
		} else if wait := time.Until(last.Add(opts.every)); wait > 0 {
			// Changes that come meanwhile go into the same snapshot.
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		select {
		case <-rec.changed:
		default:
		}
		last = time.Now()
		if done, err := render(rec.snapshot()); done || err != nil {
			return err
		}
	}
}
