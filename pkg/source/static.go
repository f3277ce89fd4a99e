package source

import (
	"context"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// staticSource is the --image list: fixed for the daemon's lifetime.
type staticSource struct{ wants []Want }

// NewStatic returns the source of images given with --image; images must be
// normalised already (the daemon's option validation does it).
func NewStatic(images []string) Source {
	s := &staticSource{}
	for _, img := range images {
		s.wants = append(s.wants, Want{Image: img, Origin: "flag --image", Static: true})
	}
	return s
}

func (s *staticSource) Name() string                      { return "static" }
func (s *staticSource) Run(ctx context.Context, _ func()) { <-ctx.Done() }
func (s *staticSource) HasSynced() bool                   { return true }
func (s *staticSource) Wanted() []Want                    { return append([]Want(nil), s.wants...) }
func (s *staticSource) Health() wire.Health {
	return wire.Health{Source: s.Name(), Synced: true, Objects: len(s.wants)}
}
