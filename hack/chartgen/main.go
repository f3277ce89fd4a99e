// Command chartgen makes the Helm chart's files and ships the chart:
//
//	go run ./hack/chartgen                           # values.yaml, values.schema.json, README.md, files/ from pkg/install
//	go run ./hack/chartgen package VERSION DIR       # DIR/image-cache-daemon-VERSION.tgz of release VERSION
//	go run ./hack/chartgen push ARCHIVE oci://REPO [--plain-http]
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dcherman/image-cache-daemon/charts"
	"github.com/dcherman/image-cache-daemon/internal/chartrelease"
	"github.com/dcherman/image-cache-daemon/pkg/install"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "chartgen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) == 0:
		return generate()
	case args[0] == "package" && len(args) == 3:
		path, err := chartrelease.Package(args[1], args[2])
		if err == nil {
			fmt.Println(path)
		}
		return err
	case args[0] == "push" && (len(args) == 3 || len(args) == 4 && args[3] == "--plain-http"):
		ref, err := chartrelease.Push(args[1], args[2], len(args) == 4)
		if err == nil {
			fmt.Println(ref)
		}
		return err
	}
	return errors.New("usage: chartgen | chartgen package VERSION DIR | chartgen push ARCHIVE oci://REPO [--plain-http]")
}

// generate writes the chart's generated files.
func generate() error {
	files, err := install.ChartFiles()
	if err != nil {
		return err
	}
	for name, data := range files {
		p := filepath.Join("charts", charts.Name, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
