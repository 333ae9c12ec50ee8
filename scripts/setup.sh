#!/usr/bin/env bash
# Installs everything idtune needs on Debian 12 and builds it in build/ (Release).
# Idempotent: packages already present are skipped by apt, the build is incremental.
#   scripts/setup.sh            install + configure + [ "${IDTUNE_SKIP_BUILD:-0}" = 1 ] || build
#   IDTUNE_SKIP_APT=1 scripts/setup.sh   build only
#   IDTUNE_WITH_CLANG=1 IDTUNE_SKIP_BUILD=1 scripts/setup.sh   also clang + libFuzzer, no [ "${IDTUNE_SKIP_BUILD:-0}" = 1 ] || build
#                                        (scripts/sanitize.sh, scripts/fuzz.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  cmake g++ make pkg-config
  libtorch-dev python3-torch
  libopencv-dev nlohmann-json3-dev libspdlog-dev libgtest-dev zlib1g-dev libre2-dev
  libgloo-dev
  libopenblas0-openmp
  python3-matplotlib
  dataset-fashion-mnist
)
[ "${IDTUNE_WITH_CLANG:-0}" = 1 ] && packages+=(clang libclang-rt-dev)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_packages() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# LibTorch's BLAS: the OpenMP build of OpenBLAS (the pthread build fights OpenMP,
# the reference BLAS makes ConvTranspose2d 2.5-3x slower).
select_openblas() {
  local arch; arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
  for lib in libblas.so.3 liblapack.so.3; do
    local alt="/usr/lib/$arch/openblas-openmp/$lib"
    [ -e "$alt" ] && as_root update-alternatives --quiet --set "$lib-$arch" "$alt" || true
  done
}

build() {
  local jobs; jobs=$(nproc)
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j "$jobs"
}

[ "${IDTUNE_SKIP_APT:-0}" = 1 ] || { install_packages; select_openblas; }
[ "${IDTUNE_SKIP_BUILD:-0}" = 1 ] || build
