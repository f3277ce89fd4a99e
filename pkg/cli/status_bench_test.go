package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/dcherman/image-cache-daemon/pkg/install"
	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
	"github.com/dcherman/image-cache-daemon/pkg/wanted"
	"github.com/dcherman/image-cache-daemon/pkg/warden"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// BenchmarkStatus times status for 1,000 nodes x 100 images (1,000 daemon
// pods, 5,000 prefetch pods of 20 images, 100,000 rows in -o wide) from an
// HTTP server that answers with bytes encoded beforehand: the plugin's own
// share of the latency, decoding included (hack/bench measures it on the
// real API server). read=stream is a server that streams lists (Kubernetes
// 1.34 and later), read=list one that does not; wire=protobuf is what the
// plugin's client asks for, wire=json a client that asks for JSON.
// reports=true is a cluster whose daemons publish their reports (status
// reads the daemon pods alone), reports=false one where they do not (it
// reads every pod).
func BenchmarkStatus(b *testing.B) {
	const nodes, images = 1000, 100
	for _, reports := range []bool{true, false} {
		benchmarkStatus(b, reports, newPodServer(b, benchObjects(b, nodes, images, reports)))
	}
}

func benchmarkStatus(b *testing.B, reports bool, srv *podServer) {
	for _, c := range []struct{ read, wire string }{{"stream", "protobuf"}, {"list", "protobuf"}, {"list", "json"}} {
		cfg := &rest.Config{Host: srv.URL, QPS: -1}
		if c.wire == "json" {
			cfg.ContentType = runtime.ContentTypeJSON
		}
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			b.Fatal(err)
		}
		for _, output := range []string{"", "wide"} {
			b.Run(fmt.Sprintf("reports=%v/read=%s/wire=%s/output=%s", reports, c.read, c.wire, output), func(b *testing.B) {
				srv.stream.Store(c.read == "stream")
				o := &StatusOptions{IOStreams: genericiooptions.IOStreams{Out: io.Discard, ErrOut: io.Discard},
					kube:   kube{flags: genericclioptions.NewConfigFlags(false), client: client, namespace: ns},
					Output: output, now: func() time.Time { return now }}
				for b.Loop() {
					if err := o.Run(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// podServer is an API server that only serves the pods of namespace ns
// (and the DaemonSet and warden ConfigMap that own them),
// in protobuf when the client accepts it, else in JSON: a LIST, a streamed
// list (a WATCH with sendInitialEvents) when stream is set, and a WATCH
// that sends nothing. It honours the one label selector that narrows what
// the plugin reads, to the daemon pods. Every answer is encoded beforehand.
type podServer struct {
	*httptest.Server
	stream   atomic.Bool
	requests atomic.Int64
	accepts  sync.Map // media types asked for
	// list and events by daemonsOnly, then media type.
	list, events map[bool]map[string][]byte
	// daemonSet and wardenConfigMap are the installation's owners of its
	// pods, by media type; plannerLease the Lease of a planner that leads.
	daemonSet, wardenConfigMap, plannerLease, wantedSet map[string][]byte
}

func newPodServer(tb testing.TB, pods []corev1.Pod) *podServer {
	tb.Helper()
	s := &podServer{list: map[bool]map[string][]byte{}, events: map[bool]map[string][]byte{}, daemonSet: map[string][]byte{},
		wardenConfigMap: map[string][]byte{}, plannerLease: map[string][]byte{}, wantedSet: map[string][]byte{}}
	var daemons []corev1.Pod
	for _, p := range pods {
		if p.Labels[wire.LabelComponent] == wire.ComponentDaemon {
			daemons = append(daemons, p)
		}
	}
	const rv = "123456"
	for daemonsOnly, pods := range map[bool][]corev1.Pod{false: pods, true: daemons} {
		s.list[daemonsOnly], s.events[daemonsOnly] = map[string][]byte{}, map[string][]byte{}
		for _, mediaType := range []string{runtime.ContentTypeJSON, runtime.ContentTypeProtobuf} {
			info, ok := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), mediaType)
			if !ok {
				tb.Fatalf("no serializer for %s", mediaType)
			}
			enc := scheme.Codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion)
			ds, err := runtime.Encode(scheme.Codecs.EncoderForVersion(info.Serializer, appsv1.SchemeGroupVersion),
				&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: install.Name, Namespace: ns, UID: dsUID}})
			if err != nil {
				tb.Fatal(err)
			}
			s.daemonSet[mediaType] = ds
			cm, err := runtime.Encode(enc, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: warden.ConfigMap, Namespace: ns, UID: wardenUID}})
			if err != nil {
				tb.Fatal(err)
			}
			s.wardenConfigMap[mediaType] = cm
			set, err := runtime.Encode(enc, publishedSet())
			if err != nil {
				tb.Fatal(err)
			}
			s.wantedSet[mediaType] = set
			lease, err := runtime.Encode(scheme.Codecs.EncoderForVersion(info.Serializer, coordinationv1.SchemeGroupVersion),
				&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: wanted.Planner, Namespace: ns},
					Spec: coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: now.Add(-5 * time.Second)}}})
			if err != nil {
				tb.Fatal(err)
			}
			s.plannerLease[mediaType] = lease
			list, err := runtime.Encode(enc, &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: rv}, Items: pods})
			if err != nil {
				tb.Fatal(err)
			}
			s.list[daemonsOnly][mediaType] = list
			var events bytes.Buffer
			stream := streaming.NewEncoder(info.StreamSerializer.Framer.NewFrameWriter(&events), info.StreamSerializer.Serializer)
			send := func(typ watch.EventType, pod *corev1.Pod) {
				raw, err := runtime.Encode(enc, pod)
				if err == nil {
					err = stream.Encode(&metav1.WatchEvent{Type: string(typ), Object: runtime.RawExtension{Raw: raw}})
				}
				if err != nil {
					tb.Fatal(err)
				}
			}
			for i := range pods {
				send(watch.Added, &pods[i])
			}
			send(watch.Bookmark, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: rv,
				Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}})
			s.events[daemonsOnly][mediaType] = events.Bytes()
		}
	}
	tb.Logf("%d pods: a LIST of %d MB in JSON, %d MB in protobuf; of the daemon pods alone %d KB in protobuf", len(pods),
		len(s.list[false][runtime.ContentTypeJSON])>>20, len(s.list[false][runtime.ContentTypeProtobuf])>>20,
		len(s.list[true][runtime.ContentTypeProtobuf])>>10)
	s.stream.Store(true)
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Close)
	return s
}

func (s *podServer) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	mediaType := runtime.ContentTypeJSON
	if strings.HasPrefix(r.Header.Get("Accept"), runtime.ContentTypeProtobuf) {
		mediaType = runtime.ContentTypeProtobuf
	}
	s.accepts.Store(mediaType, true)
	q := r.URL.Query()
	daemonsOnly := strings.Contains(q.Get("labelSelector"), wire.LabelComponent+"="+wire.ComponentDaemon)
	switch {
	case r.URL.Path == "/apis/apps/v1/namespaces/"+ns+"/daemonsets/"+install.Name:
		w.Header().Set("Content-Type", mediaType)
		_, _ = w.Write(s.daemonSet[mediaType])
	case r.URL.Path == "/api/v1/namespaces/"+ns+"/configmaps/"+warden.ConfigMap:
		w.Header().Set("Content-Type", mediaType)
		_, _ = w.Write(s.wardenConfigMap[mediaType])
	case r.URL.Path == "/api/v1/namespaces/"+ns+"/configmaps/"+wanted.ConfigMap:
		w.Header().Set("Content-Type", mediaType)
		_, _ = w.Write(s.wantedSet[mediaType])
	case r.URL.Path == "/apis/coordination.k8s.io/v1/namespaces/"+ns+"/leases/"+wanted.Planner:
		w.Header().Set("Content-Type", mediaType)
		_, _ = w.Write(s.plannerLease[mediaType])
	case r.URL.Path != "/api/v1/namespaces/"+ns+"/pods":
		http.NotFound(w, r)
	case q.Get("watch") != "true" && q.Get("watch") != "1":
		w.Header().Set("Content-Type", mediaType)
		_, _ = w.Write(s.list[daemonsOnly][mediaType])
	case q.Get("sendInitialEvents") == "true" && !s.stream.Load():
		// What a server without streamed lists answers.
		w.Header().Set("Content-Type", runtime.ContentTypeJSON)
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Invalid","code":422,` +
			`"message":"sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"}`))
	default:
		w.Header().Set("Content-Type", mediaType+";stream=watch")
		w.WriteHeader(http.StatusOK)
		if q.Get("sendInitialEvents") == "true" {
			_, _ = w.Write(s.events[daemonsOnly][mediaType])
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
}

// benchPods is an installation on nodes x images as the API server returns
// it: per node a daemon pod and the prefetch pods of 20 images built by the
// daemon's own code, every image cached, with the metadata and status
// fields the API server and the kubelet add (managed fields, conditions,
// IPs), which the plugin must decode too.
func benchPods(nodes, images int) []corev1.Pod {
	var wanted []string
	for i := 0; i < images; i++ {
		wanted = append(wanted, fmt.Sprintf("registry.example/team/app-%03d:v1", i))
	}
	created := metav1.NewTime(now.Add(-2 * time.Hour))
	owner := dsOwner
	controller := &metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: warden.ConfigMap, UID: wardenUID}
	var pods []corev1.Pod
	for n := 0; n < nodes; n++ {
		node := fmt.Sprintf("node-%04d", n)
		ip := fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255)
		pods = append(pods, corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "image-cache-daemon-" + node, Namespace: ns, UID: types.UID(fmt.Sprintf("d-%d", n)),
				ResourceVersion: "1000", CreationTimestamp: created, OwnerReferences: daemonPodOn(node).OwnerReferences,
				Labels: map[string]string{wire.LabelPartOf: wire.PartOf, wire.LabelComponent: "daemon"}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "daemon", Image: "ghcr.io/dcherman/image-cache-daemon:v1.0.0"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, HostIP: ip, PodIP: ip,
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
		})
		cfg := prefetch.Config{Namespace: ns, NodeName: node, BatchSize: 20, Owner: owner, Controller: controller,
			Warden: &prefetch.WardenSource{ConfigMap: warden.ConfigMap, Key: "warden-amd64"}}
		for s := 0; s < images; s += cfg.BatchSize {
			p := cfg.Pod(wanted[s:min(s+cfg.BatchSize, images)], 0, corev1.PullIfNotPresent)
			p.UID, p.ResourceVersion, p.CreationTimestamp = types.UID(fmt.Sprintf("p-%d-%d", n, s)), "1000", created
			p.ManagedFields = managedFields(p)
			finished := metav1.NewTime(now.Add(-time.Hour))
			p.Status = corev1.PodStatus{Phase: corev1.PodSucceeded, HostIP: ip, HostIPs: []corev1.HostIP{{IP: ip}},
				StartTime: &created, QOSClass: corev1.PodQOSBestEffort}
			for _, t := range []corev1.PodConditionType{"PodReadyToStartContainers", corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady, corev1.PodScheduled} {
				p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: created, Reason: "PodCompleted"})
			}
			for _, c := range p.Spec.Containers {
				p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
					Name: c.Name, Image: c.Image, ImageID: c.Image + "@" + fakeDigest(c.Image), ContainerID: "containerd://" + strings.Repeat("c", 64),
					Started: ptr.To(false), State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
						Reason: "Completed", StartedAt: finished, FinishedAt: finished, ContainerID: "containerd://" + strings.Repeat("c", 64)}},
					VolumeMounts: []corev1.VolumeMountStatus{{Name: "warden", MountPath: "/icd", ReadOnly: true}},
				})
			}
			pods = append(pods, *p)
		}
	}
	return pods
}

// benchObjects is benchPods as objects, with the reports the daemons
// publish when reports is set.
func benchObjects(tb testing.TB, nodes, images int, reports bool) []corev1.Pod {
	pods := benchPods(nodes, images)
	if !reports {
		return pods
	}
	objs := make([]runtime.Object, len(pods))
	for i := range pods {
		objs[i] = &pods[i]
	}
	out := make([]corev1.Pod, 0, len(pods))
	for _, o := range withReports(tb, objs) {
		out = append(out, *o.(*corev1.Pod))
	}
	return out
}

// managedFields are the entries the API server keeps on a prefetch pod: the
// daemon's create and the kubelet's status updates, each naming every field
// it set (about as large as the fields themselves).
func managedFields(p *corev1.Pod) []metav1.ManagedFieldsEntry {
	var spec, status strings.Builder
	spec.WriteString(`{"f:metadata":{"f:annotations":{".":{},"f:cluster-autoscaler.kubernetes.io/safe-to-evict":{},"f:image-cache-daemon/node-name":{}},"f:labels":{".":{},"f:app.kubernetes.io/component":{},"f:app.kubernetes.io/part-of":{},"f:image-cache-daemon/generation":{},"f:image-cache-daemon/node":{}},"f:ownerReferences":{}},"f:spec":{"f:containers":{`)
	status.WriteString(`{"f:status":{"f:conditions":{},"f:containerStatuses":{},"f:hostIP":{},"f:hostIPs":{},"f:phase":{},"f:startTime":{}},"f:containers":{`)
	for i, c := range p.Spec.Containers {
		if i > 0 {
			spec.WriteByte(',')
			status.WriteByte(',')
		}
		fmt.Fprintf(&spec, `"k:{\"name\":\"%s\"}":{".":{},"f:command":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{},"f:securityContext":{".":{},"f:allowPrivilegeEscalation":{},"f:capabilities":{".":{},"f:drop":{}},"f:readOnlyRootFilesystem":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},"f:volumeMounts":{".":{},"k:{\"mountPath\":\"/icd\"}":{".":{},"f:mountPath":{},"f:name":{},"f:readOnly":{}}}}`, c.Name)
		fmt.Fprintf(&status, `"k:{\"name\":\"%s\"}":{".":{},"f:state":{}}`, c.Name)
	}
	spec.WriteString(`},"f:nodeName":{},"f:restartPolicy":{},"f:securityContext":{},"f:volumes":{}}}`)
	status.WriteString(`}}`)
	at := metav1.NewTime(now.Add(-2 * time.Hour))
	return []metav1.ManagedFieldsEntry{
		{Manager: "image-cache-daemon", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &at, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(spec.String())}},
		{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &at, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(status.String())}, Subresource: "status"},
	}
}

func fakeDigest(s string) string { return fmt.Sprintf("sha256:%064x", len(s)) }
