package testcluster

import (
	"context"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
)

// RefusedPulls counts, by Event, the kubelet's "pull QPS exceeded"
// failures in ns (an Event's count grows as the kubelet repeats it).
func RefusedPulls(ctx context.Context, kube kubernetes.Interface, ns string) (map[types.UID]int, error) {
	events, err := kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[types.UID]int{}
	for _, e := range events.Items {
		if strings.Contains(e.Message, "pull QPS exceeded") {
			n := max(e.Count, 1)
			if e.Series != nil {
				n = max(n, e.Series.Count)
			}
			out[e.UID] = int(n)
		}
	}
	return out, nil
}

// WaitCached polls the prefetch pods of the installation in ns every
// interval until each of images is cached on a node, and returns those
// still missing when it gives up.
func WaitCached(ctx context.Context, kube kubernetes.Interface, ns string, images []string, interval, timeout time.Duration) ([]string, error) {
	var missing []string
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		pods, err := PrefetchPods(ctx, kube, ns)
		if err != nil {
			return false, nil
		}
		cached := map[string]bool{}
		for _, st := range cachestate.Summarize(pods) {
			if st.State == cachestate.Cached {
				cached[st.Image] = true
			}
		}
		missing = missing[:0]
		for _, img := range images {
			if !cached[img] {
				missing = append(missing, img)
			}
		}
		return len(missing) == 0, nil
	})
	return missing, err
}
