//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// TestWantedSetInParts: a wanted set too large for one ConfigMap is
// published by the planner, in its pod, as a head and parts; every node
// daemon reads it whole with its own credentials (get on the parts, by
// name); the plugin lists all of it; when the set shrinks, the planner
// deletes the parts it no longer names.
func TestWantedSetInParts(t *testing.T) {
	ctx := context.Background()
	bin := buildGo(t, "github.com/dcherman/image-cache-daemon/cmd/kubectl-imagecache")
	suffix := strings.ToLower(rand.String(5))
	ns := "icd-parts-" + suffix
	users := newNamespace(t)
	good := inCluster(t, pushRandom(t, "e2e/parts-good:"+suffix, 21))

	// Two lists of 1,800 long references each, to images that do not exist
	// (the registry answers at once that it has no such manifest): well
	// over the 1 MiB of set one ConfigMap holds. They are there before the
	// install, so the first set any node reads is in parts.
	const perList = 1800
	for l := range 2 {
		refs := make([]string, perList)
		for i := range refs {
			sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d/%d", suffix, l, i))
			path := strings.Repeat(hex.EncodeToString(sum[:]), 3)
			refs[i] = fmt.Sprintf(`"%s/e2e/parts/%s:v1"`, clusterRegistry, path)
		}
		imageList(t, users, fmt.Sprintf("bulk-%d", l), "["+strings.Join(refs, ",")+"]")
	}
	all := 2*perList + 1

	o := install.DefaultOptions("e2e")
	o.Namespace, o.Image = ns, daemonImage(t)
	// Each node caches the static image and a few more (2 pods of 20),
	// and counts the rest as over its limit: a count only a node that read
	// the whole set can give.
	o.ExtraArgs = []string{"--image=" + good, "--max-images=4000", "--max-prefetch-pods=2"}
	installDaemon(t, o)

	set := waitSet(t, ns, fmt.Sprintf("all %d images", all), func(s *wanted.Set) bool { return len(s.Images) == all })
	if len(set.Parts) == 0 {
		t.Fatalf("%d images in one ConfigMap; want a set in parts", all)
	}
	for i := range set.Parts {
		cm, err := env.client.CoreV1().ConfigMaps(ns).Get(ctx, wanted.PartName(i+1), metav1.GetOptions{})
		if err != nil || len(cm.OwnerReferences) != 1 || cm.OwnerReferences[0].Kind != "DaemonSet" {
			t.Errorf("part %d: %v, owners %v; want it owned by the DaemonSet, as the head is", i+1, err, cm.OwnerReferences)
		}
	}
	t.Logf("the set: %d images, a head and %d parts", len(set.Images), len(set.Parts))

	nodes := nodeNames(t)
	for _, node := range nodes {
		waitCachedOn(t, ns, good, node)
	}
	daemons, err := env.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: wire.LabelComponent + "=" + wire.ComponentDaemon})
	if err != nil || len(daemons.Items) != len(nodes) {
		t.Fatalf("%d daemon pods (%v); want one per node, %d", len(daemons.Items), err, len(nodes))
	}
	for _, p := range daemons.Items {
		waitEventWith(t, ns, p.Name, "ImageLimitExceeded", fmt.Sprintf("%d wanted images are not cached on node %s:", all-40, p.Spec.NodeName))
	}

	out := mustPlugin(t, bin, "list", "-n", ns, "-o", "json")
	var listed struct {
		Images []json.RawMessage `json:"images"`
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed.Images) != all {
		t.Errorf("list -o json: %d images (%v); want %d", len(listed.Images), err, all)
	}

	// The set shrinks to one ConfigMap: the parts go.
	for l := range 2 {
		if err := env.client.CoreV1().ConfigMaps(users).Delete(ctx, fmt.Sprintf("bulk-%d", l), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitSet(t, ns, "the static image alone", func(s *wanted.Set) bool { return len(s.Images) == 1 && len(s.Parts) == 0 })
	err = wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := env.client.CoreV1().ConfigMaps(ns).Get(ctx, wanted.PartName(1), metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Errorf("configmap/%s is still there once the set fits one ConfigMap", wanted.PartName(1))
	}
}
