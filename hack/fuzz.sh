#!/usr/bin/env bash
# Runs every Go fuzz target of the repository (func FuzzXxx in a _test.go
# file), each for $FUZZTIME, one after another, and stops at the first
# failure (go test then leaves the failing input under the package's
# testdata/fuzz/FuzzXxx/, where a plain go test replays it).
#
#   hack/fuzz.sh                       every target, 10s each
#   FUZZTIME=5m hack/fuzz.sh           longer
#   hack/fuzz.sh ./pkg/listformat/...  only the targets of these packages
#
# FUZZMINIMIZETIME (default 3s) caps the time spent minimising each new
# input: go test's default, 60s, spent on the large hostile seeds (a 30 KB
# alias bomb) leaves a short run hardly any time to fuzz.
#
# Targets are found, not listed: a new FuzzXxx is run without changing this
# script. Only packages whose test files declare a FuzzXxx are compiled.
set -euo pipefail

cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-3s}
patterns=("${@:-./...}")

# Packages whose test files declare a FuzzXxx. (Each command's output is
# taken whole first, so that set -e stops at a package that does not build.)
listing=$(go list -f '{{.ImportPath}} {{.Dir}} {{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}' "${patterns[@]}")
pkgs=()
while read -r pkg dir files; do
  for f in $files; do
    if grep -q '^func Fuzz[A-Za-z0-9_]*(' "$dir/$f"; then
      pkgs+=("$pkg")
      break
    fi
  done
done <<<"$listing"

targets=()
for pkg in "${pkgs[@]}"; do
  names=$(go test -list '^Fuzz' "$pkg")
  for name in $(grep '^Fuzz' <<<"$names" || true); do
    targets+=("$pkg $name")
  done
done
if ((${#targets[@]} == 0)); then
  echo "hack/fuzz.sh: no fuzz targets in ${patterns[*]}" >&2
  exit 1
fi

echo "hack/fuzz.sh: ${#targets[@]} targets, $FUZZTIME each" >&2
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  echo "hack/fuzz.sh: $name ($pkg)" >&2
  go test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "$pkg"
done
echo "hack/fuzz.sh: all ${#targets[@]} targets passed" >&2
