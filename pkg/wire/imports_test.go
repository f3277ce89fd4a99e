package wire

import (
	"os/exec"
	"strings"
	"testing"
)

// wire is a leaf: the daemon, the planner and the plugin all import it, so
// it imports only the standard library, k8s.io/apimachinery and
// pkg/imageref. The check runs `go list`, so a new import fails here.
func TestImportsOnlyLeaves(t *testing.T) {
	const module = "github.com/dcherman/image-cache-daemon/"
	out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, imp := range strings.Fields(string(out)) {
		std := !strings.Contains(strings.Split(imp, "/")[0], ".")
		if !std && !strings.HasPrefix(imp, "k8s.io/apimachinery/") && imp != module+"pkg/imageref" {
			t.Errorf("pkg/wire imports %s; it may import only the standard library, k8s.io/apimachinery and pkg/imageref", imp)
		}
	}
	out, err = exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, module) && pkg != module+"pkg/wire" && pkg != module+"pkg/imageref" {
			t.Errorf("pkg/wire depends on %s; of this module it may depend on pkg/imageref only", pkg)
		}
	}
}
