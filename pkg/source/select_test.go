package source

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestSelect(t *testing.T) {
	want := func(ns, obj string, images ...string) []Want {
		var out []Want
		for _, img := range images {
			out = append(out, Want{Image: img, Origin: "ConfigMap " + ns + "/" + obj, Namespace: ns})
		}
		return out
	}
	var wants []Want
	wants = append(wants, want("a", "x", "a1", "a2", "a3", "a4")...)
	wants = append(wants, want("b", "x", "b1", "b2")...)
	wants = append(wants, want("c", "x", "c1")...)
	wants = append(wants, want("a", "y", "shared")...)
	wants = append(wants, want("b", "y", "shared")...)
	wants = append(wants, Want{Image: "static", Origin: "flag --image", Static: true})
	for _, tc := range []struct {
		name  string
		limit int
		keep  []string
	}{
		{"under the limit: everything", 9, []string{"static", "a1", "b1", "c1", "shared", "a2", "b2", "a3", "a4"}},
		{"the flag first", 1, []string{"static"}},
		{"one round: each namespace's first image", 4, []string{"static", "a1", "b1", "c1"}},
		// Round 2: namespace a's turn goes to its object y; b's to y too,
		// whose image a took: b's turn is spent.
		{"objects take turns within a namespace; a taken image spends the turn", 6, []string{"static", "a1", "b1", "c1", "shared", "a2"}},
		{"zero", 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keep, over := Select(wants, tc.limit)
			if !reflect.DeepEqual(keep, tc.keep) {
				t.Fatalf("keep %v, want %v", keep, tc.keep)
			}
			if n := len(Images(wants)); len(keep)+len(over) != n {
				t.Fatalf("%d kept and %d over of %d", len(keep), len(over), n)
			}
		})
	}
}

// The audit's finding: one tenant with 1,000 one-image objects whose names
// sort first took every slot. Now another namespace's 10 images and the
// admin's --image are served whatever the number of objects.
func TestSelectIsFairPerTenant(t *testing.T) {
	var wants []Want
	for i := range 1000 {
		wants = append(wants, Want{Image: fmt.Sprintf("greedy/%04d", i), Origin: fmt.Sprintf("ConfigMap aaa/%04d", i), Namespace: "aaa"})
	}
	for i := range 75_000 {
		wants = append(wants, Want{Image: fmt.Sprintf("huge/%05d", i), Origin: "ConfigMap aab/huge", Namespace: "aab"})
	}
	for i := range 10 {
		wants = append(wants, Want{Image: fmt.Sprintf("team/%d", i), Origin: "ConfigMap team/images", Namespace: "team"})
	}
	wants = append(wants, Want{Image: "admin/base", Origin: "flag --image", Static: true})
	keep, over := Select(wants, 1000)
	count := map[string]int{}
	for _, k := range keep {
		count[strings.SplitN(k, "/", 2)[0]]++
	}
	if len(keep) != 1000 || count["admin"] != 1 || count["team"] != 10 || count["greedy"] != 495 || count["huge"] != 494 {
		t.Fatalf("kept %d: %v; want 1000: the flag's 1, team's 10, and 495 and 494 for the two big namespaces", len(keep), count)
	}
	if len(over) != 76_011-1000 {
		t.Fatalf("%d over, want %d", len(over), 76_011-1000)
	}
}
