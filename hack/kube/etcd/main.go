// Command etcd is the etcd server of the pinned Kubernetes release, built from
// the same module graph so that its version matches what the API server expects.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
