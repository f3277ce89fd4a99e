package argo

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// fuzzBudget is the budget FuzzImages reads with.
var fuzzBudget = Budget{MaxValueBytes: 256, MaxRounds: 4, MaxScopes: 8, MaxSteps: 500, MaxWork: 1 << 20,
	MaxExpressionBytes: 256, MaxExpressionNodes: 32}

// FuzzImages reads any workflow spec JSON can hold. The budget must make
// every read end quickly with bounded memory, whatever the spec: the time
// and memory guards below fail the fuzzer where it does not.
func FuzzImages(f *testing.F) {
	for _, seed := range []string{
		`{"templates":[{"name":"t","container":{"image":"alpine"}}]}`,
		`{"arguments":{"parameters":[{"name":"a","value":"{{workflow.parameters.a}}{{workflow.parameters.a}}"}]},"templates":[{"name":"t","container":{"image":"{{workflow.parameters.a}}"}}]}`,
		`{"entrypoint":"a","templates":[{"name":"a","inputs":{"parameters":[{"name":"x"}]},"steps":[[{"name":"s","template":"b","arguments":{"parameters":[{"name":"x","value":"{{inputs.parameters.x}}{{inputs.parameters.x}}"}]}},{"name":"t","template":"b"}]]},{"name":"b","inputs":{"parameters":[{"name":"x"}]},"container":{"image":"{{inputs.parameters.x}}"},"steps":[[{"name":"r","template":"a","arguments":{"parameters":[{"name":"x","value":"{{inputs.parameters.x}}"}]}}]]}]}`,
		`{"templates":[{"name":"t","inputs":{"parameters":[{"name":"e","default":"prod"}]},"container":{"image":"{{=inputs.parameters.e == 'prod' ? 'nginx' : 'x'}}"}}]}`,
		`{"templates":[{"name":"t","container":{"image":"{{=sprig.repeat(100000000,'a')}}"}}]}`,
		`{"templateDefaults":{"sidecars":[{"name":"s","image":"{{item}}"}]},"templates":[{"name":"m","dag":{"tasks":[{"name":"a","template":"r","withItems":["a","b",{"k":"v"}],"arguments":{"parameters":[{"name":"i","value":"{{item}}"}]}}]}},{"name":"r","inputs":{"parameters":[{"name":"i"}]},"container":{"image":"{{inputs.parameters.i}}"}}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var spec wfv1.WorkflowSpec
		if err := json.Unmarshal(raw, &spec); err != nil {
			return
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		// A small budget: every limit is reached by small inputs, so the
		// fuzzer explores thousands a second and finds where one is not.
		images, skipped, _ := Images(&spec, fuzzBudget)
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		if took > time.Second {
			t.Fatalf("reading a %d-byte spec took %s", len(raw), took)
		}
		// The bound TestWorstInputsAtTheLimits states.
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(fuzzBudget.MaxWork+specFactor*len(raw)+64<<10) && !raceEnabled {
			t.Fatalf("reading a %d-byte spec allocated %d KiB, over the budget of %d KiB", len(raw), alloc>>10, fuzzBudget.MaxWork>>10)
		}
		for _, img := range images {
			if strings.Contains(img, "{{") || len(img) > fuzzBudget.MaxValueBytes {
				t.Fatalf("image %q is not a resolved reference", img)
			}
		}
		for _, s := range skipped {
			if len(s.Reason) > 4096 {
				t.Fatalf("a reason of %d bytes", len(s.Reason))
			}
		}
	})
}
