package install

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// A second install reports "unchanged" for an object whose controller wrote
// its status in between (a ValidatingAdmissionPolicy's type check), and
// "configured" for a real change.
func TestUnchanged(t *testing.T) {
	obj := func(rv string, generation int64, label string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{}}
		u.SetResourceVersion(rv)
		u.SetGeneration(generation)
		u.SetLabels(map[string]string{"l": label})
		return u
	}
	applied := func(u *unstructured.Unstructured, at string) *unstructured.Unstructured {
		when, _ := time.Parse("15:04", at)
		u.SetManagedFields([]metav1.ManagedFieldsEntry{
			{Manager: "other", Operation: metav1.ManagedFieldsOperationUpdate, Time: &metav1.Time{Time: time.Now()}},
			{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationApply, Time: &metav1.Time{Time: when}},
		})
		return u
	}
	for _, tc := range []struct {
		name          string
		before, after *unstructured.Unstructured
		want          bool
	}{
		{"same resourceVersion", obj("1", 0, "a"), obj("1", 0, "a"), true},
		{"status written meanwhile", obj("1", 3, "a"), obj("2", 3, "a"), true},
		{"spec changed", obj("1", 3, "a"), obj("2", 4, "a"), false},
		{"label changed", obj("1", 3, "a"), obj("2", 3, "b"), false},
		{"no generation, new resourceVersion", obj("1", 0, "a"), obj("2", 0, "a"), false},
		{"a Lease renewed meanwhile", applied(obj("1", 0, "a"), "10:00"), applied(obj("2", 0, "a"), "10:00"), true},
		{"what the installer applies changed", applied(obj("1", 0, "a"), "10:00"), applied(obj("2", 0, "a"), "10:05"), false},
		{"its entry rewritten, the spec as it was", applied(obj("1", 3, "a"), "10:00"), applied(obj("2", 3, "a"), "10:05"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unchanged(tc.before, tc.after); got != tc.want {
				t.Errorf("unchanged = %v, want %v", got, tc.want)
			}
		})
	}
}
