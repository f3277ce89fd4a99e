package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/dcherman/image-cache-daemon/internal/testcluster"
	"github.com/dcherman/image-cache-daemon/pkg/imagelist"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/warm"
)

// warmUp measures issue 11's figure: the node gets the startup taint, the
// daemon pod is replaced (as on a new node) while the image list names w's
// fresh images, and the time runs until the Warm condition is True and the
// daemon has removed the taint; beside it, bare `crictl pull` of other fresh
// images of the same size.
func (b *bench) warmUp(ctx context.Context, base install.Options, w work, trials int) error {
	o := base
	o.StartupTaint, o.WarmTimeout = warm.DefaultTaintKey, 0
	if err := b.apply(ctx, o); err != nil {
		return err
	}
	defer func() { _ = b.apply(context.Background(), base) }()
	nodes, err := b.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 1 {
		return fmt.Errorf("want the local cluster's one node (%v)", err)
	}
	node := nodes.Items[0].Name
	defer func() { _ = testcluster.SetTaint(context.Background(), b.kube, node, o.StartupTaint, false) }()

	var warmT, untaintT, bareT, ratio []float64
	for i := range trials {
		bare, cached := make([]string, w.n), make([]string, w.n)
		for j := range w.n {
			if bare[j], err = b.pushFresh(ctx, fmt.Sprintf("bench/warm-bare-%d", j), w.size); err != nil {
				return err
			}
			if cached[j], err = b.pushFresh(ctx, fmt.Sprintf("bench/warm-%d", j), w.size); err != nil {
				return err
			}
		}
		bareTook, _, err := b.crictlPulls(ctx, bare)
		if err != nil {
			return err
		}
		warmTook, untaintTook, err := b.warmTrial(ctx, node, o, cached)
		b.removeImages(append(bare, cached...))
		if err != nil {
			return fmt.Errorf("trial %d: %w", i+1, err)
		}
		fmt.Printf("  warm-up %s trial %d: condition True after %s, taint removed after %s; bare crictl pull %s\n",
			w, i+1, ms(warmTook), ms(untaintTook), ms(bareTook))
		warmT, untaintT = append(warmT, warmTook.Seconds()), append(untaintT, untaintTook.Seconds())
		bareT, ratio = append(bareT, bareTook.Seconds()), append(ratio, untaintTook.Seconds()/bareTook.Seconds())
	}
	fmt.Printf("warm-up of a node, %s (taint on, daemon restarted): Warm condition True %s s, taint removed %s s; bare crictl pull %s s; ratio %s (goal: the cache fill's ratio)\n",
		w, spread(warmT, 2), spread(untaintT, 2), spread(bareT, 2), spread(ratio, 2))
	return nil
}

// warmTrial taints the node, names images in the list, replaces the daemon
// pod, and times until the condition is True and the taint is gone.
func (b *bench) warmTrial(ctx context.Context, node string, o install.Options, images []string) (warmTook, untaintTook time.Duration, err error) {
	b.settle()
	daemons, err := b.kube.CoreV1().Pods(o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=daemon"})
	if err != nil || len(daemons.Items) == 0 {
		return 0, 0, fmt.Errorf("no daemon pod to replace (%v)", err)
	}
	start := time.Now()
	if err := testcluster.SetTaint(ctx, b.kube, node, o.StartupTaint, true); err != nil {
		return 0, 0, err
	}
	for _, p := range daemons.Items {
		if err := b.kube.CoreV1().Pods(o.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			return 0, 0, err
		}
	}
	if _, err := imagelist.Edit(ctx, b.kube, o.Namespace, install.DefaultConfigMap, func([]string) []string { return images }); err != nil {
		return 0, 0, err
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		n, err := b.kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if warmTook == 0 {
			for _, c := range n.Status.Conditions {
				// The condition of the new daemon: after the start.
				if c.Type == warm.ConditionType && c.Status == corev1.ConditionTrue && c.Reason == warm.ReasonWarm && !c.LastTransitionTime.Time.Before(start.Truncate(time.Second)) {
					warmTook = time.Since(start)
				}
			}
		}
		if untaintTook == 0 && !testcluster.HasTaint(n, o.StartupTaint) {
			untaintTook = time.Since(start)
		}
		return warmTook > 0 && untaintTook > 0, nil
	})
	if err != nil {
		return 0, 0, errors.New("the node did not become warm within 5 minutes")
	}
	if err := testcluster.WaitRollout(ctx, b.kube, o.Namespace, time.Minute); err != nil {
		return 0, 0, err
	}
	if _, err := imagelist.Edit(ctx, b.kube, o.Namespace, install.DefaultConfigMap, func([]string) []string { return nil }); err != nil {
		return 0, 0, err
	}
	return warmTook, untaintTook, b.waitNoPrefetchPods(ctx, o.Namespace)
}
