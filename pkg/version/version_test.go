package version

import "testing"

func TestStringPrefersStampedVersion(t *testing.T) {
	saved := Version
	t.Cleanup(func() { Version = saved })

	Version = "v1.2.3"
	if got := String(); got != "v1.2.3" {
		t.Fatalf("String() = %q, want the stamped v1.2.3", got)
	}
	Version = "dev"
	// A test binary carries no module version, so the fallback is "dev".
	if got := String(); got != "dev" {
		t.Fatalf("String() = %q, want dev for an unstamped test binary", got)
	}
}
