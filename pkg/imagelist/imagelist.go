// Package imagelist edits the image lists kept in labelled ConfigMaps (the
// ones the daemon's ConfigMap source reads) with optimistic concurrency, so
// that concurrent edits lose nothing.
package imagelist

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/dcherman/image-cache-daemon/pkg/source"
)

// FieldManager names the plugin's edits.
const FieldManager = "kubectl-imagecache"

// Labels a new image list gets, so that the daemon's default selector finds it.
var Labels = map[string]string{
	"app.kubernetes.io/part-of":   "image-cache-daemon",
	"app.kubernetes.io/component": "images",
}

// conflictBackoff outlasts many concurrent editors (client-go's default
// gives up after 5 conflicts, which 20 concurrent adds can exceed); jitter
// spreads the retries so that they do not collide again.
var conflictBackoff = wait.Backoff{Steps: 30, Duration: 10 * time.Millisecond, Factor: 1.5, Jitter: 1, Cap: 2 * time.Second}

// Change computes the new list from the current one (both normalised).
type Change func(current []string) []string

// Result is what an edit did.
type Result struct {
	Before, After []string
	Created       bool
}

// Edit reads the list in ConfigMap ns/name, applies change and writes the
// result back if it differs. A ConfigMap changed by someone else in between
// makes the update fail with a conflict; Edit then reads it again and
// re-applies change, so no concurrent edit is lost. A missing ConfigMap is
// created (with Labels); an existing one whose list cannot be read is left
// untouched and reported, since rewriting it would lose what it holds.
func Edit(ctx context.Context, client kubernetes.Interface, ns, name string, change Change) (Result, error) {
	cms := client.CoreV1().ConfigMaps(ns)
	var res Result
	err := retry.RetryOnConflict(conflictBackoff, func() error {
		res = Result{}
		cm, err := cms.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			res.After = sortedUnique(change(nil))
			if len(res.After) == 0 {
				return nil
			}
			cm = &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: maps.Clone(Labels)},
				Data:       map[string]string{source.DefaultKey: Render(res.After)},
			}
			_, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: FieldManager})
			if apierrors.IsAlreadyExists(err) {
				// Created by someone else meanwhile: start over on it.
				return apierrors.NewConflict(corev1.Resource("configmaps"), name, err)
			}
			res.Created = err == nil
			return err
		}
		if err != nil {
			return fmt.Errorf("reading ConfigMap %s/%s: %w", ns, name, err)
		}
		key := source.ConfigMapKey(cm)
		current, problems, err := source.ParseImageList(cm.Data[key])
		if err != nil {
			return fmt.Errorf("ConfigMap %s/%s key %q: %w; fix it with kubectl edit first, nothing was changed", ns, name, key, err)
		}
		if len(problems) > 0 {
			return fmt.Errorf("ConfigMap %s/%s key %q holds invalid entries (%v); fix them with kubectl edit first, nothing was changed", ns, name, key, problems)
		}
		res.Before = current
		res.After = sortedUnique(change(current))
		if slices.Equal(res.Before, res.After) {
			return nil
		}
		cm = cm.DeepCopy()
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[key] = Render(res.After)
		// The update carries the resourceVersion just read: a concurrent
		// edit makes it fail with a conflict instead of being overwritten.
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: FieldManager})
		return err
	})
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// Render writes a list as the YAML the ConfigMap holds.
func Render(images []string) string {
	if len(images) == 0 {
		return "[]\n"
	}
	var b strings.Builder
	for _, img := range images {
		b.WriteString("- ")
		b.WriteString(img)
		b.WriteString("\n")
	}
	return b.String()
}

func sortedUnique(in []string) []string {
	set := map[string]bool{}
	for _, s := range in {
		set[s] = true
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}
