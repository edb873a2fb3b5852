#!/usr/bin/env bash
# System packages the tests need (Debian 12, as root): SLURM with job accounting, and Chromium
# to render the report headless. Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/slurm-deps.sh"
if ! command -v chromium >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
fi
