package warm

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The README's NodeReadinessRule and install example name the condition
// and the taint the daemon uses: a rename here must change them too.
func TestREADMEMatchesTheConstants(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	var rule struct {
		Kind string `json:"kind"`
		Spec struct {
			Conditions []struct {
				Type           string `json:"type"`
				RequiredStatus string `json:"requiredStatus"`
			} `json:"conditions"`
			Taint struct {
				Key string `json:"key"`
			} `json:"taint"`
			EnforcementMode string `json:"enforcementMode"`
		} `json:"spec"`
	}
	found := false
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(readme, -1) {
		if !strings.Contains(m[1], "kind: NodeReadinessRule") {
			continue
		}
		found = true
		if err := yaml.Unmarshal([]byte(m[1]), &rule); err != nil {
			t.Fatalf("the README's NodeReadinessRule does not read: %v", err)
		}
	}
	if !found {
		t.Fatal("the README has no NodeReadinessRule")
	}
	if len(rule.Spec.Conditions) != 1 || rule.Spec.Conditions[0].Type != string(ConditionType) || rule.Spec.Conditions[0].RequiredStatus != "True" {
		t.Errorf("the rule waits for %+v, want %s True", rule.Spec.Conditions, ConditionType)
	}
	if rule.Spec.EnforcementMode != "bootstrap-only" || !strings.HasPrefix(rule.Spec.Taint.Key, "readiness.k8s.io/") || rule.Spec.Taint.Key == DefaultTaintKey {
		t.Errorf("the rule is %s with taint %q; want bootstrap-only, a readiness.k8s.io/ key, not the daemon's", rule.Spec.EnforcementMode, rule.Spec.Taint.Key)
	}
	if !strings.Contains(readme, "--startup-taint "+DefaultTaintKey) || !strings.Contains(readme, "register-with-taints="+DefaultTaintKey) {
		t.Errorf("the README's install example does not use %s", DefaultTaintKey)
	}
}
