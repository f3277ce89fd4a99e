package prefetch

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// collidingRefs returns n distinct references of one repository whose
// container names, before any de-duplication, would be the same: the same
// last path component and the same 6 hex digits of hash. A tenant finds such
// a set in a fraction of a second.
func collidingRefs(t *testing.T, repo string, n int) []string {
	t.Helper()
	byHash := map[string][]string{}
	for i := 0; i < 1<<22; i++ {
		ref := fmt.Sprintf("%s:t%d", repo, i)
		sum := sha256.Sum256([]byte(ref))
		h := hex.EncodeToString(sum[:])[:6]
		byHash[h] = append(byHash[h], ref)
		if len(byHash[h]) == n {
			return byHash[h]
		}
	}
	t.Fatalf("no %d references of %s share 24 bits of hash", n, repo)
	return nil
}

func TestContainerNamesAreUniqueWhateverTheReferences(t *testing.T) {
	pair := collidingRefs(t, "docker.io/library/x", 2)
	// The longest names: 40 characters kept, "image-" before a digit.
	triple := collidingRefs(t, "registry.example/team/9"+strings.Repeat("long-name", 8), 3)
	for _, tc := range []struct {
		name   string
		images []string
	}{
		{"two references with one hash", pair},
		{"three references with one hash, the longest name", triple},
		{"colliding references among others", append([]string{"docker.io/library/a:1", "docker.io/library/x:zz"}, pair...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := cfg.Pod(tc.images, 0, corev1.PullIfNotPresent)
			seen := map[string]bool{}
			for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
				if errs := validation.IsDNS1123Label(c.Name); len(errs) > 0 {
					t.Errorf("container name %q: %v", c.Name, errs)
				}
				if seen[c.Name] {
					t.Errorf("container name %q repeated in %v", c.Name, tc.images)
				}
				seen[c.Name] = true
			}
			// The same images in another order give the same names.
			reversed := append([]string(nil), tc.images...)
			for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
				reversed[i], reversed[j] = reversed[j], reversed[i]
			}
			again := cfg.Pod(reversed, 0, corev1.PullIfNotPresent)
			for i, c := range p.Spec.Containers {
				if again.Spec.Containers[i].Name != c.Name || again.Spec.Containers[i].Image != c.Image {
					t.Errorf("container %d: %s=%s, then %s=%s", i, c.Name, c.Image, again.Spec.Containers[i].Name, again.Spec.Containers[i].Image)
				}
			}
		})
	}
}

func TestOwns(t *testing.T) {
	ours := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "icd", UID: "ds-uid"}
	other := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "icd", UID: "other-uid"}
	for _, tc := range []struct {
		name  string
		owner *metav1.OwnerReference
		refs  []metav1.OwnerReference
		want  bool
	}{
		{"our DaemonSet", &ours, []metav1.OwnerReference{ours}, true},
		{"our DaemonSet among others", &ours, []metav1.OwnerReference{other, ours}, true},
		{"no owner reference", &ours, nil, false},
		{"the same name, another UID", &ours, []metav1.OwnerReference{other}, false},
		{"no owner configured", nil, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.Owner = tc.owner
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: tc.refs}}
			if got := c.Owns(p); got != tc.want {
				t.Errorf("Owns = %t, want %t", got, tc.want)
			}
		})
	}
}

// With the warden ConfigMap, a prefetch pod has nothing that keeps a plain
// `kubectl drain` from evicting it: no emptyDir, no init container, and a
// controller (the ConfigMap) besides its owner (the DaemonSet).
func TestPodWithWardenConfigMapHasNoEmptyDirAndAController(t *testing.T) {
	ds := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "icd", UID: "ds-uid"}
	cm := &metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "image-cache-daemon-warden", UID: "cm-uid"}
	old := Config{Namespace: "icd", NodeName: "n", WardenImage: "w", Owner: ds, BatchSize: 20}
	if p := old.Pod([]string{"docker.io/library/a:latest"}, 0, corev1.PullIfNotPresent); p.Spec.Volumes[0].EmptyDir == nil || len(p.Spec.InitContainers) != 1 {
		t.Fatalf("without the ConfigMap, want the init container and emptyDir: %+v", p.Spec)
	}
	cfg := old
	cfg.Warden = &WardenSource{ConfigMap: cm.Name, Key: "arm64"}
	cfg.Controller = cm
	p := cfg.Pod([]string{"docker.io/library/a:latest", "docker.io/library/b:latest"}, 0, corev1.PullIfNotPresent)
	if len(p.Spec.InitContainers) != 0 {
		t.Errorf("init containers %v", p.Spec.InitContainers)
	}
	if len(p.Spec.Volumes) != 1 || p.Spec.Volumes[0].ConfigMap == nil || p.Spec.Volumes[0].EmptyDir != nil {
		t.Fatalf("volumes %+v, want only the warden ConfigMap", p.Spec.Volumes)
	}
	item := p.Spec.Volumes[0].ConfigMap.Items
	if len(item) != 1 || item[0].Key != "arm64" || item[0].Path != "warden" || item[0].Mode == nil || *item[0].Mode&0o111 == 0 {
		t.Errorf("items %+v, want the node's architecture as an executable warden", item)
	}
	if c := metav1.GetControllerOf(p); c == nil || c.UID != cm.UID {
		t.Errorf("controller %+v, want the warden ConfigMap", c)
	}
	if !cfg.Owns(p) {
		t.Error("the pod is not owned by the DaemonSet any more")
	}
	for _, c := range p.Spec.Containers {
		if len(c.Command) != 1 || c.Command[0] != "/icd/warden" {
			t.Errorf("container %s runs %v", c.Name, c.Command)
		}
	}
}
