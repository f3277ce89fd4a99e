// Command warden is the entrypoint of every image a prefetch pod pulls.
package main

import (
	"os"

	"github.com/dcherman/image-cache-daemon/pkg/warden"
)

func main() { os.Exit(warden.Main(os.Args[1:], os.Stderr)) }
