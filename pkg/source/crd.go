package source

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// gatedSource waits until the API server serves a resource (the CRD is
// installed) before it builds and starts the real source. A missing CRD is
// reported once and waited for; installing it later is picked up without a
// restart.
type gatedSource struct {
	name      string
	gvr       schema.GroupVersionResource
	discovery discovery.DiscoveryInterface
	build     func() (Source, error)
	reporter  Reporter
	interval  time.Duration

	mu      sync.RWMutex
	checked bool
	missing bool
	problem error
	inner   Source
}

// WhenServed returns a Source that behaves as build() once the API server
// serves gvr, checking every interval until it does.
func WhenServed(name string, gvr schema.GroupVersionResource, dc discovery.DiscoveryInterface, interval time.Duration, reporter Reporter, build func() (Source, error)) Source {
	return &gatedSource{name: name, gvr: gvr, discovery: dc, build: build, reporter: reporter, interval: interval}
}

func (g *gatedSource) Name() string { return g.name }

func (g *gatedSource) Run(ctx context.Context, onChange func()) {
	reported := false
	for {
		served, err := g.served()
		var inner Source
		if served {
			inner, err = g.build()
		}
		switch {
		case served && err == nil:
			g.mu.Lock()
			g.inner, g.checked, g.missing, g.problem = inner, true, false, nil
			g.mu.Unlock()
			onChange()
			inner.Run(ctx, onChange)
			return
		case err != nil:
			// Discovery itself failed, or building the source: keep the
			// last verdict, report a new error once, and retry.
			err = fmt.Errorf("starting to read %s: %w", g.gvr.GroupResource(), err)
			g.mu.Lock()
			repeated := g.problem != nil && g.problem.Error() == err.Error()
			g.problem = err
			g.mu.Unlock()
			if !repeated && g.reporter != nil {
				g.reporter.Problems(g.name, nil, []error{err})
			}
		default:
			if !reported && g.reporter != nil {
				g.reporter.Problems(g.name, nil, []error{g.missingError()})
				reported = true
			}
			g.mu.Lock()
			g.checked, g.missing, g.problem = true, true, nil
			g.mu.Unlock()
			onChange()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(g.interval):
		}
	}
}

func (g *gatedSource) missingError() error {
	return fmt.Errorf("%s is not served by the API server (is its CRD installed?); waiting for it, checking every %s",
		g.gvr.GroupResource(), g.interval)
}

// served asks discovery whether the group/version lists the resource.
func (g *gatedSource) served() (bool, error) {
	list, err := g.discovery.ServerResourcesForGroupVersion(g.gvr.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, r := range list.APIResources {
		if r.Name == g.gvr.Resource {
			return true, nil
		}
	}
	return false, nil
}

// HasSynced is false until the first check; then, while the resource is not
// served, there is nothing to wait for.
func (g *gatedSource) HasSynced() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.inner != nil {
		return g.inner.HasSynced()
	}
	return g.checked
}

func (g *gatedSource) Health() wire.Health {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.inner != nil {
		return g.inner.Health()
	}
	h := wire.Health{Source: g.name, Synced: g.checked, Missing: g.missing}
	if g.problem != nil {
		h.Problem = g.problem.Error()
	}
	return h
}

func (g *gatedSource) Wanted() []Want {
	g.mu.RLock()
	inner := g.inner
	g.mu.RUnlock()
	if inner == nil {
		return nil
	}
	return inner.Wanted()
}
