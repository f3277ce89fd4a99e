package source

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dcherman/image-cache-daemon/pkg/wire"
)

func imageConfigMap(data map[string]string, annotations map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "list", Annotations: annotations},
		Data:       data,
	}
}

func TestImagesFromConfigMap(t *testing.T) {
	const (
		alpine = "docker.io/library/alpine:latest"
		debian = "docker.io/library/debian:latest"
		nginx  = "docker.io/library/nginx:1.27"
	)
	images := func(v string) map[string]string { return map[string]string{DefaultKey: v} }
	for _, tc := range []struct {
		name string
		cm   *corev1.ConfigMap
		want []string
		// problems: each problem must contain its string (and name the
		// ConfigMap and key, checked for all).
		problems []string
	}{
		{name: "README example", cm: imageConfigMap(images(`["alpine", "debian"]`+"\n"), nil),
			want: []string{alpine, debian}},
		{name: "JSON list", cm: imageConfigMap(images(`["alpine","nginx:1.27","127.0.0.1:5000/x:v1"]`), nil),
			want: []string{"127.0.0.1:5000/x:v1", alpine, nginx}},
		{name: "JSON list over lines", cm: imageConfigMap(images("[\n  \"alpine\",\n  \"nginx:1.27\"\n]\n"), nil),
			want: []string{alpine, nginx}},
		{name: "YAML block list", cm: imageConfigMap(images("- alpine\n- nginx:1.27\n- 'debian'\n"), nil),
			want: []string{alpine, debian, nginx}},
		{name: "YAML block list with comments", cm: imageConfigMap(images("# base images\n- alpine # small\n\n- nginx:1.27\n"), nil),
			want: []string{alpine, nginx}},
		{name: "YAML flow list", cm: imageConfigMap(images("[alpine, 127.0.0.1:5000/x:v1]"), nil),
			want: []string{"127.0.0.1:5000/x:v1", alpine}},
		{name: "digests are kept", cm: imageConfigMap(images(`["alpine@sha256:4c0b5c1c3c1ff5dc8d4a22d0e5a6f8b1f4b2c1b8e0f0a1d2c3b4a5968778695a"]`), nil),
			want: []string{"docker.io/library/alpine@sha256:4c0b5c1c3c1ff5dc8d4a22d0e5a6f8b1f4b2c1b8e0f0a1d2c3b4a5968778695a"}},
		{name: "duplicates collapse", cm: imageConfigMap(images(`["alpine", "docker.io/library/alpine:latest", "library/alpine", "alpine"]`), nil),
			want: []string{alpine}},
		{name: "empty list", cm: imageConfigMap(images("[]\n"), nil)},
		{name: "annotation names the key",
			cm:   imageConfigMap(map[string]string{"mine": `["alpine"]`, DefaultKey: `["debian"]`}, map[string]string{wire.AnnotationKey: "mine"}),
			want: []string{alpine}},
		{name: "empty annotation means the default key",
			cm:   imageConfigMap(images(`["debian"]`), map[string]string{wire.AnnotationKey: ""}),
			want: []string{debian}},
		{name: "mixed valid and invalid entries",
			cm:       imageConfigMap(images(`["alpine", "Alpine", "{{x}}", "nginx:1.27", ""]`), nil),
			want:     []string{alpine, nginx},
			problems: []string{`entry 2: invalid image reference "Alpine": repository names must be lowercase`, `entry 3: invalid image reference "{{x}}"`, `entry 5: invalid image reference "": it is empty`}},
		{name: "non-string entries are skipped",
			cm:       imageConfigMap(images("[alpine, 1, true, null, [x], {a: b}]"), nil),
			want:     []string{alpine},
			problems: []string{"entry 2 is a number (1), not a string", "entry 3 is a boolean (true)", "entry 4 is null", "entry 5 is a list", "entry 6 is a map"}},
		{name: "missing key", cm: imageConfigMap(map[string]string{"other": `["alpine"]`}, nil),
			problems: []string{`has no key "images" in data (to read another key, name it in annotation image-cache-daemon/key)`}},
		// How an installation makes its image list (the chart's
		// configmaps.yaml): whoever writes the list then owns its data.
		{name: "no data at all is an empty list", cm: imageConfigMap(nil, nil)},
		{name: "annotated key missing", cm: imageConfigMap(images(`["alpine"]`), map[string]string{wire.AnnotationKey: "mine"}),
			problems: []string{`has no key "mine" in data (the key named by annotation image-cache-daemon/key)`}},
		{name: "key in binaryData only",
			cm: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "list"},
				BinaryData: map[string][]byte{DefaultKey: []byte(`["alpine"]`)}},
			problems: []string{`key "images" is in binaryData; the image list is read from data only`}},
		{name: "empty value", cm: imageConfigMap(images(""), nil),
			problems: []string{"the value is empty; write a list such as [\"alpine\", \"nginx:1.27\"], or [] for none"}},
		{name: "blank value", cm: imageConfigMap(images(" \n\t\n"), nil),
			problems: []string{"the value is empty"}},
		{name: "null", cm: imageConfigMap(images("null"), nil),
			problems: []string{"the value is null, not a list of image references"}},
		{name: "comment only", cm: imageConfigMap(images("# none yet\n"), nil),
			problems: []string{"the value is null"}},
		{name: "a map", cm: imageConfigMap(images("alpine: latest\n"), nil),
			problems: []string{"the value is a map, not a list"}},
		{name: "a JSON object", cm: imageConfigMap(images(`{"images": ["alpine"]}`), nil),
			problems: []string{"the value is a map, not a list"}},
		{name: "a bare string", cm: imageConfigMap(images("alpine"), nil),
			problems: []string{`the value is a single string ("alpine"), not a list`}},
		{name: "a boolean", cm: imageConfigMap(images("yes"), nil),
			problems: []string{"the value is a boolean (yes), not a list"}},
		{name: "a comma-separated string", cm: imageConfigMap(images("alpine, debian"), nil),
			problems: []string{`a single string ("alpine, debian")`}},
		{name: "a number", cm: imageConfigMap(images("42"), nil),
			problems: []string{"the value is a number (42), not a list"}},
		{name: "malformed JSON", cm: imageConfigMap(images(`["alpine", "debian"`), nil),
			problems: []string{"the value is not valid JSON or YAML"}},
		{name: "malformed YAML", cm: imageConfigMap(images("- alpine\n  - debian: [\n"), nil),
			problems: []string{"the value is not valid JSON or YAML"}},
		{name: "numbers are quoted as written",
			cm:       imageConfigMap(images(`["alpine", "nginx:1.27", 1.10, 0x1F]`), nil),
			want:     []string{alpine, nginx},
			problems: []string{"entry 3 is a number (1.10), not a string; quote it if it is an image reference", "entry 4 is a number (0x1F)"}},
		{name: "YAML 1.1 booleans are booleans, as kubectl reads them",
			cm:       imageConfigMap(images("- yes\n- 'no'\n- !!str on\n- Off\n"), nil),
			want:     []string{"docker.io/library/no:latest", "docker.io/library/on:latest"},
			problems: []string{"entry 1 is a boolean (yes), not a string", "entry 4 is a boolean (Off)"}},
		{name: "other scalars are named",
			cm:       imageConfigMap(images("- 2024-01-02\n- .inf\n- !!binary YWxwaW5l\n- !custom alpine\n- ~\n"), nil),
			problems: []string{"entry 1 is a timestamp (2024-01-02)", "entry 2 is a number (.inf)", `entry 3 is a value tagged "!!binary"`, `entry 4 is a value tagged "!custom"`, "entry 5 is null"}},
		{name: "explicit strings and block scalars are strings",
			cm:   imageConfigMap(images("- !!str alpine\n- |-\n  nginx:1.27\n"), nil),
			want: []string{alpine, nginx}},
		{name: "a JSON string with escapes",
			cm:   imageConfigMap(images(`["\u0061lpine"]`), nil),
			want: []string{alpine}},
		{name: "aliases are refused, not expanded",
			cm:       imageConfigMap(images("- &base alpine\n- *base\n- nginx:1.27\n"), nil),
			want:     []string{alpine, nginx},
			problems: []string{"entry 2: YAML aliases (*base) are not allowed in an image list; write each image out"}},
		{name: "aliases in flow style",
			cm:       imageConfigMap(images(`[&a "alpine", *a]`), nil),
			want:     []string{alpine},
			problems: []string{"entry 2: YAML aliases (*a) are not allowed"}},
		{name: "an alias of a list is not followed",
			cm:       imageConfigMap(images("- &l [alpine, debian]\n- *l\n"), nil),
			problems: []string{"entry 1 is a list", "entry 2: YAML aliases (*l)"}},
		{name: "an unknown alias", cm: imageConfigMap(images("- *nothing\n"), nil),
			problems: []string{`the value is not valid JSON or YAML (expected a YAML list of strings such as ["alpine", "nginx:1.27"]): yaml: unknown anchor 'nothing' referenced`}},
		{name: "a second document", cm: imageConfigMap(images("- alpine\n---\n- debian\n"), nil),
			problems: []string{`the value holds more than one YAML document (a line "---" starts another); write one list, a YAML list of strings such as ["alpine", "nginx:1.27"]`}},
		{name: "an empty second document", cm: imageConfigMap(images("- alpine\n---\n"), nil),
			problems: []string{"more than one YAML document"}},
		{name: "one document with markers", cm: imageConfigMap(images("---\n- alpine\n...\n"), nil),
			want: []string{alpine}},
		{name: "a broken second document", cm: imageConfigMap(images("- alpine\n---\n- [\n"), nil),
			problems: []string{"the value is not valid JSON or YAML"}},
		{name: "an IPv6 registry quoted", cm: imageConfigMap(images(`- "[::1]:5000/app:v1"`+"\n"), nil),
			want: []string{"[::1]:5000/app:v1"}},
		{name: "an IPv6 registry unquoted is YAML's flow list",
			cm:       imageConfigMap(images("- [::1]:5000/app:v1\n"), nil),
			problems: []string{"the value is not valid JSON or YAML"}},
		{name: "nil ConfigMap", cm: nil, problems: []string{"no ConfigMap"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, problems := ImagesFromConfigMap(tc.cm)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("images = %q, want %q", got, tc.want)
			}
			if len(problems) != len(tc.problems) {
				t.Fatalf("problems = %q, want %d like %q", problems, len(tc.problems), tc.problems)
			}
			for i, p := range problems {
				if !strings.Contains(p.Error(), tc.problems[i]) {
					t.Errorf("problem %q does not say %q", p, tc.problems[i])
				}
				if tc.cm != nil && !strings.Contains(p.Error(), "ConfigMap ns/list") {
					t.Errorf("problem %q does not name the ConfigMap", p)
				}
				if tc.cm != nil && !strings.Contains(p.Error(), `"`+ConfigMapKey(tc.cm)+`"`) {
					t.Errorf("problem %q does not name the key", p)
				}
			}
		})
	}
}

func TestImagesFromConfigMapWithoutNamespace(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "list"}, Data: map[string]string{"other": ""}}
	_, problems := ImagesFromConfigMap(cm)
	if len(problems) != 1 || !strings.HasPrefix(problems[0].Error(), "ConfigMap list has no key") {
		t.Fatalf("problems = %q, want one naming ConfigMap list", problems)
	}
}

func TestConfigMapDefaultsMatchTheSeed(t *testing.T) {
	// The seed README is the contract: these strings are in users' clusters.
	if DefaultConfigMapSelector != "app.kubernetes.io/part-of=image-cache-daemon" || DefaultKey != "images" {
		t.Fatalf("ConfigMap contract changed: %q %q", DefaultConfigMapSelector, DefaultKey)
	}
}

// A key name is the tenant's too, and is quoted short.
func TestImagesFromConfigMapQuotesTheKeyShort(t *testing.T) {
	key := strings.Repeat("k", 1<<20)
	for _, cm := range []*corev1.ConfigMap{
		imageConfigMap(nil, map[string]string{wire.AnnotationKey: key}),
		imageConfigMap(map[string]string{key: "[1]"}, map[string]string{wire.AnnotationKey: key}),
	} {
		_, problems := ImagesFromConfigMap(cm)
		if len(problems) != 1 || len(problems[0].Error()) > 1<<10 || !strings.Contains(problems[0].Error(), `…" (+1048448 bytes)`) {
			t.Errorf("problems = %.300q, want one that quotes the key short", problems)
		}
	}
}
