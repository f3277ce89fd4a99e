package cachestate

import (
	"strings"
	"testing"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
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
		st      wire.ImageStatus
		current string
		want    bool
	}{
		{"older", wire.ImageStatus{Image: alpine, State: wire.Cached, Digest: older}, current, true},
		{"older, pulling", wire.ImageStatus{Image: alpine, State: wire.Pulling, Digest: older}, current, true},
		{"current", wire.ImageStatus{Image: alpine, State: wire.Cached, Digest: current}, current, false},
		{"no digest known", wire.ImageStatus{Image: alpine, State: wire.Cached}, current, false},
		{"failed", wire.ImageStatus{Image: alpine, State: wire.Failed}, current, false},
		{"unchecked", wire.ImageStatus{Image: alpine, State: wire.Cached, Digest: older}, "", false},
		{"pinned", wire.ImageStatus{Image: pinned, State: wire.Cached, Digest: older}, pin, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Stale(tc.st, tc.current); got != tc.want {
				t.Errorf("Stale = %v, want %v", got, tc.want)
			}
		})
	}
}
