package install

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
)

// mustObjects are the objects of installation o; rendering them must not fail.
func mustObjects(t testing.TB, o Options) []runtime.Object {
	t.Helper()
	objs, err := Objects(o)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0", 15 * time.Minute: "15m", time.Hour: "1h", 90 * time.Minute: "1h30m",
		90 * time.Second: "1m30s", 1500 * time.Millisecond: "1.5s", time.Hour + time.Second: "1h0m1s",
	} {
		got := shortDuration(d)
		if got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(got); err != nil && got != "0" || back != d {
			t.Errorf("%q reads back as %v, %v", got, back, err)
		}
	}
}
