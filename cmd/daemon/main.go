// Command image-cache-daemon runs on every node and keeps that node's
// prefetch pods pulling the images the cluster wants.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/dcherman/image-cache-daemon/cmd/daemon/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
