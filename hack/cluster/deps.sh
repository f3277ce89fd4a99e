#!/usr/bin/env bash
# Installs the Debian packages the local cluster needs, when missing.
# Services that the packages would start (containerd, docker-registry) are
# kept from starting: the cluster runs its own, on loopback only.
set -euo pipefail

# iproute2 brings ip and tc: the bridge, and the slow registry's network
# namespace, veth pair and shaping (lib.sh: slowreg_net_up).
pkgs=(containerd runc containernetworking-plugins docker-registry iptables conntrack
      openssl iproute2 util-linux busybox-static ca-certificates curl
      buildah)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "deps.sh: need root to install ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}" >&2
policy=/usr/sbin/policy-rc.d
saved=""
if [[ -e $policy ]]; then saved=$(mktemp); cp -p "$policy" "$saved"; fi
restore() { if [[ -n $saved ]]; then mv "$saved" "$policy"; else rm -f "$policy"; fi; }
trap restore EXIT
printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
