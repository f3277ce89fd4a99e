// Package testcluster holds what the e2e tests and the benchmark command
// both do to the local cluster: install the daemon, wait for it, read its
// prefetch pods, and install or remove Argo's CRDs.
package testcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// Applier returns an installer for the cluster behind cfg.
func Applier(cfg *rest.Config, kube kubernetes.Interface) (*install.Applier, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kube.Discovery()))
	return &install.Applier{Dynamic: dyn, Mapper: mapper}, nil
}

// WaitRollout waits until the DaemonSet in ns runs its current spec on
// every node it should.
func WaitRollout(ctx context.Context, kube kubernetes.Interface, ns string, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		ds, err := kube.AppsV1().DaemonSets(ns).Get(ctx, install.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		st := ds.Status
		return st.ObservedGeneration >= ds.Generation && st.DesiredNumberScheduled > 0 &&
			st.NumberReady == st.DesiredNumberScheduled && st.UpdatedNumberScheduled == st.DesiredNumberScheduled &&
			st.NumberAvailable == st.DesiredNumberScheduled, nil
	})
}

// PrefetchPods lists the prefetch pods in ns.
func PrefetchPods(ctx context.Context, kube kubernetes.Interface, ns string) ([]*corev1.Pod, error) {
	list, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(wire.PrefetchLabels()).String(),
	})
	if err != nil {
		return nil, err
	}
	pods := make([]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		pods[i] = &list.Items[i]
	}
	return pods, nil
}

// ArgoKinds are the Argo resources the daemon reads.
var ArgoKinds = []string{"workflowtemplates", "clusterworkflowtemplates", "cronworkflows"}

// InstallArgoCRDs creates the CRDs of ArgoKinds, read from the
// argo-workflows module, and waits until they are served.
func InstallArgoCRDs(ctx context.Context, cfg *rest.Config) error {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/argoproj/argo-workflows/v3").Output()
	if err != nil {
		return fmt.Errorf("locating the argo-workflows module: %w", err)
	}
	c, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "manifests", "base", "crds", "minimal")
	for _, k := range ArgoKinds {
		raw, err := os.ReadFile(filepath.Join(dir, "argoproj.io_"+k+".yaml"))
		if err != nil {
			return err
		}
		crd := &apiextv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(raw, crd); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		if _, err := c.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, k := range ArgoKinds {
			crd, err := c.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, k+".argoproj.io", metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			established := false
			for _, cond := range crd.Status.Conditions {
				established = established || (cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue)
			}
			if !established {
				return false, nil
			}
		}
		return true, nil
	})
}

// DeleteArgoCRDs removes the CRDs of ArgoKinds (and so every object of them).
func DeleteArgoCRDs(ctx context.Context, cfg *rest.Config) error {
	c, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, k := range ArgoKinds {
		err := c.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, k+".argoproj.io", metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting the %s CRD: %w", k, err)
		}
	}
	// Wait until they are gone: a CRD still terminating (its objects are
	// being deleted) cannot be created again, so a later install would fail.
	return wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, k := range ArgoKinds {
			if _, err := c.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, k+".argoproj.io", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return false, nil
			}
		}
		return true, nil
	})
}
