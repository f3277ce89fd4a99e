package install_test

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/install/installtest"
)

func results(rs []install.Result) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Kind+"/"+r.Name+" "+r.Action)
	}
	return strings.Join(out, "\n")
}

// An existing image list holds the user's images: install keeps it as it is.
func TestApplyKeepsAnExistingImageList(t *testing.T) {
	var list runtime.Object
	for _, obj := range installtest.Objects(t, install.DefaultOptions("v1.0.0")) {
		if u, _ := install.Unstructured(obj); u.GetKind() == "ConfigMap" && u.GetName() == install.DefaultConfigMap {
			list = obj.DeepCopyObject()
		}
	}
	a, fake := installtest.NewApplier(t, list)
	acts := &fake.Acts
	rs, err := a.Apply(context.Background(), installtest.Objects(t, install.DefaultOptions("v1.0.0")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(results(rs), "ConfigMap/"+install.DefaultConfigMap+" kept") {
		t.Errorf("results:\n%s\nwant the image list kept", results(rs))
	}
	for _, act := range *acts {
		if strings.HasPrefix(act, "apply ConfigMap") && strings.HasSuffix(act, "/"+install.DefaultConfigMap) {
			t.Errorf("the existing image list was applied over: %v", *acts)
		}
	}
	if !strings.Contains(results(rs), "DaemonSet/"+install.Name+" created") {
		t.Errorf("results:\n%s\nwant the DaemonSet created", results(rs))
	}
}

// A namespace that was there before (default, a team's) is never labelled
// by apply nor deleted by uninstall.
func TestForeignNamespaceIsNeitherLabelledNorDeleted(t *testing.T) {
	o := install.DefaultOptions("v1.0.0")
	o.Namespace = "platform"
	foreign := &unstructured.Unstructured{}
	foreign.SetAPIVersion("v1")
	foreign.SetKind("Namespace")
	foreign.SetName("platform")
	a, fake := installtest.NewApplier(t, foreign)
	acts := &fake.Acts
	rs, err := a.Apply(context.Background(), installtest.Objects(t, o))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(results(rs), "Namespace/platform kept") {
		t.Errorf("apply results:\n%s\nwant the namespace kept", results(rs))
	}
	rs, err = a.Delete(context.Background(), installtest.Objects(t, o))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(results(rs), "Namespace/platform kept (not created by image-cache-daemon)") {
		t.Errorf("delete results:\n%s\nwant the namespace kept", results(rs))
	}
	for _, act := range *acts {
		if strings.HasSuffix(act, "Namespace platform") || act == "delete namespaces platform" {
			t.Errorf("the foreign namespace was touched: %v", *acts)
		}
	}
	// The workload goes first: its pods must not outlive their RBAC.
	if len(*acts) == 0 || !strings.HasPrefix(nthDelete(*acts, 0), "delete daemonsets") {
		t.Errorf("delete order %v, want the DaemonSet first", *acts)
	}
}

// Uninstalling what is not there is not an error.
func TestDeleteOfNothingSaysNotFound(t *testing.T) {
	a, _ := installtest.NewApplier(t)
	rs, err := a.Delete(context.Background(), installtest.Objects(t, install.DefaultOptions("v1.0.0")))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Action != "not found" {
			t.Errorf("%s/%s: %s, want not found", r.Kind, r.Name, r.Action)
		}
	}
}

// nthDelete returns the i-th delete action.
func nthDelete(acts []string, i int) string {
	n := 0
	for _, a := range acts {
		if strings.HasPrefix(a, "delete ") {
			if n == i {
				return a
			}
			n++
		}
	}
	return ""
}
