# image-cache-daemon: build, local cluster, tests. `make help` lists targets.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := build

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REGISTRY ?= 127.0.0.1:5000
# The release image's path under the local registry, which the local cluster's
# containerd uses as its ghcr.io mirror.
IMAGE ?= $(REGISTRY)/dcherman/image-cache-daemon:$(VERSION)
KUBECONFIG ?= $(or $(ICD_CLUSTER_DIR),/var/lib/icd-cluster)/admin.kubeconfig
export KUBECONFIG

PKG := github.com/dcherman/image-cache-daemon
LDFLAGS := -s -w -X $(PKG)/pkg/version.Version=$(VERSION)
GOBUILD := CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)"

.PHONY: help build image cluster-up cluster-down demo test test-unit test-fuzz test-e2e test-release krew-manifest e2e vet bench bench-fleet

help: ## list targets
	@awk -F':.*## ' '/^[a-z-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build the three binaries into bin/
	$(GOBUILD) -o bin/image-cache-daemon ./cmd/daemon
	$(GOBUILD) -o bin/warden ./cmd/warden
	$(GOBUILD) -o bin/kubectl-imagecache ./cmd/kubectl-imagecache

image: build ## build the project image (Dockerfile, buildah) from bin/ and push it to the local registry
	hack/image.sh $(IMAGE) docker://$(IMAGE) linux/$$(go env GOARCH)=bin > bin/image-ref.new
	mv bin/image-ref.new bin/image-ref
	@cat bin/image-ref

cluster-up: ## bring up the local cluster (root; first run builds Kubernetes, ~10 min); NODES=2 for a second node
	hack/cluster/up.sh

cluster-down: ## stop the local cluster and remove its state
	hack/cluster/down.sh

demo: cluster-up image ## the main job end to end on the local cluster: install, add alpine, status
	hack/demo.sh

vet:
	go vet ./...
	go vet -tags e2e ./test/e2e/...
	go vet -tags release ./test/release/...

test-unit: vet ## unit tests, race detector on; then the allocation bounds, which the race detector's own allocations blur, without it
	go test -race -count=1 ./...
	go test -count=1 ./pkg/argo/... ./pkg/listformat/... ./pkg/source/...

FUZZTIME ?= 10s
test-fuzz: ## run every Go fuzz target for FUZZTIME each (default 10s; e.g. make test-fuzz FUZZTIME=10m)
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

e2e: image ## e2e tests against a running local cluster (make cluster-up first)
	ICD_IMAGE=$$(cat bin/image-ref) ICD_E2E_ARTIFACTS=$(CURDIR)/e2e-artifacts KUBECTL=$$(hack/kube/build.sh)/kubectl go test -tags e2e -count=1 -timeout 40m -v ./test/e2e/...

bench: image ## print the benchmark figures, on a running local cluster (make cluster-up first)
	CRICTL=$$(hack/kube/build.sh)/crictl go run ./hack/bench

bench-fleet: image ## the fleet figure (about 15 minutes; kwok-simulated nodes, 2,000 WorkflowTemplates), on a running local cluster
	KWOK=$$(hack/kwok/build.sh)/kwok go run ./hack/bench -run fleet

test-e2e: ## bring the cluster up with two nodes, run the e2e tests, bring it down
	NODES=2 hack/cluster/up.sh
	status=0; $(MAKE) e2e IMAGE=$(IMAGE) || status=$$?; hack/cluster/down.sh; exit $$status

test-release: ## goreleaser builds every archive; krew validates plugins/krew.yaml and installs the plugin for kubectl
	tools=$$(hack/tools.sh) && kube=$$(hack/kube/build.sh) && \
	ICD_TOOLS=$$tools KUBECTL=$$kube/kubectl go test -tags release -count=1 -timeout 30m -v ./test/release/...

krew-manifest: ## after `goreleaser release` of a tag: plugins/krew.yaml from dist/krew/imagecache.yaml
	{ grep '^#' plugins/krew.yaml; grep -v '^#' dist/krew/imagecache.yaml; } > plugins/krew.yaml.new
	mv plugins/krew.yaml.new plugins/krew.yaml

test: test-unit test-fuzz test-release test-e2e ## every test: unit, fuzz (briefly), release, then e2e on a fresh local cluster
