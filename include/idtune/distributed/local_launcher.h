#pragma once
// `idtune tune --nproc N`: N local workers of one data-parallel run, started as torchrun
// --standalone starts them: the same command line with RANK, LOCAL_RANK, WORLD_SIZE,
// LOCAL_WORLD_SIZE, MASTER_ADDR = 127.0.0.1 and MASTER_PORT (a free port) set, and cores / N
// threads each (IDTUNE_NUM_THREADS, unless it is set). The launcher forwards SIGINT and SIGTERM
// to the workers (each stops at the same iteration and rank 0 writes a checkpoint); a worker
// that fails makes it stop the others; a launcher that is killed takes its workers with it.

#include <string>
#include <vector>

namespace idtune {

/// Runs `argv` (argv[0]: the executable) as `nproc` workers until all have exited. Returns 0
/// when every worker succeeded, else the first failure's exit status (128 + the signal for a
/// worker killed by one).
int run_local_workers(const std::vector<std::string>& argv, int nproc);

}  // namespace idtune
