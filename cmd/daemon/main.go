// Command image-cache-daemon runs on every node and keeps that node's
// prefetch pods pulling the images the cluster wants.
package main

import (
	"fmt"
	"os"

	"github.com/dcherman/image-cache-daemon/pkg/version"
)

func main() {
	fmt.Fprintf(os.Stderr, "image-cache-daemon %s\n", version.String())
}
