package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
)

// printFlags make a command's -o kubectl's: json, yaml, kyaml,
// jsonpath=..., jsonpath-file=..., go-template=..., go-template-file=...,
// --template, and name where the command prints Kubernetes objects, all
// printed by k8s.io/cli-runtime's printers; beside them, the formats the
// command prints itself (its table, "", and "wide").
type printFlags struct {
	kubectl *genericclioptions.PrintFlags
	own     []string
	// defaultFormat is what no -o means, when the command has no format of
	// its own.
	defaultFormat string
}

// newPrintFlags binds -o to output; objects: the command prints Kubernetes
// objects, which -o name can name.
func newPrintFlags(output *string, objects bool, own ...string) *printFlags {
	f := genericclioptions.NewPrintFlags("")
	f.OutputFormat = output
	if !objects {
		f.NamePrintFlags = nil
	}
	return &printFlags{kubectl: f, own: own}
}

// addFlags adds -o and the template flags to cmd, with completion.
func (f *printFlags) addFlags(cmd *cobra.Command) {
	f.kubectl.AddFlags(cmd)
	cmd.Flags().Lookup("output").Usage = "Output format: " + strings.Join(f.formats(), ", ")
	completeOutput(cmd, f.completions()...)
}

// formats are the -o values, as a user writes them.
func (f *printFlags) formats() []string {
	var out []string
	for _, format := range f.own {
		if format != "" {
			out = append(out, format)
		}
	}
	for _, format := range f.kubectl.AllowedFormats() {
		if strings.HasSuffix(format, "-as-json") {
			continue // kept by kubectl for old scripts
		}
		if strings.Contains(format, "template") || strings.Contains(format, "jsonpath") {
			format += "=..."
		}
		out = append(out, format)
	}
	return out
}

// completions are the -o values a shell completes (a template's "=" ends
// the completion, the template is the user's).
func (f *printFlags) completions() []string {
	out := f.formats()
	for i, format := range out {
		out[i] = strings.TrimSuffix(format, "...")
	}
	return out
}

// ownFormat reports whether the command prints -o itself (its table).
func (f *printFlags) ownFormat() bool {
	format := *f.kubectl.OutputFormat
	template := f.kubectl.TemplatePrinterFlags.TemplateArgument
	if format == "" && template != nil && *template != "" {
		return false // --template alone means -o go-template
	}
	return slices.Contains(f.own, format)
}

// format is the output format -o asks for: defaultFormat without one.
func (f *printFlags) format() string {
	template := f.kubectl.TemplatePrinterFlags.TemplateArgument
	if format := *f.kubectl.OutputFormat; format != "" || template != nil && *template != "" {
		return format
	}
	return f.defaultFormat
}

// printer returns kubectl's printer for -o, nil when the command prints the
// format itself, and an error naming every format when -o is none of them.
func (f *printFlags) printer() (printers.ResourcePrinter, error) {
	if f.ownFormat() {
		return nil, nil
	}
	flags := *f.kubectl
	format := f.format()
	flags.OutputFormat = &format
	p, err := flags.ToPrinter()
	if genericclioptions.IsNoCompatiblePrinterError(err) {
		return nil, fmt.Errorf("--output %q: want %s", format, strings.Join(f.formats(), ", "))
	}
	return p, err
}

// outputGroupVersion is the apiVersion of the documents list and status
// print: kubectl's printers want a kind, and a script can tell them apart.
const outputGroupVersion = "image-cache-daemon/v1"

// printDocument prints doc, a command's output, with p, as kind.
func printDocument(p printers.ResourcePrinter, w io.Writer, kind string, doc runtime.Object) error {
	doc.GetObjectKind().SetGroupVersionKind(schema.FromAPIVersionAndKind(outputGroupVersion, kind))
	return p.PrintObj(doc, w)
}

// copyJSON deep-copies src into dst (both pointers to one type) the way
// the documents are printed: through JSON.
func copyJSON(src, dst any) {
	b, err := json.Marshal(src)
	if err != nil {
		panic(fmt.Sprintf("copying %T: %v", src, err))
	}
	if err := json.Unmarshal(b, dst); err != nil {
		panic(fmt.Sprintf("copying %T: %v", src, err))
	}
}
