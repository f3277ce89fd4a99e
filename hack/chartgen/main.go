// Command chartgen writes the chart's generated files (values.yaml,
// values.schema.json, README.md, files/warden-*) from pkg/install:
//
//	go run ./hack/chartgen
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/dcherman/image-cache-daemon/charts"
	"github.com/dcherman/image-cache-daemon/pkg/install"
)

func main() {
	files, err := install.ChartFiles()
	if err == nil {
		for name, data := range files {
			p := filepath.Join("charts", charts.Name, name)
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				break
			}
			if err = os.WriteFile(p, data, 0o644); err != nil {
				break
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chartgen:", err)
		os.Exit(1)
	}
}
