package argo

import (
	"encoding/json"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// specBytes is the size of spec as the API server would store it.
func specBytes(spec *wfv1.WorkflowSpec) int {
	raw, err := json.Marshal(spec)
	if err != nil {
		panic(err)
	}
	return len(raw)
}

// cost is what one read of a spec costs: bytes allocated in all, and the
// highest the heap rose above where it started.
type cost struct{ allocated, peak uint64 }

// measure runs f once and returns its cost. The peak is sampled every
// 100µs, so it is a lower bound of the true peak, close at these sizes.
func measure(f func()) cost {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	heap := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	var before, after runtime.MemStats
	base := heap()
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Microsecond)
		defer tick.Stop()
		for {
			peak = max(peak, heap())
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	close(done)
	wg.Wait()
	peak = max(peak, heap())
	return cost{allocated: after.TotalAlloc - before.TotalAlloc, peak: peak - min(peak, base)}
}
