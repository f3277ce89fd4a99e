// Package charts holds the Helm chart of image-cache-daemon, the one source
// of an installation's objects: helm installs it, and kubectl imagecache
// install renders it (pkg/install) with the values of its flags.
package charts

import "embed"

// FS holds the chart, in the directory Name.
//
//go:embed all:image-cache-daemon
var FS embed.FS

// Name is the chart's name and its directory in FS.
const Name = "image-cache-daemon"
