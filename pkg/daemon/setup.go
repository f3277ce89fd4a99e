package daemon

import (
	"context"
	"fmt"
	goruntime "runtime"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/dcherman/image-cache-daemon/pkg/metrics"
	"github.com/dcherman/image-cache-daemon/pkg/options"
	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
	"github.com/dcherman/image-cache-daemon/pkg/version"
	"github.com/dcherman/image-cache-daemon/pkg/warden"
)

// Event reasons; fixed so that alerts and `kubectl get events
// --field-selector reason=...` can rely on them.
const (
	ReasonInvalidImages = "InvalidImages"
	ReasonSourceProblem = "SourceProblem"
	// ReasonImageLimitExceeded: the sources want more images than this
	// node caches (--max-images, --max-prefetch-pods, the node's pods).
	ReasonImageLimitExceeded = "ImageLimitExceeded"
)

// prefetchConfig derives the prefetch pod settings from the options and from
// the daemon's own pod: the pods are owned by the DaemonSet (so a daemon
// restart or upgrade keeps them, and uninstalling removes them), the warden
// comes from the daemon's own image (already on the node), and tolerations
// and pull secrets default to the daemon's.
func prefetchConfig(o *options.Options, self *corev1.Pod) (prefetch.Config, error) {
	owner := metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: self.Name, UID: self.UID}
	if ref := metav1.GetControllerOf(self); ref != nil && ref.Kind == "DaemonSet" {
		owner = metav1.OwnerReference{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, UID: ref.UID}
	}
	warden := o.WardenImage
	if warden == "" {
		warden = ownImage(self)
	}
	tolerations, err := o.Tolerations()
	if err != nil {
		return prefetch.Config{}, fmt.Errorf("--prefetch-tolerations: %w", err)
	}
	if tolerations == nil {
		tolerations = self.Spec.Tolerations
	}
	secrets := append([]string(nil), o.ImagePullSecrets...)
	for _, s := range self.Spec.ImagePullSecrets {
		secrets = appendUnique(secrets, s.Name)
	}
	return prefetch.Config{
		Namespace:         o.PodNamespace,
		NodeName:          o.NodeName,
		WardenImage:       warden,
		Owner:             &owner,
		Tolerations:       tolerations,
		PriorityClassName: o.PrefetchPriorityClass,
		ImagePullSecrets:  secrets,
		BatchSize:         o.BatchSize,
	}, nil
}

// useWardenConfigMap makes prefetch pods mount the warden executable for
// this node's architecture from the installer's ConfigMap, with that
// ConfigMap as their controller: then they have no emptyDir and a
// controller, and a plain `kubectl drain` evicts them even while they pull.
// Without the ConfigMap (an installation by an older version), the pods
// keep the init container and emptyDir; the reason is logged once.
func useWardenConfigMap(ctx context.Context, client kubernetes.Interface, cfg *prefetch.Config) {
	logger := klog.FromContext(ctx)
	cm, err := client.CoreV1().ConfigMaps(cfg.Namespace).Get(ctx, warden.ConfigMap, metav1.GetOptions{})
	if err != nil {
		logger.Info("Prefetch pods copy the warden with an init container into an emptyDir, which keeps a plain kubectl drain from evicting them while they pull; run kubectl imagecache install again to fix",
			"configMap", klog.KRef(cfg.Namespace, warden.ConfigMap), "err", err)
		return
	}
	if _, ok := cm.BinaryData[goruntime.GOARCH]; !ok {
		logger.Info("The warden ConfigMap has no executable for this node's architecture; prefetch pods copy the warden with an init container",
			"configMap", klog.KObj(cm), "architecture", goruntime.GOARCH)
		return
	}
	cfg.Warden = &prefetch.WardenSource{ConfigMap: cm.Name, Key: goruntime.GOARCH}
	cfg.Controller = &metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: cm.Name, UID: cm.UID}
}

// ownImage is the image of the daemon's container (the one running the
// daemon binary), else the release image of this version.
func ownImage(self *corev1.Pod) string {
	for _, c := range self.Spec.Containers {
		if len(c.Command) == 0 || strings.HasSuffix(c.Command[0], "image-cache-daemon") {
			return c.Image
		}
	}
	return version.Image(version.String())
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// eventScheme knows the Argo kinds too, so that Events can refer to them.
func eventScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(wfv1.AddToScheme(s))
	return s
}

// reporter turns source problems into an Event on the object, a log line
// and a metric.
type reporter struct {
	// self is the daemon's pod: problems of a source as a whole (a missing
	// CRD) are reported there.
	self     *corev1.Pod
	logger   klog.Logger
	recorder record.EventRecorder
	metrics  *metrics.Metrics
	// leading says whether this daemon reports problems found in objects
	// as Events (see ReporterLease); nil means always. The others log them
	// at -v=2 and count them.
	leading func() bool
}

func (r *reporter) Problems(source string, obj runtime.Object, problems []error) {
	r.metrics.SourceErrors.WithLabelValues(source).Add(float64(len(problems)))
	for _, p := range problems {
		if obj == nil {
			r.logger.Error(p, "Source problem", "source", source)
			if r.self != nil {
				r.recorder.Event(r.self, corev1.EventTypeWarning, ReasonSourceProblem, p.Error())
			}
			continue
		}
		if r.leading != nil && !r.leading() {
			r.logger.V(2).Info("Skipping what cannot be cached (the reporter daemon sends the Event)", "source", source, "object", klog.KObj(objectMeta(obj)), "problem", p.Error())
			continue
		}
		r.logger.Error(p, "Skipping what cannot be cached", "source", source, "object", klog.KObj(objectMeta(obj)))
		r.recorder.Event(obj, corev1.EventTypeWarning, ReasonInvalidImages, p.Error())
	}
}

func objectMeta(obj runtime.Object) klog.KMetadata {
	if m, ok := obj.(metav1.Object); ok {
		return m
	}
	return nil
}
