package node

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/klog/v2"

	"github.com/dcherman/image-cache-daemon/pkg/metrics"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// healthInterval is how often the daemon looks at its sources' health and,
// when it changed, writes it onto its own pod.
const healthInterval = 10 * time.Second

// health publishes what the daemon knows about its sources where users
// look: on its own pod (the annotation wire.AnnotationHealth, which
// `kubectl imagecache status` shows, a line per problem) and in readiness.
//
// The report is written again when the pod holds another one than the one
// written (see ownPod), at the pace of reassertion.
type health struct {
	// own is the daemon's pod, watched by imageReport.run.
	own       *ownPod
	sources   Wants
	overLimit func() (int, []wire.Image)
	warmth    func() *wire.Warmth
	metrics   *metrics.Metrics
	last      string
	reassert  reassertion
	now       func() time.Time
}

// report is the daemon's health as of now.
func (h *health) report() wire.HealthReport {
	r := wire.HealthReport{Sources: h.sources.Health()}
	if h.overLimit != nil {
		r.OverLimit, r.OverLimitSample = h.overLimit()
	}
	if h.warmth != nil {
		r.Warm = h.warmth()
	}
	return r
}

// run publishes the report until ctx ends: every second while the sources
// sync (so that status does not show a start-up long gone), then every
// healthInterval, and when the pod changed. Only a changed report is
// written, or one the pod no longer holds.
func (h *health) run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	changed := h.own.changed()
	for {
		again, err := h.publish(ctx)
		if err != nil {
			logger.Error(err, "Publishing health on the daemon's pod")
		}
		every := healthInterval
		if !h.sources.HasSynced() {
			every = time.Second
		}
		if again > 0 {
			every = min(every, again)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		case <-changed:
		}
	}
}

// publish writes the report onto the pod when it differs from the last one
// written, or the pod holds another, so an unchanged daemon makes no
// requests; again > 0 asks to be called again then (a re-assertion waits).
func (h *health) publish(ctx context.Context) (again time.Duration, err error) {
	r := h.report()
	if h.metrics != nil {
		h.metrics.SetSourceHealth(r.Sources)
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	report := string(raw)
	if report == h.last {
		now := time.Now
		if h.now != nil {
			now = h.now
		}
		write, wait := h.own.unchangedWrite(ctx, wire.AnnotationHealth, &h.last, &h.reassert, now())
		if !write {
			return wait, nil
		}
	}
	if err := h.own.patch(ctx, wire.AnnotationHealth, &report); err != nil {
		return 0, err
	}
	h.last = report
	return 0, nil
}

// ready says whether the daemon does its job, and if not, why: readiness
// fails while a source cannot read (a forbidden LIST), so a rollout that
// breaks RBAC stops instead of leaving every node without its images.
func (h *health) ready() error {
	for _, s := range h.sources.Health() {
		if s.Problem != "" {
			return fmt.Errorf("source %s: %s", s.Source, s.Problem)
		}
		if !s.Synced {
			return fmt.Errorf("source %s has not synced yet", s.Source)
		}
	}
	return nil
}
