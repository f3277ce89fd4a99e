package source

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// Set owns every source of wanted images: it starts them, waits for them to
// sync, merges what they want and, once its context ends, joins every
// goroutine they started. The daemon and `kubectl imagecache list` both
// read the sources through it, so they see the same images.
type Set struct {
	sources []Source
	wg      sync.WaitGroup
}

// NewSet builds the sources that cfg turns on. Nothing runs until Start.
func NewSet(cfg Config, c Clients, reporter Reporter) (*Set, error) {
	sources, err := newSources(cfg, c, reporter)
	if err != nil {
		return nil, err
	}
	return &Set{sources: sources}, nil
}

// NewSetOf returns a Set of the given sources (for tests and benchmarks).
func NewSetOf(sources ...Source) *Set { return &Set{sources: sources} }

// Start runs every source in the background until ctx ends; onChange is
// called whenever what they want may have changed. Wait joins them.
func (s *Set) Start(ctx context.Context, onChange func()) {
	for _, src := range s.sources {
		s.wg.Go(func() { src.Run(ctx, onChange) })
	}
}

// Wait returns once every source started by Start has stopped, which they
// do when Start's context ends.
func (s *Set) Wait() { s.wg.Wait() }

// HasSynced reports whether every source has read its initial state.
func (s *Set) HasSynced() bool {
	for _, src := range s.sources {
		if !src.HasSynced() {
			return false
		}
	}
	return true
}

// WaitForSync blocks until every source has synced, or says which have not
// when ctx ends.
func (s *Set) WaitForSync(ctx context.Context) error {
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		return s.HasSynced(), nil
	})
	if err == nil {
		return nil
	}
	var waiting []string
	for _, h := range s.Health() {
		switch {
		case h.Problem != "":
			waiting = append(waiting, fmt.Sprintf("%s (%s)", h.Source, h.Problem))
		case !h.Synced:
			waiting = append(waiting, h.Source)
		}
	}
	return fmt.Errorf("sources not read in time: %v: %w", waiting, err)
}

// Wanted returns every wanted image with what wants it, from all sources.
func (s *Set) Wanted() []wire.Image { return Images(s.Wants()) }

// Wants returns what every source wants, each want with its tenant, as
// Select takes them.
func (s *Set) Wants() []Want {
	var wants []Want
	for _, src := range s.sources {
		wants = append(wants, src.Wanted()...)
	}
	return wants
}

// Health returns every source's health, in the order the sources were
// built; a source that relays others (a node's reader of the planner's
// wanted set) is followed by theirs.
func (s *Set) Health() []wire.Health {
	out := make([]wire.Health, 0, len(s.sources))
	for _, src := range s.sources {
		out = append(out, src.Health())
		if r, ok := src.(Relay); ok {
			out = append(out, r.Relayed()...)
		}
	}
	return out
}

// Relay is a Source that stands for others, read elsewhere (the planner's).
type Relay interface {
	// Relayed is the health of the sources it stands for.
	Relayed() []wire.Health
}
