#!/usr/bin/env bash
# Sets up (packages + Release build, see setup.sh) and runs the main job.
# Until the shipped Fashion-MNIST model lands, the main job is the engine's demo: the
# paper's 1-D Gaussian sampler tuned towards a target mean with the exact adjoint.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build/idtune demo "$@"
