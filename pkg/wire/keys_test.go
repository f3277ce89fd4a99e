package wire

import (
	"strings"
	"testing"
)

// The keys are in users' clusters and in the chart (charts/image-cache-daemon):
// a daemon, a planner and a plugin of different versions must agree on them.
func TestKeysStay(t *testing.T) {
	for got, want := range map[string]string{
		LabelPartOf:        "app.kubernetes.io/part-of",
		LabelName:          "app.kubernetes.io/name",
		LabelComponent:     "app.kubernetes.io/component",
		LabelInstance:      "app.kubernetes.io/instance",
		LabelNode:          "image-cache-daemon/node",
		LabelGeneration:    "image-cache-daemon/generation",
		AnnotationNodeName: "image-cache-daemon/node-name",
		AnnotationReport:   "image-cache-daemon/images",
		AnnotationHealth:   "image-cache-daemon/health",
		AnnotationKey:      "image-cache-daemon/key",
	} {
		if got != want {
			t.Errorf("key %q, want %q", got, want)
		}
	}
}

func TestNodeLabelValue(t *testing.T) {
	if got := NodeLabelValue("node-1"); got != "node-1" {
		t.Errorf("short name changed: %q", got)
	}
	long := strings.Repeat("n", 70) + ".example.com"
	got := NodeLabelValue(long)
	if len(got) > 63 || got == NodeLabelValue(long+"x") {
		t.Errorf("long name label %q: too long or not distinct", got)
	}
}
