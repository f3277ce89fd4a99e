package source

import (
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
	"github.com/dcherman/image-cache-daemon/pkg/listformat"
	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

// The ConfigMap contract of the seed README, shared by the daemon (which
// reads these ConfigMaps) and the plugin (which writes them); the annotation
// that names another key is wire.AnnotationKey.
const (
	// DefaultConfigMapSelector is the default --configmap-selector: the label
	// that marks a ConfigMap as a list of wanted images.
	DefaultConfigMapSelector = wire.LabelPartOf + "=" + wire.PartOf
	// DefaultKey is the data key that holds a ConfigMap's image list.
	DefaultKey = "images"
)

// ConfigMapKey is the data key of cm that holds its image list: the one the
// wire.AnnotationKey names, or DefaultKey when it is absent or empty.
func ConfigMapKey(cm *corev1.ConfigMap) string {
	if k := cm.Annotations[wire.AnnotationKey]; k != "" {
		return k
	}
	return DefaultKey
}

// ImagesFromConfigMap returns the normalised, distinct, sorted images that
// cm lists, and what is wrong with it. Each problem names the ConfigMap, the
// key and, for a bad entry, the entry; there are at most problems.Max of
// them, then a count (which problems.List.Add takes back as that many).
//
// A bad entry (not a valid reference, not a string) is reported and skipped
// while the other entries are kept: one typo must not stop the rest being
// cached. A missing key, an empty value or a value that is not a list gives
// one problem and no images, except in a ConfigMap with no data at all
// (Empty), which is an empty list. Only data is read, never binaryData: an image
// list is text, and a key found in binaryData is reported as such.
func ImagesFromConfigMap(cm *corev1.ConfigMap) (images []string, problems []error) {
	found := readConfigMap(cm, listformat.Limits{})
	images = slices.Clone(found.Images)
	slices.Sort(images)
	return images, found.Problems
}

// Empty says whether cm holds no data at all and names no other key: an
// empty image list. An installation makes its image list so (the chart's configmaps.yaml): then
// whoever writes the list owns its data, and neither helm upgrade nor
// kubectl imagecache install, which apply the ConfigMap again, touches it.
func Empty(cm *corev1.ConfigMap) bool {
	return len(cm.Data) == 0 && len(cm.BinaryData) == 0 && ConfigMapKey(cm) == DefaultKey
}

// readConfigMap reads cm's image list within lim: the images in list order.
func readConfigMap(cm *corev1.ConfigMap, lim listformat.Limits) Found {
	if cm == nil {
		return Found{Problems: []error{errors.New("no ConfigMap")}}
	}
	key := ConfigMapKey(cm)
	name := cm.Name
	if cm.Namespace != "" {
		name = cm.Namespace + "/" + name
	}
	value, ok := cm.Data[key]
	if !ok && Empty(cm) {
		return Found{}
	}
	if !ok {
		return Found{Problems: []error{missingKey(name, key, cm)}}
	}
	where := fmt.Sprintf("ConfigMap %s key %s", name, imageref.Quote(key))
	l, err := listformat.Read(value, lim)
	if err != nil {
		return Found{Problems: []error{fmt.Errorf("%s: %w", where, err)}}
	}
	problems := l.Problems.Errors()
	for i, p := range problems {
		problems[i] = fmt.Errorf("%s: %w", where, p)
	}
	return Found{Images: l.Images, Unread: l.Unread, Problems: problems}
}

// missingKey says why key is not in cm's data, and where to look instead.
func missingKey(name, key string, cm *corev1.ConfigMap) error {
	if _, inBinary := cm.BinaryData[key]; inBinary {
		return fmt.Errorf("ConfigMap %s: key %s is in binaryData; the image list is read from data only", name, imageref.Quote(key))
	}
	if _, annotated := cm.Annotations[wire.AnnotationKey]; annotated && key != DefaultKey {
		return fmt.Errorf("ConfigMap %s has no key %s in data (the key named by annotation %s)", name, imageref.Quote(key), wire.AnnotationKey)
	}
	return fmt.Errorf("ConfigMap %s has no key %s in data (to read another key, name it in annotation %s)", name, imageref.Quote(key), wire.AnnotationKey)
}
