package source

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The ConfigMap contract of the seed README, shared by the daemon (which
// reads these ConfigMaps) and the plugin (which writes them).
const (
	// DefaultConfigMapSelector is the default --configmap-selector: the label
	// that marks a ConfigMap as a list of wanted images.
	DefaultConfigMapSelector = "app.kubernetes.io/part-of=image-cache-daemon"
	// DefaultKey is the data key that holds a ConfigMap's image list.
	DefaultKey = "images"
	// KeyAnnotation, set on a ConfigMap, names the data key to read instead
	// of DefaultKey, for ConfigMaps whose "images" key means something else.
	KeyAnnotation = "image-cache-daemon/key"
)

// ConfigMapKey is the data key of cm that holds its image list: the one the
// KeyAnnotation names, or DefaultKey when it is absent or empty.
func ConfigMapKey(cm *corev1.ConfigMap) string {
	if k := cm.Annotations[KeyAnnotation]; k != "" {
		return k
	}
	return DefaultKey
}

// ImagesFromConfigMap returns the normalised, distinct, sorted images that
// cm lists, and what is wrong with it. Each problem names the ConfigMap, the
// key and, for a bad entry, the entry.
//
// A bad entry (not a valid reference, not a string) is reported and skipped
// while the other entries are kept: one typo must not stop the rest being
// cached. A missing key, an empty value or a value that is not a list gives
// one problem and no images. Only data is read, never binaryData: an image
// list is text, and a key found in binaryData is reported as such.
func ImagesFromConfigMap(cm *corev1.ConfigMap) (images []string, problems []error) {
	if cm == nil {
		return nil, []error{errors.New("no ConfigMap")}
	}
	key := ConfigMapKey(cm)
	name := cm.Name
	if cm.Namespace != "" {
		name = cm.Namespace + "/" + name
	}
	value, ok := cm.Data[key]
	if !ok {
		return nil, []error{missingKey(name, key, cm)}
	}
	where := fmt.Sprintf("ConfigMap %s key %q", name, key)
	images, problems, err := ParseImageList(value)
	if err != nil {
		return nil, []error{fmt.Errorf("%s: %w", where, err)}
	}
	for i, p := range problems {
		problems[i] = fmt.Errorf("%s: %w", where, p)
	}
	return images, problems
}

// missingKey says why key is not in cm's data, and where to look instead.
func missingKey(name, key string, cm *corev1.ConfigMap) error {
	if _, inBinary := cm.BinaryData[key]; inBinary {
		return fmt.Errorf("ConfigMap %s: key %q is in binaryData; the image list is read from data only", name, key)
	}
	if _, annotated := cm.Annotations[KeyAnnotation]; annotated && key != DefaultKey {
		return fmt.Errorf("ConfigMap %s has no key %q in data (the key named by annotation %s)", name, key, KeyAnnotation)
	}
	return fmt.Errorf("ConfigMap %s has no key %q in data (to read another key, name it in annotation %s)", name, key, KeyAnnotation)
}

// ParseImageList reads an image list as a ConfigMap holds it: a JSON or
// YAML list of strings (JSON is YAML, so one parser reads both, block and
// flow style alike). It returns the normalised, distinct, sorted images and
// a problem for each entry it skipped; err means the value as a whole is
// not a list, and then there are no images. "[]" is the empty list; an
// empty value is an error, because it is more often a mistake than a
// choice.
func ParseImageList(value string) (images []string, problems []error, err error) {
	if strings.TrimSpace(value) == "" {
		return nil, nil, errors.New(`the value is empty; write a list such as ["alpine", "nginx:1.27"], or [] for none`)
	}
	var doc any
	// UseNumber keeps a number entry as written (1.10 stays "1.10" as far
	// as JSON allows) for the problem that reports it.
	if err := yaml.Unmarshal([]byte(value), &doc, func(d *json.Decoder) *json.Decoder { d.UseNumber(); return d }); err != nil {
		return nil, nil, fmt.Errorf(`the value is not valid JSON or YAML (expected a list such as ["alpine", "nginx:1.27"]): %w`, err)
	}
	list, ok := doc.([]any)
	if !ok {
		return nil, nil, fmt.Errorf(`the value is %s, not a list of image references; write a list such as ["alpine", "nginx:1.27"]`, describe(doc))
	}
	set := imageSet{}
	for i, entry := range list {
		s, ok := entry.(string)
		if !ok {
			problems = append(problems, fmt.Errorf("entry %d is %s, not a string; quote it if it is an image reference", i+1, describe(entry)))
			continue
		}
		if err := set.add(s); err != nil {
			problems = append(problems, fmt.Errorf("entry %d: %w", i+1, err))
		}
	}
	return set.sorted(), problems, nil
}

// describe names the kind of a decoded YAML value the way a user wrote it.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("a single string (%q)", v)
	case json.Number, float64:
		return fmt.Sprintf("a number (%v)", v)
	case bool:
		return fmt.Sprintf("a boolean (%v)", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a map"
	}
	return fmt.Sprintf("a %T", v)
}
