#!/usr/bin/env bash
# Install what tests/slurm_cluster.py needs for a real SLURM cluster of two nodes on this machine
# (two slurmd: Debian's SLURM is built with --enable-multiple-slurmd) with job accounting
# (Debian/Ubuntu, run as root). Idempotent: does nothing if all packages are present.
# Daemons are not started here (policy-rc.d may print "denied execution of start": harmless);
# the test fixture starts and stops them itself.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)

if [ "$(id -u)" != 0 ]; then
  echo "slurm-deps.sh: must run as root" >&2
  exit 1
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -qx 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "slurm-deps.sh: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
else
  echo "slurm-deps.sh: ${pkgs[*]} already installed"
fi
dpkg-query -W -f='${Package} ${Version}\n' "${pkgs[@]}"
