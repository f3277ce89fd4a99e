package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/cli"
	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// statusNamespace holds the simulated installation of the status benchmark.
const statusNamespace = "icd-bench-status"

// statusBench simulates an installation on nodes x images on the real API
// server (Node objects without a kubelet, a daemon pod and the prefetch pods
// of each node built by the daemon's own code, their statuses written as the
// kubelet would), then times `kubectl imagecache status` in-process and
// counts its API requests, for a tenth of the nodes and for all of them. The
// issue's scale, 1,000 nodes x 100 images, is 1,000 Nodes, 1,000 daemon pods
// and 5,000 prefetch pods: 12,000 writes, sent 64 at a time past the client's
// rate limit, so that they take as long as the API server needs, not the
// minute the shared client's 200 QPS would. They must be quick: once a
// kubelet-less node is older than the node monitor grace period (50 s by
// default), the node lifecycle controller marks it NotReady and updates
// every pod on it, load on the server while status is timed.
func (b *bench) statusBench(ctx context.Context, nodes, images, runs int) error {
	defer b.cleanupStatus()
	sim := rest.CopyConfig(b.cfg)
	sim.QPS = -1 // no client-side limit: the errgroup bounds what is in flight
	kube, err := kubernetes.NewForConfig(sim)
	if err != nil {
		return err
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: statusNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	var wanted []string
	for i := 0; i < images; i++ {
		wanted = append(wanted, fmt.Sprintf("%s/bench/status-%03d:v1", b.registry, i))
	}
	small := max(nodes/10, 1)
	start := time.Now()
	if err := b.simulate(ctx, kube, 0, small, wanted); err != nil {
		return err
	}
	if err := b.report(small, images, runs); err != nil {
		return err
	}
	if err := b.simulate(ctx, kube, small, nodes, wanted); err != nil {
		return err
	}
	fmt.Printf("  (simulated %d nodes with %d pods in %s)\n", nodes, nodes*(1+(images+statusBatch-1)/statusBatch), time.Since(start).Round(time.Millisecond))
	if err := b.report(nodes, images, runs); err != nil {
		return err
	}
	// The same without the daemons' image reports (daemons older than
	// them, or nodes whose statuses do not fit): status reads every pod.
	if err := dropReports(ctx, kube, nodes); err != nil {
		return err
	}
	fmt.Println("  without the daemons' image reports, status reads every prefetch pod:")
	return b.report(nodes, images, runs)
}

// dropReports removes the image report from the simulated daemon pods.
func dropReports(ctx context.Context, kube kubernetes.Interface, nodes int) error {
	patch := []byte(`{"metadata":{"annotations":{"` + wire.AnnotationReport + `":null}}}`)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	for i := range nodes {
		g.Go(func() error {
			_, err := kube.CoreV1().Pods(statusNamespace).Patch(ctx, fmt.Sprintf("daemon-icd-sim-%04d", i), types.MergePatchType, patch, metav1.PatchOptions{})
			return err
		})
	}
	return g.Wait()
}

// report runs status (default and -o wide) runs times and prints the median
// latency and the requests one run makes.
func (b *bench) report(nodes, images, runs int) error {
	for _, args := range [][]string{{}, {"-o", "wide"}} {
		var took []time.Duration
		var requests int64
		var out []byte
		for r := 0; r < runs; r++ {
			d, n, o, err := b.runStatus(args)
			if err != nil {
				return err
			}
			took, requests, out = append(took, d), n, o
		}
		sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
		mode := "status"
		if len(args) > 0 {
			mode = "status -o wide"
		}
		fmt.Printf("%s, %d nodes x %d images: median %s (min %s, max %s over %d runs), %d API requests per run, %d lines of output (goal < 1 s, requests constant)\n",
			mode, nodes, images, took[len(took)/2].Round(time.Millisecond), took[0].Round(time.Millisecond),
			took[len(took)-1].Round(time.Millisecond), runs, requests, bytes.Count(out, []byte("\n")))
	}
	return nil
}

// runStatus runs the plugin's status command in this process, as kubectl
// would run the plugin, counting the requests it sends.
func (b *bench) runStatus(args []string) (time.Duration, int64, []byte, error) {
	var requests atomic.Int64
	// $KUBECONFIG, as kubectl reads it (one path or several).
	flags := genericclioptions.NewConfigFlags(false)
	flags.Namespace = ptr(statusNamespace)
	flags.WrapConfigFn = func(c *rest.Config) *rest.Config {
		c.Wrap(func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				requests.Add(1)
				return rt.RoundTrip(r)
			})
		})
		return c
	}
	var out, errOut bytes.Buffer
	cmd := cli.NewCmdStatus(flags, genericiooptions.IOStreams{Out: &out, ErrOut: &errOut})
	cmd.SetArgs(args)
	start := time.Now()
	err := cmd.Execute()
	took := time.Since(start)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("status %v: %w: %s", args, err, errOut.String())
	}
	return took, requests.Load(), out.Bytes(), nil
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// statusBatch is the daemon's default batch: images per prefetch pod.
const statusBatch = 20

// simulate creates nodes [from, to) with a daemon pod each and the prefetch
// pods that hold images, most cached, some pulling, one failed per node.
func (b *bench) simulate(ctx context.Context, kube kubernetes.Interface, from, to int, images []string) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	for i := from; i < to; i++ {
		g.Go(func() error { return b.simulateNode(ctx, kube, fmt.Sprintf("icd-sim-%04d", i), images) })
	}
	return g.Wait()
}

func (b *bench) simulateNode(ctx context.Context, kube kubernetes.Interface, node string, images []string) error {
	// A Node object, so the pod garbage collector keeps the pods bound to it;
	// no kubelet ever reports for it (see statusBench for what follows).
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{"icd-bench": "status"}}}
	if _, err := kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	// The report a daemon publishes, so that status reads one per node.
	health, err := json.Marshal(wire.HealthReport{
		Sources: []wire.Health{{Source: "static", Synced: true}, {Source: "configmaps", Synced: true, Objects: 1}},
		Warm:    &wire.Warmth{Reason: "Warming", Message: fmt.Sprintf("%d/%d images cached", len(images)-2, len(images))},
	})
	if err != nil {
		return err
	}
	cfg := prefetch.Config{Namespace: statusNamespace, NodeName: node, WardenImage: b.image, BatchSize: statusBatch}
	var pods []*corev1.Pod
	for start := 0; start < len(images); start += cfg.BatchSize {
		batch := images[start:min(start+cfg.BatchSize, len(images))]
		pod := cfg.Pod(batch, 0, corev1.PullIfNotPresent)
		created, err := kube.CoreV1().Pods(statusNamespace).Create(ctx, pod, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			created, err = kube.CoreV1().Pods(statusNamespace).Get(ctx, pod.Name, metav1.GetOptions{})
		}
		if err != nil {
			return err
		}
		if created.Status.Phase == "" {
			created.Status = kubeletStatus(created, start == 0)
			if created, err = kube.CoreV1().Pods(statusNamespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
				return err
			}
		}
		pods = append(pods, created)
	}
	// The daemon pod, running, with the reports a daemon publishes: its
	// health, and its node's image statuses, which status reads.
	report, ok := wire.EncodeReport(cachestate.Summarize(pods))
	if !ok {
		return fmt.Errorf("the image report of node %s does not fit in an annotation", node)
	}
	daemon := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "daemon-" + node, Namespace: statusNamespace,
			Labels:      map[string]string{wire.LabelPartOf: wire.PartOf, wire.LabelComponent: "daemon"},
			Annotations: map[string]string{wire.AnnotationHealth: string(health), wire.AnnotationReport: report}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: install.ContainerName, Image: b.image}}},
	}
	created, err := kube.CoreV1().Pods(statusNamespace).Create(ctx, daemon, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return err
	}
	created.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: install.ContainerName, Image: b.image, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}}
	_, err = kube.CoreV1().Pods(statusNamespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return err
}

// kubeletStatus is what the kubelet would report for a prefetch pod: the
// warden installed, every image cached, except in the node's first pod one
// image failing to pull and one still pulling.
func kubeletStatus(pod *corev1.Pod, mixed bool) corev1.PodStatus {
	now := metav1.Now()
	done := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}}
	st := corev1.PodStatus{Phase: corev1.PodSucceeded}
	for _, c := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image, State: done})
	}
	for i, c := range pod.Spec.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image + "@" + fakeDigest(c.Image), State: done}
		switch {
		case mixed && i == 0:
			cs.ImageID, cs.State = "", corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff",
				Message: fmt.Sprintf(`Back-off pulling image "%s": ErrImagePull: failed to pull and unpack image "%s": not found`, c.Image, c.Image)}}
			st.Phase = corev1.PodPending
		case mixed && i == 1:
			cs.ImageID, cs.State = "", corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
			st.Phase = corev1.PodPending
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	return st
}

func fakeDigest(image string) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(image)))
}

func (b *bench) cleanupStatus() {
	ctx := context.Background()
	// No kubelet will confirm these pods' end: remove them at once.
	_ = b.kube.CoreV1().Pods(statusNamespace).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr[int64](0)}, metav1.ListOptions{})
	_ = b.kube.CoreV1().Namespaces().Delete(ctx, statusNamespace, metav1.DeleteOptions{})
	_ = b.kube.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "icd-bench=status"})
}
