#pragma once
// `idtune tune` as a library call: everything is validated (config, model, reward, trainer)
// before the run directory is touched; then the loop writes metrics.jsonl, progress lines,
// sample grids, atomic checkpoints, and finally the tuned TorchScript model with its card.
//
// Run directory:
//   config.json        the resolved configuration
//   metrics.jsonl      one line per iteration
//   checkpoint.pt      the latest checkpoint (temp file + fsync + rename)
//   .lock              flock'ed by the process running it: one run per directory
//   samples/           before.png, step_NNNNNN.png, after.png: the same noise every time
//   tuned.pt, .json    the exported model (EMA weights when EMA is on) and its card
//
// Data-parallel (docs/scaling.md): every rank runs a TuneRun with its DistributedOptions; they
// meet, sample their shares and average their gradients, and rank 0 alone writes the run
// directory (the others read its checkpoint on --resume).

#include "idtune/core/fair_share.h"
#include "idtune/core/file_lock.h"
#include "idtune/diffusion/score_model.h"
#include "idtune/distributed/process_group.h"
#include "idtune/training/reward.h"
#include "idtune/training/trainer.h"
#include "idtune/training/tune_config.h"

#include <memory>
#include <optional>
#include <string>

namespace idtune {

class TuneRun {
 public:
  /// Loads the model and reward and builds the trainer; with `resume`, the run directory must
  /// hold a checkpoint of the same configuration (only `iterations`, `output` and
  /// `distributed` may differ). With `distributed`, meets the other ranks first.
  TuneRun(TuneConfig config, bool resume,
          const std::optional<DistributedOptions>& distributed = std::nullopt);
  ~TuneRun();

  /// Runs to `iterations`. Returns false if interrupted (SIGINT/SIGTERM): a checkpoint was
  /// written and `--resume` continues it.
  bool run();

  std::string path(const std::string& name) const;
  /// "'model' with reward 'r': N iterations, run directory 'd'" (progress lines).
  std::string summary() const;
  /// What run() would refuse, refused without writing anything (`idtune tune --check`): with
  /// `resume`, the checkpoint is read too. Returns summary().
  std::string validate_only();
  const Trainer& trainer() const { return *trainer_; }

 private:
  void prepare_run_directory();
  /// Rank 0 of a data-parallel run, or the single process: the one that writes.
  bool writes() const { return !group_ || group_->rank() == 0; }
  /// An interrupt seen by any rank (all stop at the same iteration).
  bool interrupted() const;
  void log_iteration(const IterationReport& report, double seconds);
  /// Warns once when the path KL of the first updates explodes (reward hacking).
  void watch_kl(const IterationReport& report);
  void write_grid(const ScoreModel& model, const std::string& name) const;
  void save_checkpoint();
  void export_tuned_model() const;

  TuneConfig config_;
  bool resume_;
  std::unique_ptr<ProcessGroup> group_;  // data-parallel runs only
  std::unique_ptr<Trainer> trainer_;
  std::unique_ptr<Reward> reward_;
  std::unique_ptr<FileLock> lock_;  // held from the first write to the run directory
  FairShare fair_share_ = FairShare::from_environment();  // threads, between iterations
  int64_t saved_iteration_ = 0;                           // the iteration of the checkpoint on disk
  double wall_time_offset_ = 0;                           // seconds of earlier sessions (resume)
  double wall_time_ = 0;
  bool kl_warned_ = false;  // watch_kl warns once
};

}  // namespace idtune
