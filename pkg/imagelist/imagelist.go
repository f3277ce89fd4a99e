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

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/listformat"
	"github.com/dcherman/image-cache-daemon/pkg/source"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// FieldManager names the plugin's edits.
const FieldManager = "kubectl-imagecache"

// Labels a new image list gets, so that the daemon's default selector finds it.
var Labels = map[string]string{
	wire.LabelPartOf:    wire.PartOf,
	wire.LabelComponent: wire.ComponentImages,
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
// untouched and reported as an *UnreadableError, since rewriting it would
// lose what it holds.
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
				Data:       map[string]string{source.DefaultKey: listformat.Render(res.After)},
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
		var current []string
		if !source.Empty(cm) {
			var problems []error
			current, problems, err = listformat.ParseImageList(cm.Data[key])
			if err != nil || len(problems) > 0 {
				return &UnreadableError{Namespace: ns, Name: name, Key: key, Err: err, Problems: problems}
			}
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
		cm.Data[key] = listformat.Render(res.After)
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

// UnreadableError is why Edit refused to change a list someone broke by
// hand: rewriting it would lose what it holds, so the user fixes it first.
// Its message names the ConfigMap and the key, says what is wrong and how
// to fix it.
type UnreadableError struct {
	Namespace, Name, Key string
	// Err says why the value as a whole is not a list; nil when it is a
	// list with bad entries.
	Err error
	// Problems are the bad entries, capped as listformat.ParseImageList
	// caps them.
	Problems []error
}

// Error is the message the plugin shows, one problem a line.
func (e *UnreadableError) Error() string {
	var b strings.Builder
	what := "holds entries that are not image references"
	if e.Err != nil {
		what = "cannot be read"
	}
	fmt.Fprintf(&b, "ConfigMap %s/%s key %s %s, so nothing was changed:\n", e.Namespace, e.Name, imageref.Quote(e.Key), what)
	for _, p := range e.Unwrap() {
		fmt.Fprintf(&b, "  %v\n", p)
	}
	fmt.Fprintf(&b, "fix it with `kubectl edit configmap/%s -n %s`: the key must hold %s", e.Name, e.Namespace, listformat.ExpectedForm)
	return b.String()
}

// Unwrap returns what is wrong: Err, or the Problems.
func (e *UnreadableError) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Err}
	}
	return e.Problems
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
