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

	"github.com/dcherman/image-cache-daemon/pkg/wanted"
)

// ReporterLease is the Lease, in the daemon's namespace, held by the one
// daemon that reports problems found in watched objects as Events. Every
// daemon reads every object, so without it each problem would be reported
// once per node: a thousand Events for one typo on a thousand nodes.
const ReporterLease = "image-cache-daemon-reporter"

// election elects, among the daemons that share a Lease, the one that does
// what only one must: the node daemon that reports object problems (the
// ReporterLease), the planner replica that publishes the wanted set.
type election struct {
	elector *leaderelection.LeaderElector
	// decided is closed once this daemon knows who reports: itself, or
	// another daemon that holds the Lease.
	decided chan struct{}
	once    sync.Once
	lease   string
}

func newElection(client kubernetes.Interface, namespace, lease, identity string) (*election, error) {
	r := &election{decided: make(chan struct{}), lease: lease}
	decide := func() { r.once.Do(func() { close(r.decided) }) }
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: lease, Namespace: namespace},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
		},
		// kube-controller-manager's timings: a standby takes over within
		// about 15 s of a leader's death.
		LeaseDuration:   wanted.LeaseDuration,
		RenewDeadline:   wanted.RenewDeadline,
		RetryPeriod:     wanted.RenewEvery,
		ReleaseOnCancel: true,
		Name:            lease,
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
func (r *election) run(ctx context.Context) {
	for ctx.Err() == nil {
		r.elector.Run(ctx)
	}
}

// wait blocks until this daemon knows who reports, or at most max, so that
// the problems found by the sources' first read are reported by whoever
// holds the Lease.
func (r *election) wait(ctx context.Context, max time.Duration) {
	select {
	case <-r.decided:
	case <-time.After(max):
		klog.FromContext(ctx).Info("No daemon holds the Lease yet; what only its holder does waits until one does", "lease", r.lease)
	case <-ctx.Done():
	}
}

// leading reports whether this daemon reports object problems.
func (r *election) leading() bool { return r.elector.IsLeader() }
