// Package wire is what crosses the wire between the node daemon, the
// planner and the plugin: every label and annotation key they share, and
// the encodings of what each node publishes on its daemon pod (its image
// report and its health report). The wanted set, which the planner
// publishes for the nodes, has its own package, pkg/wanted.
package wire

import (
	"crypto/sha256"
	"encoding/hex"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Labels, on the objects of an installation and on the prefetch pods.
const (
	// LabelPartOf, with the value PartOf, also marks every object of an
	// installation and the image lists the daemon reads by default; the one
	// name of that label for the daemon, the plugin and the installer.
	LabelPartOf    = "app.kubernetes.io/part-of"
	LabelName      = "app.kubernetes.io/name"
	LabelComponent = "app.kubernetes.io/component"
	// LabelInstance carries the install namespace on every object of an
	// installation (kubernetes.io's recommended label): the Roles an
	// installation keeps in its source namespaces are found by it, so
	// uninstall and a narrowed --source-namespace remove them without
	// reading the DaemonSet (which a half-finished uninstall may have
	// deleted already).
	LabelInstance = "app.kubernetes.io/instance"
	// LabelNode is on each prefetch pod: NodeLabelValue of its node.
	LabelNode       = "image-cache-daemon/node"
	LabelGeneration = "image-cache-daemon/generation"

	// PartOf is the value of LabelPartOf, and of LabelName.
	PartOf = "image-cache-daemon"
	// DaemonSet is the name of the node daemons' DaemonSet in the install
	// namespace (install.Name), which owns the prefetch pods.
	DaemonSet = "image-cache-daemon"
)

// The values of LabelComponent.
const (
	ComponentDaemon   = "daemon"
	ComponentPlanner  = "planner"
	ComponentPrefetch = "prefetch"
	// ComponentImages marks an image list (a ConfigMap the daemon reads).
	ComponentImages = "images"
	// ComponentWanted marks the ConfigMaps of the planner's wanted set.
	ComponentWanted = "wanted"
)

// Annotations.
const (
	// AnnotationNodeName is on each prefetch pod: the node it is made for.
	AnnotationNodeName = "image-cache-daemon/node-name"
	// AnnotationReport is the annotation on each daemon pod that holds its
	// node's image statuses, as cachestate.Summarize reads them from the
	// node's prefetch pods (see EncodeReport). The plugin's status reads
	// these reports, one small object per node, instead of every prefetch
	// pod of the cluster.
	AnnotationReport = "image-cache-daemon/images"
	// AnnotationHealth is the annotation on each daemon pod that holds its
	// HealthReport as JSON: `kubectl imagecache status` reads it.
	AnnotationHealth = "image-cache-daemon/health"
	// AnnotationKey, set on a ConfigMap, names the data key to read instead
	// of source.DefaultKey, for ConfigMaps whose "images" key means
	// something else.
	AnnotationKey = "image-cache-daemon/key"
)

// PrefetchLabels selects every prefetch pod.
func PrefetchLabels() map[string]string {
	return map[string]string{LabelPartOf: PartOf, LabelComponent: ComponentPrefetch}
}

// NodeLabels selects the prefetch pods of one node.
func NodeLabels(node string) map[string]string {
	l := PrefetchLabels()
	l[LabelNode] = NodeLabelValue(node)
	return l
}

// NodeLabelValue is the node label value of a node's prefetch pods: the
// node's name, or a hash of it when the name (up to 253 characters) is too
// long for a label value.
func NodeLabelValue(node string) string {
	if len(validation.IsValidLabelValue(node)) == 0 {
		return node
	}
	sum := sha256.Sum256([]byte(node))
	return "sha256-" + hex.EncodeToString(sum[:])[:40]
}
