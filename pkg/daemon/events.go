package daemon

import (
	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/dcherman/image-cache-daemon/pkg/metrics"
)

// Event reasons of the Reporter, shared by the node daemon and the planner;
// fixed so that alerts and `kubectl get events --field-selector reason=...`
// can rely on them.
const (
	ReasonInvalidImages = "InvalidImages"
	ReasonSourceProblem = "SourceProblem"
)

// eventScheme knows the Argo kinds too, so that Events can refer to them.
func eventScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(wfv1.AddToScheme(s))
	return s
}

// Reporter turns source problems into an Event on the object, a log line
// and a metric: the source.Reporter of the node daemon and of the planner.
type Reporter struct {
	// Self is the daemon's pod: problems of a source as a whole (a missing
	// CRD) are reported there.
	Self     *corev1.Pod
	Logger   klog.Logger
	Recorder record.EventRecorder
	Metrics  *metrics.Metrics
	// Leading says whether this daemon reports problems found in objects
	// as Events (the holder of node.ReporterLease, or the planner's
	// leader); nil means always. The others log them at -v=2 and count
	// them.
	Leading func() bool
}

// Problems reports problems found by source, in obj (nil: in the source as
// a whole).
func (r *Reporter) Problems(source string, obj runtime.Object, problems []error) {
	r.Metrics.SourceErrors.WithLabelValues(source).Add(float64(len(problems)))
	for _, p := range problems {
		if obj == nil {
			r.Logger.Error(p, "Source problem", "source", source)
			if r.Self != nil {
				r.Recorder.Event(r.Self, corev1.EventTypeWarning, ReasonSourceProblem, p.Error())
			}
			continue
		}
		if r.Leading != nil && !r.Leading() {
			r.Logger.V(2).Info("Skipping what cannot be cached (the reporter daemon sends the Event)", "source", source, "object", klog.KObj(objectMeta(obj)), "problem", p.Error())
			continue
		}
		r.Logger.Error(p, "Skipping what cannot be cached", "source", source, "object", klog.KObj(objectMeta(obj)))
		r.Recorder.Event(obj, corev1.EventTypeWarning, ReasonInvalidImages, p.Error())
	}
}

func objectMeta(obj runtime.Object) klog.KMetadata {
	if m, ok := obj.(metav1.Object); ok {
		return m
	}
	return nil
}
