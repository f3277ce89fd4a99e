package cli

import (
	"os"
	"testing"
	"time"
)

// The tests whose daemons publish no report read the pods at once; the
// test of the grace itself sets it back.
func TestMain(m *testing.M) {
	reportGrace = 20 * time.Millisecond
	os.Exit(m.Run())
}
