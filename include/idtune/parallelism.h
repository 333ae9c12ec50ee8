#pragma once

namespace idtune {

/// LibTorch starts with one intra-op thread on Debian's build: use every core (or
/// $IDTUNE_NUM_THREADS when set). Returns the number of threads in use.
int use_all_cores();

}  // namespace idtune
