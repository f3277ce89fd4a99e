package cachestate

import (
	"strings"
	"testing"
)

// A node holds an image under an older digest when it has it (cached or
// pulling) under another digest than the current one; not when it holds
// the current one, holds it under no known digest, has not got it, or the
// current digest is not known; never for a reference pinned by digest.
func TestStale(t *testing.T) {
	const alpine = "docker.io/library/alpine:latest"
	older, current := "sha256:"+strings.Repeat("e", 64), "sha256:"+strings.Repeat("a", 64)
	pin := "sha256:" + strings.Repeat("c", 64)
	pinned := "docker.io/library/busybox@" + pin
	for _, tc := range []struct {
		name    string
		st      ImageStatus
		current string
		want    bool
	}{
		{"older", ImageStatus{Image: alpine, State: Cached, Digest: older}, current, true},
		{"older, pulling", ImageStatus{Image: alpine, State: Pulling, Digest: older}, current, true},
		{"current", ImageStatus{Image: alpine, State: Cached, Digest: current}, current, false},
		{"no digest known", ImageStatus{Image: alpine, State: Cached}, current, false},
		{"failed", ImageStatus{Image: alpine, State: Failed}, current, false},
		{"unchecked", ImageStatus{Image: alpine, State: Cached, Digest: older}, "", false},
		{"pinned", ImageStatus{Image: pinned, State: Cached, Digest: older}, pin, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Stale(tc.st, tc.current); got != tc.want {
				t.Errorf("Stale = %v, want %v", got, tc.want)
			}
		})
	}
}
