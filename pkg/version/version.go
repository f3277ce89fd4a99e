// Package version holds the build's version, stamped at link time with
// -ldflags "-X github.com/dcherman/image-cache-daemon/pkg/version.Version=v1.2.3".
package version

import "runtime/debug"

// Repository is where the project image of each release is published.
const Repository = "ghcr.io/dcherman/image-cache-daemon"

// Image returns the project image of release v.
func Image(v string) string { return Repository + ":" + v }

// Version is the release version of this build ("dev" when not stamped).
var Version = "dev"

// Commit is the git commit of this build, when stamped.
var Commit = ""

// String returns the version, falling back to the module version recorded by
// `go install module@version` when the linker did not stamp one.
func String() string {
	if Version != "dev" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return Version
}
