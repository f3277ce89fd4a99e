package options

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func valid() *Options {
	o := NewOptions()
	o.NodeName, o.PodName, o.PodNamespace = "node-1", "icd-abc", "image-cache-daemon"
	return o
}

func TestValidateNamesTheFlag(t *testing.T) {
	for _, tc := range []struct {
		flag   string
		change func(*Options)
	}{
		{"--node-name", func(o *Options) { o.NodeName = "" }},
		{"--pod-name", func(o *Options) { o.PodName = "" }},
		{"--configmap-selector", func(o *Options) { o.ConfigMapSelector = "a in (" }},
		{"--image", func(o *Options) { o.Images = []string{"alpine", "Bad:Ref"} }},
		{"--warden-image", func(o *Options) { o.WardenImage = "not valid" }},
		{"--resync-period", func(o *Options) { o.ResyncPeriod = -time.Second }},
		{"--resync-period", func(o *Options) { o.ResyncPeriod = time.Second }},
		{"--prefetch-tolerations", func(o *Options) { o.PrefetchTolerations = "{not: a list}" }},
		{"--prefetch-tolerations", func(o *Options) { o.PrefetchTolerations = `[{"key": "a", "operator": "Maybe"}]` }},
		{"--prefetch-priority-class", func(o *Options) { o.PrefetchPriorityClass = "Not_Valid" }},
		{"--image-pull-secret", func(o *Options) { o.ImagePullSecrets = []string{"UPPER"} }},
		{"--batch-size", func(o *Options) { o.BatchSize = 0 }},
		{"--source-namespace", func(o *Options) { o.SourceNamespaces = []string{"Not_A_Namespace"} }},
		{"--startup-taint", func(o *Options) { o.StartupTaint = "not a key" }},
		{"--warm-timeout", func(o *Options) { o.WarmTimeout = -time.Second }},
		{"--max-images", func(o *Options) { o.MaxImages = 0 }},
		{"--max-images", func(o *Options) { o.MaxImages = -5 }},
		{"--max-prefetch-pods", func(o *Options) { o.MaxPrefetchPods = 0 }},
		{"--max-prefetch-pods", func(o *Options) { o.MaxPrefetchPods = -1 }},
		{"--metrics-bind-address", func(o *Options) { o.MetricsAddress = "8080" }},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			o := valid()
			tc.change(o)
			err := o.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.flag) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.flag)
			}
		})
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	o := valid()
	o.ResyncPeriod = 0
	o.PrefetchTolerations = "- operator: Exists\n"
	o.MaxImages, o.MaxPrefetchPods = 1, 1
	if err := o.Validate(); err != nil {
		t.Fatalf("resync off, a YAML toleration list and limits of 1 refused: %v", err)
	}
}

// The limits on one node are flags with safe defaults.
func TestLimitFlags(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		images int
		pods   int
	}{
		{nil, 1000, 50},
		{[]string{"--max-images=20000", "--max-prefetch-pods=5"}, 20000, 5},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			o := NewOptions()
			o.AddFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if o.MaxImages != tc.images || o.MaxPrefetchPods != tc.pods {
				t.Fatalf("--max-images %d --max-prefetch-pods %d, want %d and %d", o.MaxImages, o.MaxPrefetchPods, tc.images, tc.pods)
			}
		})
	}
}

// The original's flags keep their names and defaults.
func TestSeedFlags(t *testing.T) {
	fs := pflag.NewFlagSet("image-cache-daemon", pflag.ContinueOnError)
	NewOptions().AddFlags(fs)
	for name, def := range map[string]string{
		"configmap-selector":                    "app.kubernetes.io/part-of=image-cache-daemon",
		"image":                                 "[]",
		"node-name":                             "",
		"pod-name":                              "",
		"pod-namespace":                         "",
		"pod-uid":                               "",
		"resync-period":                         "15m0s",
		"warden-image":                          "",
		"watch-argo-cluster-workflow-templates": "true",
		"watch-argo-cron-workflows":             "true",
		"watch-argo-workflow-templates":         "true",
		"watch-configmaps":                      "true",
	} {
		f := fs.Lookup(name)
		if f == nil {
			t.Errorf("--%s is missing", name)
			continue
		}
		if f.DefValue != def {
			t.Errorf("--%s defaults to %q, want %q", name, f.DefValue, def)
		}
	}
	if fs.Lookup("image").Value.Type() != "stringArray" {
		t.Error("--image must be a stringArray (repeatable)")
	}
}

// --pod-uid is read by nothing: the manifest no longer passes it, help does
// not show it, and an older install's arguments, which still pass it, parse
// as before.
func TestPodUIDIsAcceptedAndIgnored(t *testing.T) {
	fs := pflag.NewFlagSet("image-cache-daemon", pflag.ContinueOnError)
	o := NewOptions()
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--node-name=n", "--pod-name=p", "--pod-namespace=ns", "--pod-uid=0b6a3c5e-1f2d-4c1e-9a7b-3d5e6f708192"}); err != nil {
		t.Fatalf("an older install's arguments: %v", err)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("an older install's arguments: %v", err)
	}
	if f := fs.Lookup("pod-uid"); f == nil || !f.Hidden || f.Deprecated != "" {
		t.Errorf("--pod-uid is %+v, want hidden and not deprecated (no warning)", f)
	}
	if strings.Contains(fs.FlagUsages(), "pod-uid") {
		t.Error("help shows --pod-uid")
	}
}
