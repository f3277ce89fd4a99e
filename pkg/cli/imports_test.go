package cli

import (
	"os/exec"
	"strings"
	"testing"
)

// The plugin links neither the daemon nor its controller and metrics
// libraries: they would grow the binary users download and blur what the
// plugin may do. And cobra stays in the command packages. The check runs
// `go list`, so a new import that breaks a rule fails here.
func TestImportRules(t *testing.T) {
	const module = "github.com/dcherman/image-cache-daemon/"
	out, err := exec.Command("go", "list", "-deps", "../../cmd/kubectl-imagecache").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{module + "pkg/daemon", module + "pkg/node", module + "pkg/planner", module + "pkg/sweep", module + "pkg/metrics", "github.com/prometheus/"} {
			if pkg == banned || strings.HasPrefix(pkg, banned+"/") || strings.HasPrefix(banned, "github.com/prometheus/") && strings.HasPrefix(pkg, banned) {
				t.Errorf("the plugin depends on %s", pkg)
			}
		}
	}
	out, err = exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	commands := []string{module + "cmd/", module + "hack/", module + "pkg/cli"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		allowed := false
		for _, c := range commands {
			allowed = allowed || strings.HasPrefix(pkg, c)
		}
		for _, imp := range imports {
			if imp == "github.com/spf13/cobra" && !allowed {
				t.Errorf("%s imports cobra; only commands may (cmd/*, pkg/cli)", pkg)
			}
		}
	}
}
