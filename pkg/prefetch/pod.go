// Package prefetch builds prefetch pods and plans, from the wanted images
// and the pods that exist, which pods to create and which to delete. It
// makes no API calls: the daemon's controller carries the plan out.
package prefetch

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// Config is what every prefetch pod of a node shares.
type Config struct {
	Namespace   string
	NodeName    string
	WardenImage string
	// Owner is a non-controller owner (the DaemonSet): uninstalling removes
	// the pods, a daemon restart keeps them. It must not be a controller
	// reference: the DaemonSet controller would release pods that carry its
	// controller reference but do not match its selector.
	Owner *metav1.OwnerReference
	// Warden, when set, is the ConfigMap key (ConfigMap/Key) of the tiny
	// warden executable for this node's architecture: the pods mount it
	// and need neither an init container nor an emptyDir. Empty means the
	// older way: an init container copies the warden from WardenImage into
	// an emptyDir.
	Warden *WardenSource
	// Controller, when set, is the controller reference of every pod: an
	// object no controller acts on (the warden ConfigMap). `kubectl drain`
	// evicts pods that have a controller and no emptyDir without --force.
	Controller        *metav1.OwnerReference
	Tolerations       []corev1.Toleration
	PriorityClassName string
	ImagePullSecrets  []string
	BatchSize         int
	// MaxPods is the most prefetch pods the node may hold at once, pods
	// still terminating included (0: no limit): prefetch pods are bound
	// with nodeName, past the scheduler, and must leave the kubelet's
	// max-pods to the workloads.
	MaxPods int
}

// WardenSource names the ConfigMap key that holds the warden executable.
type WardenSource struct {
	ConfigMap, Key string
}

// Owns reports whether pod belongs to this daemon: it carries Owner's UID
// among its owner references (any pod does when Owner is unset). Pods that
// merely carry the prefetch labels are someone else's: never deleted,
// never counted as holding an image.
func (c Config) Owns(pod *corev1.Pod) bool {
	if c.Owner == nil {
		return true
	}
	for _, ref := range pod.OwnerReferences {
		if ref.UID == c.Owner.UID {
			return true
		}
	}
	return false
}

// Trusts says why an owned pod cannot stand for its images (nil when it
// can): the owner's UID is easy to copy, so a pod must also carry every mark
// the daemon sets on the pods it makes (cachestate.Owners.Prefetch, the
// check status makes). Plan deletes an owned pod it does not trust, and
// counts none of its images. When the owner is no DaemonSet (a daemon run
// by hand), the UID is all there is to check.
func (c Config) Trusts(pod *corev1.Pod) error {
	if c.Owner == nil || c.Owner.Kind != "DaemonSet" {
		return nil
	}
	owners := cachestate.Owners{DaemonSet: cachestate.Owner{Name: c.Owner.Name, UID: c.Owner.UID}}
	if c.Controller != nil {
		owners.Warden = cachestate.Owner{Name: c.Controller.Name, UID: c.Controller.UID}
	}
	return owners.Prefetch(pod)
}

const (
	// wardenDir is where the warden is installed in every container.
	wardenDir = "/icd"
	// UID and GID the prefetch containers run as: the restricted profile
	// wants non-root, and images without a USER would run as root.
	runAsID = 65532
	// safeToEvict lets cluster-autoscaler drain a node whatever the
	// warden's volume; a prefetch pod is only a cache record.
	safeToEvict = "cluster-autoscaler.kubernetes.io/safe-to-evict"
)

// Pod returns the prefetch pod for images (normalised) at generation, each
// image pulled with policy. Its name depends only on the node, the sorted
// images and the generation, so two daemons making the same plan create the
// same pod and one of them gets AlreadyExists.
func (c Config) Pod(images []string, generation int, policy corev1.PullPolicy) *corev1.Pod {
	return c.pod(images, generation, func(string) corev1.PullPolicy { return policy })
}

// pod is Pod with a pull policy per image: a plan may put images due for a
// fresh pull and images only to be held in the same pod. The name does not
// depend on the policies.
func (c Config) pod(images []string, generation int, policy func(image string) corev1.PullPolicy) *corev1.Pod {
	images = sortedUnique(images)
	labels := wire.NodeLabels(c.NodeName)
	labels[wire.LabelGeneration] = strconv.Itoa(generation)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      c.name(images, generation),
			Namespace: c.Namespace,
			Labels:    labels,
			Annotations: map[string]string{
				safeToEvict:             "true",
				wire.AnnotationNodeName: c.NodeName,
			},
		},
		Spec: corev1.PodSpec{
			// Bound to the node directly: no scheduling round trip, and
			// when the node is deleted the pod garbage collector removes
			// pods bound to it, so a deleted node leaves none behind (an
			// unscheduled pod with node affinity would stay Pending).
			NodeName:                      c.NodeName,
			Tolerations:                   c.Tolerations,
			PriorityClassName:             c.PriorityClassName,
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To[int64](runAsID),
				RunAsGroup:     ptr.To[int64](runAsID),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
		},
	}
	c.addWarden(&pod.Spec)
	if c.Owner != nil {
		owner := *c.Owner
		owner.Controller = nil
		pod.OwnerReferences = []metav1.OwnerReference{owner}
	}
	if c.Controller != nil {
		ctrl := *c.Controller
		ctrl.Controller = ptr.To(true)
		pod.OwnerReferences = append(pod.OwnerReferences, ctrl)
	}
	for _, s := range c.ImagePullSecrets {
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	names := containerNames(images)
	for i, img := range images {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
			Name:            names[i],
			Image:           img,
			ImagePullPolicy: policy(img),
			Command:         []string{wardenDir + "/warden"},
			VolumeMounts:    []corev1.VolumeMount{{Name: "warden", MountPath: wardenDir, ReadOnly: true}},
			SecurityContext: containerSecurity(),
		})
	}
	return pod
}

// addWarden gives spec the warden volume: the executable from the warden
// ConfigMap, or else an emptyDir that an init container fills from the
// warden image.
func (c Config) addWarden(spec *corev1.PodSpec) {
	if w := c.Warden; w != nil {
		spec.Volumes = []corev1.Volume{{Name: "warden", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: w.ConfigMap},
				Items:                []corev1.KeyToPath{{Key: w.Key, Path: "warden", Mode: ptr.To[int32](0o555)}},
			},
		}}}
		return
	}
	spec.Volumes = []corev1.Volume{{Name: "warden", VolumeSource: corev1.VolumeSource{
		EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("16Mi"))},
	}}}
	spec.InitContainers = []corev1.Container{{
		Name:            cachestate.WardenInitName,
		Image:           c.WardenImage,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         []string{"/warden", "install", wardenDir},
		VolumeMounts:    []corev1.VolumeMount{{Name: "warden", MountPath: wardenDir}},
		SecurityContext: containerSecurity(),
	}}
}

func containerSecurity() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// name is "icd-<node, at most 36 characters>-<16 hex>": a valid DNS label, and 64 bits
// of hash, so that no crafted set of images takes the name of another (a
// create would then meet AlreadyExists and its images would get no pod).
func (c Config) name(images []string, generation int) string {
	h := sha256.New()
	h.Write([]byte(c.NodeName))
	for _, img := range images {
		h.Write([]byte{0})
		h.Write([]byte(img))
	}
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(generation)))
	node := strings.Trim(nonLabel.ReplaceAllString(strings.ToLower(c.NodeName), "-"), "-")
	if len(node) > 36 {
		node = strings.Trim(node[:36], "-")
	}
	return "icd-" + node + "-" + hex.EncodeToString(h.Sum(nil))[:16]
}

var nonLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// containerNames gives each image a readable container name, unique in the
// pod whatever the references: its repository's last path component, cut
// short, and 6 hex digits of the reference's hash. The hash only keeps names
// stable and readable; 24 bits are easily collided on purpose, so a name
// already taken gets the image's index in the list as a suffix, then the next
// free one. The names depend only on the (sorted) list, and stay DNS labels
// of at most 63 characters.
func containerNames(images []string) []string {
	names := make([]string, len(images))
	taken := make(map[string]bool, len(images))
	for i, img := range images {
		repo := img
		if at := strings.Index(repo, "@"); at >= 0 {
			repo = repo[:at]
		}
		if colon := strings.LastIndex(repo, ":"); colon > strings.LastIndex(repo, "/") {
			repo = repo[:colon]
		}
		base := strings.Trim(nonLabel.ReplaceAllString(repo[strings.LastIndex(repo, "/")+1:], "-"), "-")
		if len(base) > 40 {
			base = strings.Trim(base[:40], "-")
		}
		if base == "" || base[0] < 'a' || base[0] > 'z' {
			base = "image-" + base
		}
		sum := sha256.Sum256([]byte(img))
		plain := base + "-" + hex.EncodeToString(sum[:])[:6]
		// plain has at most 53 characters ("image-", 40, "-", 6): a suffix
		// of up to 9 digits fits in a DNS label.
		name := plain
		for n := i; taken[name]; n++ {
			name = plain + "-" + strconv.Itoa(n)
		}
		taken[name] = true
		names[i] = name
	}
	return names
}

// Images returns the images a prefetch pod pulls.
func Images(pod *corev1.Pod) []string {
	out := make([]string, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		out = append(out, c.Image)
	}
	return out
}

// Generation returns a prefetch pod's generation (0 if unlabelled or
// malformed).
func Generation(pod *corev1.Pod) int {
	g, err := strconv.Atoi(pod.Labels[wire.LabelGeneration])
	if err != nil || g < 0 || g > maxGeneration {
		return 0
	}
	return g
}

// maxGeneration keeps Generation()+1 far from overflowing.
const maxGeneration = 1 << 30

func sortedUnique(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	n := 0
	for i, s := range out {
		if i == 0 || s != out[n-1] {
			out[n] = s
			n++
		}
	}
	return out[:n]
}
