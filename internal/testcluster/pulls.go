package testcluster

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
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

// WaitCached follows the prefetch pods of the installation in ns with a
// watch (no polling, which would load the machine being measured) until
// each of images is cached on a node, and returns those still missing when
// it gives up after timeout.
func WaitCached(ctx context.Context, kube kubernetes.Interface, ns string, images []string, timeout time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	selector := labels.SelectorFromSet(wire.PrefetchLabels()).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			return kube.CoreV1().Pods(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return kube.CoreV1().Pods(ns).Watch(ctx, o)
		},
	}
	pods := map[string]*corev1.Pod{}
	var missing []string
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(e watch.Event) (bool, error) {
		p, ok := e.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		if e.Type == watch.Deleted {
			delete(pods, p.Name)
		} else {
			pods[p.Name] = p
		}
		list := make([]*corev1.Pod, 0, len(pods))
		for _, p := range pods {
			list = append(list, p)
		}
		cached := map[string]bool{}
		for _, st := range cachestate.Summarize(list) {
			if st.State == wire.Cached {
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
	if err != nil && len(missing) == 0 {
		missing = images // nothing was read
	}
	return missing, err
}
