package cachestate

import (
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// The trust boundary of an installation is whoever may write pods in its
// namespace. Such a user can also run a pod as the daemon's service
// account, so they can do whatever the daemon can: they are inside the
// boundary, and nothing read from the namespace's pods can be proven not to
// come from them. What can be checked is that a pod is what the
// installation made, as far as its live owners say: a pod from another
// installation, one left from an earlier one, or one someone labelled by
// mistake does not count, and a forger must copy the live objects' UIDs
// and every mark the daemon sets, not merely a label. The daemon writes its
// own annotations again when they differ from what it wrote (see
// pkg/node), and the plugin escapes what it prints (imageref.Printable).

// WardenCommand is the command of every image container of a prefetch pod:
// the warden, which exits 0 as soon as the container starts, so that a
// pod that counts as cache runs no code of its images.
const WardenCommand = wardenDir + "/warden"

// Owner names one live object that owns pods.
type Owner struct {
	Name string
	UID  types.UID
}

// Owners are the live objects, as read from the API server, that own the
// pods of an installation: its DaemonSet (the controller of the daemon
// pods, and an owner of every prefetch pod) and the warden ConfigMap (the
// controller of the prefetch pods that mount the warden from it; a zero
// UID when it does not exist).
type Owners struct {
	DaemonSet Owner
	Warden    Owner
}

// Daemon says why pod is not a daemon pod of the installation (nil when it
// is): its controller must be the live DaemonSet, as the DaemonSet
// controller sets it. A pod is bound to one node (spec.nodeName), so of
// the pods that claim a node only one the DaemonSet owns speaks for it.
func (o Owners) Daemon(pod *corev1.Pod) error {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return errors.New("it has no controller")
	}
	if !o.isDaemonSet(*ref) {
		return fmt.Errorf("its controller is %s %s (uid %s), not DaemonSet %s (uid %s)", ref.Kind, ref.Name, ref.UID, o.DaemonSet.Name, o.DaemonSet.UID)
	}
	return nil
}

// Prefetch says why pod is not a prefetch pod of the installation (nil
// when it is), checking what the daemon sets on the pods it makes: the
// live DaemonSet as its one owner (not controller), the live warden
// ConfigMap as its controller if it has one and no other owner; bound to a
// node, with the node label and annotation of that node; no restart, no
// service-account token; every image container running the warden, and a
// warden volume from the warden ConfigMap where the pod names it.
func (o Owners) Prefetch(pod *corev1.Pod) error {
	owned := false
	for _, ref := range pod.OwnerReferences {
		switch {
		case o.isDaemonSet(ref) && (ref.Controller == nil || !*ref.Controller) && !owned:
			owned = true
		case o.isWarden(ref) && ref.Controller != nil && *ref.Controller:
		default:
			return fmt.Errorf("owner %s %s (uid %s) is neither DaemonSet %s nor ConfigMap %s as the daemon sets them", ref.Kind, ref.Name, ref.UID, o.DaemonSet.Name, o.Warden.Name)
		}
	}
	node := pod.Spec.NodeName
	switch {
	case !owned:
		return fmt.Errorf("DaemonSet %s (uid %s) does not own it", o.DaemonSet.Name, o.DaemonSet.UID)
	case node == "":
		return errors.New("it is bound to no node")
	case pod.Labels[wire.LabelNode] != wire.NodeLabelValue(node) || pod.Annotations[wire.AnnotationNodeName] != node:
		return fmt.Errorf("its node label and annotation do not name its node %s", node)
	case pod.Spec.RestartPolicy != corev1.RestartPolicyNever:
		return errors.New("its restart policy is not Never")
	case pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken:
		return errors.New("it mounts a service-account token")
	}
	for _, c := range pod.Spec.Containers {
		if !slices.Equal(c.Command, []string{WardenCommand}) || len(c.Args) != 0 || !mountsWarden(c) {
			return fmt.Errorf("container %s does not run the warden", c.Name)
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name != wardenVolume {
			continue
		}
		if cm := v.ConfigMap; (cm == nil || cm.Name != o.Warden.Name) && v.EmptyDir == nil {
			return fmt.Errorf("its warden volume is neither from ConfigMap %s nor an emptyDir", o.Warden.Name)
		}
		return nil
	}
	return errors.New("it has no warden volume")
}

// wardenVolume is the volume of a prefetch pod that holds the warden, at
// wardenDir in every container.
const (
	wardenVolume = "warden"
	wardenDir    = "/icd"
)

func mountsWarden(c corev1.Container) bool {
	return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == wardenVolume && m.MountPath == wardenDir
	})
}

func (o Owners) isDaemonSet(ref metav1.OwnerReference) bool {
	return ref.APIVersion == "apps/v1" && ref.Kind == "DaemonSet" && ref.Name == o.DaemonSet.Name &&
		o.DaemonSet.UID != "" && ref.UID == o.DaemonSet.UID
}

func (o Owners) isWarden(ref metav1.OwnerReference) bool {
	return ref.APIVersion == "v1" && ref.Kind == "ConfigMap" && ref.Name == o.Warden.Name &&
		o.Warden.UID != "" && ref.UID == o.Warden.UID
}
