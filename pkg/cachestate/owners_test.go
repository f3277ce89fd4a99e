package cachestate_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/dcherman/image-cache-daemon/pkg/cachestate"
	"github.com/dcherman/image-cache-daemon/pkg/prefetch"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

var owners = cachestate.Owners{
	DaemonSet: cachestate.Owner{Name: "image-cache-daemon", UID: "ds-uid"},
	Warden:    cachestate.Owner{Name: "image-cache-daemon-warden", UID: "cm-uid"},
}

// prefetchPod is a pod as the daemon builds it, with the warden from the
// ConfigMap (or, without it, copied by an init container).
func prefetchPod(fromConfigMap bool) *corev1.Pod {
	cfg := prefetch.Config{Namespace: "icd", NodeName: "node-a", WardenImage: "w", BatchSize: 20,
		Owner: &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: owners.DaemonSet.Name, UID: owners.DaemonSet.UID}}
	if fromConfigMap {
		cfg.Warden = &prefetch.WardenSource{ConfigMap: owners.Warden.Name, Key: "amd64"}
		cfg.Controller = &metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: owners.Warden.Name, UID: owners.Warden.UID}
	}
	return cfg.Pod([]string{"docker.io/library/alpine:latest", "registry.example/a:v1"}, 0, corev1.PullIfNotPresent)
}

// What the daemon builds, status trusts; a pod that differs in any mark
// the daemon sets does not count, however it is labelled, and a UID copied
// from an object that is not the live one counts for nothing.
func TestOwnersPrefetch(t *testing.T) {
	for _, fromConfigMap := range []bool{true, false} {
		if err := owners.Prefetch(prefetchPod(fromConfigMap)); err != nil {
			t.Fatalf("a pod the daemon built (warden from ConfigMap: %v) is refused: %v", fromConfigMap, err)
		}
	}
	for _, tc := range []struct {
		name   string
		owners cachestate.Owners
		spoil  func(p *corev1.Pod)
	}{
		{"another DaemonSet's UID (a copied or stale one)", cachestate.Owners{DaemonSet: cachestate.Owner{Name: "image-cache-daemon", UID: "live-uid"}, Warden: owners.Warden}, nil},
		{"no live DaemonSet", cachestate.Owners{Warden: owners.Warden}, nil},
		{"no live warden ConfigMap", cachestate.Owners{DaemonSet: owners.DaemonSet}, nil},
		{"no owner", owners, func(p *corev1.Pod) { p.OwnerReferences = nil }},
		{"the UID under another name", owners, func(p *corev1.Pod) { p.OwnerReferences[0].Name = "other" }},
		{"the UID under another kind", owners, func(p *corev1.Pod) { p.OwnerReferences[0].Kind = "ReplicaSet" }},
		{"the DaemonSet as controller", owners, func(p *corev1.Pod) { p.OwnerReferences[0].Controller = ptr.To(true) }},
		{"the DaemonSet twice", owners, func(p *corev1.Pod) { p.OwnerReferences = append(p.OwnerReferences, p.OwnerReferences[0]) }},
		{"another controller", owners, func(p *corev1.Pod) { p.OwnerReferences[1].UID = "other-cm" }},
		{"an extra owner", owners, func(p *corev1.Pod) {
			p.OwnerReferences = append(p.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: "x", UID: "x"})
		}},
		{"unbound", owners, func(p *corev1.Pod) { p.Spec.NodeName = "" }},
		{"bound to another node", owners, func(p *corev1.Pod) { p.Spec.NodeName = "node-b" }},
		{"node label of another node", owners, func(p *corev1.Pod) { p.Labels[wire.LabelNode] = "node-b" }},
		{"node annotation of another node", owners, func(p *corev1.Pod) { p.Annotations[wire.AnnotationNodeName] = "node-b" }},
		{"restarts", owners, func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyOnFailure }},
		{"a service-account token", owners, func(p *corev1.Pod) { p.Spec.AutomountServiceAccountToken = nil }},
		{"a container runs its own command", owners, func(p *corev1.Pod) { p.Spec.Containers[1].Command = []string{"/bin/sh", "-c", "exit 1"} }},
		{"a container has arguments", owners, func(p *corev1.Pod) { p.Spec.Containers[0].Args = []string{"x"} }},
		{"a container mounts another warden", owners, func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts[0].Name = "mine" }},
		{"the warden from another ConfigMap", owners, func(p *corev1.Pod) { p.Spec.Volumes[0].ConfigMap.Name = "mine" }},
		{"no warden volume", owners, func(p *corev1.Pod) { p.Spec.Volumes = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := prefetchPod(true)
			if tc.spoil != nil {
				tc.spoil(p)
			}
			if err := tc.owners.Prefetch(p); err == nil {
				t.Error("trusted")
			} else {
				t.Log(err)
			}
		})
	}
}

// A daemon pod is the installation's when the live DaemonSet is its
// controller, as the DaemonSet controller sets it.
func TestOwnersDaemon(t *testing.T) {
	pod := func(refs ...metav1.OwnerReference) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "d", OwnerReferences: refs}, Spec: corev1.PodSpec{NodeName: "node-a"}}
	}
	ds := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: owners.DaemonSet.Name, UID: owners.DaemonSet.UID, Controller: ptr.To(true)}
	if err := owners.Daemon(pod(ds)); err != nil {
		t.Fatalf("the DaemonSet's pod is refused: %v", err)
	}
	copied := ds
	copied.UID = "stale"
	notController := ds
	notController.Controller = nil
	for name, p := range map[string]*corev1.Pod{
		"no owner":              pod(),
		"another UID":           pod(copied),
		"owned, not controlled": pod(notController),
		"no live DaemonSet":     pod(ds),
	} {
		t.Run(name, func(t *testing.T) {
			o := owners
			if name == "no live DaemonSet" {
				o.DaemonSet.UID = ""
			}
			if err := o.Daemon(p); err == nil {
				t.Error("trusted")
			}
		})
	}
}
