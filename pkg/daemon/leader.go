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

// Election elects, among the daemons that share a Lease, the one that does
// what only one must: the node daemon that reports object problems (the
// node.ReporterLease), the planner replica that publishes the wanted set.
type Election struct {
	elector *leaderelection.LeaderElector
	// decided is closed once this daemon knows who reports: itself, or
	// another daemon that holds the Lease.
	decided chan struct{}
	once    sync.Once
	lease   string
}

// NewElection campaigns for lease in namespace as identity, once Run.
func NewElection(client kubernetes.Interface, namespace, lease, identity string) (*Election, error) {
	r := &Election{decided: make(chan struct{}), lease: lease}
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

// Run campaigns until ctx ends: a daemon that loses the Lease stands again.
func (r *Election) Run(ctx context.Context) {
	for ctx.Err() == nil {
		r.elector.Run(ctx)
	}
}

// Wait blocks until this daemon knows who reports, or at most max, so that
// the problems found by the sources' first read are reported by whoever
// holds the Lease.
func (r *Election) Wait(ctx context.Context, max time.Duration) {
	select {
	case <-r.decided:
	case <-time.After(max):
		klog.FromContext(ctx).Info("No daemon holds the Lease yet; what only its holder does waits until one does", "lease", r.lease)
	case <-ctx.Done():
	}
}

// Leading reports whether this daemon holds the Lease.
func (r *Election) Leading() bool { return r.elector.IsLeader() }
