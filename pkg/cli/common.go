package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/dcherman/image-cache-daemon/pkg/install"
)

// Exit codes, documented in the README: scripts rely on them.
const (
	// ExitError is any failure: bad input, an API error, a node that failed.
	ExitError = 1
	// ExitNotInstalled: image-cache-daemon is not installed where the
	// command looked.
	ExitNotInstalled = 3
)

// ExitError carries the process exit code for an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// ExitCode returns the exit code for err (0 for nil).
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return ExitError
}

// options is the kubectl pattern every command follows: Complete fills in
// what the flags and arguments leave out, Validate checks, Run acts.
type options interface {
	Complete(args []string) error
	Validate() error
	Run(ctx context.Context) error
}

// runE runs o as a cobra command.
func runE(o options) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := o.Complete(args); err != nil {
			return err
		}
		if err := o.Validate(); err != nil {
			return err
		}
		return o.Run(cmd.Context())
	}
}

// kube is what every command that talks to the cluster shares: the
// kubectl flags and the namespace image-cache-daemon lives in.
type kube struct {
	flags     *genericclioptions.ConfigFlags
	client    kubernetes.Interface
	namespace string
}

// complete builds the client. The namespace is -n when given, else the
// installation's default namespace (not the kubeconfig's: the plugin manages
// one installation, wherever the user's context points).
func (k *kube) complete() error {
	k.namespace = install.DefaultNamespace
	if k.flags.Namespace != nil && *k.flags.Namespace != "" {
		k.namespace = *k.flags.Namespace
	}
	if k.client == nil {
		cfg, err := k.restConfig()
		if err != nil {
			return err
		}
		if k.client, err = kubernetes.NewForConfig(cfg); err != nil {
			return fmt.Errorf("creating a client: %w", err)
		}
	}
	return nil
}

// applier builds the installer (server-side apply through the dynamic
// client) from the kubectl flags.
func (k *kube) applier() (*install.Applier, error) {
	cfg, err := k.restConfig()
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	mapper, err := k.flags.ToRESTMapper()
	if err != nil {
		return nil, err
	}
	return &install.Applier{Dynamic: dyn, Mapper: mapper}, nil
}

// restConfig is the client configuration the kubectl flags give. With no
// kubeconfig at all (and no --server, outside a pod), client-go would talk to
// http://localhost:8080 and fail with "connection refused"; say what is
// missing instead.
func (k *kube) restConfig() (*rest.Config, error) {
	loader := k.flags.ToRawKubeConfigLoader()
	raw, err := loader.RawConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	given := func(f *string) bool { return f != nil && *f != "" }
	if len(raw.Clusters) == 0 && !given(k.flags.APIServer) && os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		where := "~/.kube/config"
		if p := loader.ConfigAccess().GetLoadingPrecedence(); len(p) > 0 {
			where = strings.Join(p, ", ")
		}
		return nil, fmt.Errorf("no cluster to talk to: no kubeconfig with a cluster found (looked at %s) and no --server; pass --kubeconfig or set KUBECONFIG", where)
	}
	cfg, err := k.flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	return cfg, nil
}

// notInstalled turns a NotFound of the installation into advice.
func notInstalled(ns string, err error) error {
	if apierrors.IsNotFound(err) {
		return &exitError{ExitNotInstalled, fmt.Errorf("image-cache-daemon is not installed in namespace %s: run kubectl imagecache install (or pass -n NAMESPACE)", ns)}
	}
	return err
}
