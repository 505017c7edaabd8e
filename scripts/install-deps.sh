#!/usr/bin/env bash
# Installs, with apt only, what building, running and testing Kiln needs on
# Debian 12. Installs nothing when everything is already there.
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config git
      libgtest-dev libgmock-dev libbenchmark-dev libeigen3-dev
      nlohmann-json3-dev libsqlite3-dev sqlite3 libssl-dev libcpp-httplib-dev libboost-dev
      libcli11-dev libyaml-cpp-dev libre2-dev
      bubblewrap libseccomp-dev iproute2 btrfs-progs nftables tar procps curl
      slurm-wlm slurmctld slurmd slurm-client munge slurmrestd slurm-wlm-jwt-plugin
      python3-sklearn python3-numpy python3-statsd python3-boto3 python3-optuna python3-cryptography awscli prometheus
      clang libclang-rt-14-dev clang-format clang-tidy)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
