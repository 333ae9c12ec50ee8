#pragma once
// The configuration of `idtune tune`: one JSON file mapped to plain structs. Unknown keys are
// errors naming their JSON path; values are range-checked with the allowed values in the
// message; `--set a.b=value` overrides any key before validation.

#include "idtune/core/json_reader.h"
#include "idtune/training/trainer.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace idtune {

struct OutputOptions {
  /// Directory of the run: config.json, metrics.jsonl, checkpoint.pt, samples/, tuned.pt.
  std::string run_dir = "runs/idtune";
  /// Sample grids: samples/before.png, after.png and every image_every iterations (off: none,
  /// e.g. for a latent model without a decoder).
  bool grids = true;
  /// Iterations between progress lines, sample grids and checkpoints (0: never).
  int64_t log_every = 10;
  int64_t image_every = 100;
  int64_t checkpoint_every = 100;
  /// Images in each grid, sampled with the same noise (grid_seed) every time.
  int64_t grid_samples = 16;
  uint64_t grid_seed = 1234;
};

/// The conditions of a conditional model's batches: class labels, or a torch.save'd tensor
/// [N, shape…] of N conditions (e.g. text-encoder states). Exactly one, or neither for an
/// unconditional model.
struct ConditionsConfig {
  std::vector<int64_t> classes;
  std::string file;
};

struct TuneConfig {
  /// TorchScript score model; its card is the .json beside it.
  std::string model;
  /// cpu, cuda or cuda:N.
  std::string device = "cpu";
  /// float32 or float64.
  std::string dtype = "float32";
  /// The network's calls: fp32, or under autocast in bf16 (CPU, CUDA) or fp16 (CUDA).
  Precision precision = Precision::Fp32;
  /// Reward spec (see reward.h), e.g. "brightness" or "0.5*red + classifier:c.pt:7".
  std::string reward = "brightness";
  /// Outer iterations of the algorithm.
  int64_t iterations = 100;
  TrainerOptions trainer;
  ConditionsConfig conditions;
  OutputOptions output;
  /// Data-parallel runs (docs/scaling.md): seconds a rank waits for the others at a collective
  /// before it stops with an error (a rank died or hangs). distributed.check_every is
  /// trainer.theta_check_every.
  double distributed_timeout_s = 60;
  /// The file it was read from, for messages (not part of the configuration).
  std::string source;
};

/// Reads the JSON into the structs: unknown keys, wrong types and unknown names are refused
/// with the JSON path; `source` names the file in messages. Value rules are checked once, by
/// the constructors that own them (TuneRun adds the file and JSON path to their messages).
TuneConfig parse_tune_config(const nlohmann::json& json, const std::string& source);
nlohmann::json to_json(const TuneConfig& config);

/// Applies one `dotted.key=value` override to a JSON config; the value is parsed as JSON when
/// it is valid JSON (numbers, true/false, arrays) and taken as a string otherwise.
void apply_override(nlohmann::json& config, const std::string& assignment);

}  // namespace idtune
