// Package listformat is the image list a ConfigMap holds: how it is read,
// within bounds fit for a hostile tenant's value, and how it is written.
package listformat

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/dcherman/image-cache-daemon/pkg/imageref"
)

// ExpectedForm is how an image list is written, for messages that say how
// to fix one.
const ExpectedForm = `a YAML list of strings such as ["alpine", "nginx:1.27"]`

// ParseImageList reads an image list as a ConfigMap holds it: a JSON or
// YAML list of strings (JSON is YAML, so one parser reads both, block and
// flow style alike). It returns the normalised, distinct, sorted images and
// the problems of the entries it skipped (at most problems.Max of them,
// then a count); err means the value as a whole is not a list, and then
// there are no images. "[]" is the empty list; an empty value is an error,
// because it is more often a mistake than a choice.
//
// The value is a tenant's and may be hostile, so time and memory are linear
// in its length: the YAML is read as a node tree in which an alias stays a
// pointer to its anchor, never a copy, and an alias entry is refused rather
// than expanded (2,000 aliases of one 20 KB string would otherwise be 40 MB).
// Entries are read one level deep and only from the first document.
func ParseImageList(value string) (images []string, problems []error, err error) {
	l, err := Read(value, Limits{})
	if err != nil {
		return nil, nil, err
	}
	images = slices.Clone(l.Images)
	slices.Sort(images)
	return images, l.Problems.Errors(), nil
}

// parseDocument parses value as one YAML document and returns its root node,
// nil for a document that holds nothing (only comments).
func parseDocument(value string) (*yaml.Node, error) {
	dec := yaml.NewDecoder(strings.NewReader(value))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return nil, nil
	case err != nil:
		return nil, notYAML(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, notYAML(err)
	default:
		return nil, fmt.Errorf("the value holds more than one YAML document (a line \"---\" starts another); write one list, %s", ExpectedForm)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// notYAML reports a value the parser refused. The parser's message is cut
// rather than wrapped: it may quote the value (an unknown anchor's name),
// and it carries nothing to unwrap.
func notYAML(err error) error {
	return fmt.Errorf("the value is not valid JSON or YAML (expected %s): %s", ExpectedForm, imageref.Shorten(err.Error()))
}

// describe names the kind of a YAML node the way a user wrote it, quoting
// at most imageref.MaxQuoted bytes of its value.
func describe(n *yaml.Node) string {
	if n == nil {
		return "null"
	}
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a map"
	case yaml.AliasNode:
		return fmt.Sprintf("a YAML alias (*%s)", imageref.Shorten(n.Value))
	}
	if isYAML11Bool(n) {
		return fmt.Sprintf("a boolean (%s)", n.Value)
	}
	switch tag := n.ShortTag(); tag {
	case "!!str", "!!merge":
		return fmt.Sprintf("a single string (%s)", imageref.Quote(n.Value))
	case "!!int", "!!float":
		return fmt.Sprintf("a number (%s)", imageref.Shorten(n.Value))
	case "!!bool":
		return fmt.Sprintf("a boolean (%s)", imageref.Shorten(n.Value))
	case "!!null":
		return "null"
	case "!!timestamp":
		return fmt.Sprintf("a timestamp (%s)", imageref.Shorten(n.Value))
	default:
		return fmt.Sprintf("a value tagged %s", imageref.Quote(tag))
	}
}

// isString reports whether n is a string as a user means it: a scalar that
// YAML reads as a string, "<<" included (a merge key only inside a map), but
// not a plain word that YAML 1.1 reads as a boolean.
func isString(n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode || isYAML11Bool(n) {
		return false
	}
	tag := n.ShortTag()
	return tag == "!!str" || tag == "!!merge"
}

// yaml11Bools are the plain words that YAML 1.1 reads as booleans and YAML
// 1.2 as strings. sigs.k8s.io/yaml, and so kubectl and this parser before it
// read a node tree, take them for booleans: "- yes" stays a mistake
// reported, not an image named "yes".
var yaml11Bools = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true, "on": true, "On": true, "ON": true,
	"n": true, "N": true, "no": true, "No": true, "NO": true, "off": true, "Off": true, "OFF": true,
}

// isYAML11Bool reports whether n is one of yaml11Bools written plain (not
// quoted, not tagged).
func isYAML11Bool(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Style == 0 && yaml11Bools[n.Value]
}
