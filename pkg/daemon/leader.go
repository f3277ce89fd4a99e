package daemon

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// ReporterLease is the Lease, in the daemon's namespace, held by the one
// daemon that reports problems found in watched objects as Events. Every
// daemon reads every object, so without it each problem would be reported
// once per node: a thousand Events for one typo on a thousand nodes.
const ReporterLease = "image-cache-daemon-reporter"

// reporterElection elects the daemon that reports object problems.
type reporterElection struct {
	elector *leaderelection.LeaderElector
	// decided is closed once this daemon knows who reports: itself, or
	// another daemon that holds the Lease.
	decided chan struct{}
	once    sync.Once
}

func newReporterElection(client kubernetes.Interface, namespace, identity string) (*reporterElection, error) {
	r := &reporterElection{decided: make(chan struct{})}
	decide := func() { r.once.Do(func() { close(r.decided) }) }
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: ReporterLease, Namespace: namespace},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
		},
		LeaseDuration:   30 * time.Second,
		RenewDeadline:   20 * time.Second,
		RetryPeriod:     5 * time.Second,
		ReleaseOnCancel: true,
		Name:            ReporterLease,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { decide() },
			OnStoppedLeading: func() {},
			OnNewLeader:      func(string) { decide() },
		},
	})
	if err != nil {
		return nil, err
	}
	r.elector = le
	return r, nil
}

// run campaigns until ctx ends: a daemon that loses the Lease stands again.
func (r *reporterElection) run(ctx context.Context) {
	for ctx.Err() == nil {
		r.elector.Run(ctx)
	}
}

// wait blocks until this daemon knows who reports, or at most max, so that
// the problems found by the sources' first read are reported by whoever
// holds the Lease.
func (r *reporterElection) wait(ctx context.Context, max time.Duration) {
	select {
	case <-r.decided:
	case <-time.After(max):
		klog.FromContext(ctx).Info("No daemon holds the reporter Lease yet; object problems go to the log until one does", "lease", ReporterLease)
	case <-ctx.Done():
	}
}

// leading reports whether this daemon reports object problems.
func (r *reporterElection) leading() bool { return r.elector.IsLeader() }
