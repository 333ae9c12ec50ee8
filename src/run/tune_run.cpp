#include "idtune/run/tune_run.h"
#include "idtune/core/atomic_file.h"
#include "idtune/core/device.h"

#include "idtune/core/error.h"
#include "idtune/core/interrupt.h"
#include "idtune/core/json_reader.h"
#include "idtune/core/torchscript.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/eval/image_grid.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace idtune {

namespace fs = std::filesystem;

namespace {

/// watch_kl: a path KL over kKlTooLarge within the first kKlWatchUpdates updates. Measured on
/// the shipped pixel and latent models (docs/latent.md#choosing-lr-and-beta): a well-chosen
/// step keeps it at 1-5 over updates 2-5, a step 3x too large reaches 20-45, 30x 2000. (The
/// first update's KL is 0: its batch was sampled by θ₀ alone, so a ratio to it says nothing.)
constexpr double kKlTooLarge = 15.0;
constexpr int64_t kKlWatchUpdates = 10;
constexpr int64_t kFirstLogged = 3;

/// The configuration with the keys that may change between a run and its resumption removed.
nlohmann::json resumable_part(nlohmann::json config) {
  config.erase("iterations");
  config.erase("output");
  config.erase("distributed");
  return config;
}

/// Keeps the metrics lines of iterations before `iteration` (a crash may have logged
/// iterations after the last checkpoint); returns the last kept line's wall time.
double truncate_metrics(const std::string& file, int64_t iteration) {
  std::ifstream in(file);
  std::string line, kept;
  double wall_time = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || j.value("step", iteration) >= iteration) break;
    kept += line + "\n";
    wall_time = j.value("wall_time_s", 0.0);
  }
  in.close();
  write_bytes_atomically(file, kept);  // a kill mid-rewrite keeps the old file whole
  return wall_time;
}

}  // namespace

TuneRun::TuneRun(TuneConfig config, bool resume,
                 const std::optional<DistributedOptions>& distributed)
    : config_(std::move(config)), resume_(resume) {
  // Errors name the config and the key whose file, spec or value failed.
  const auto& source = config_.source;
  at_json_path(source, "/output/run_dir", [&] { check_directory_path(config_.output.run_dir); });
  ScoreModelOptions model_options = at_json_path(source, "/device", [&] {
    // Data-parallel on GPUs: "cuda" is each rank's own, cuda:LOCAL_RANK (as torchrun means it).
    const bool own_gpu = distributed && config_.device == "cuda";
    return ScoreModelOptions{
        parse_device(own_gpu ? "cuda:" + std::to_string(distributed->local_rank) : config_.device),
        parse_dtype(config_.dtype)};
  });
  model_options.precision = config_.precision;
  at_json_path(source, "/precision", [&] {
    check_precision(config_.precision, model_options.device, model_options.dtype);
  });
  auto model = at_json_path(source, "/model",
                            [&] { return ScoreModel::load(config_.model, model_options); });
  // Rewards see images: a latent model's samples decoded (the adjoint's a_K = λ∇R goes
  // through the decoder by autograd).
  const ModelCard images = image_card(model.card());
  reward_ = std::make_unique<Reward>(at_json_path(source, "/reward", [&] {
    return Reward::parse(config_.reward, images, model_options.device, model_options.dtype);
  }));
  const int64_t channels = images.shape[0];
  check(!config_.output.grids || channels == 1 || channels == 3, config_.source,
        ": /output/grids = true: sample grids need images of 1 or 3 channels, and '", config_.model,
        "' makes ", channels, " (a latent model needs a decoder in its card, see ",
        "docs/model-card.md); set output.grids to false");
  RewardFn reward_of_samples = [reward = *reward_, model](const at::Tensor& samples,
                                                          const at::Tensor& c) {
    return reward(model.images(samples), c);
  };
  auto trainer_options = config_.trainer;
  const auto& conditions = config_.conditions;
  if (!conditions.classes.empty())
    trainer_options.conditions = at_json_path(
        source, "/conditions/classes", [&] { return ConditionSet::classes(conditions.classes); });
  else if (!conditions.file.empty())
    trainer_options.conditions = at_json_path(source, "/conditions/file", [&] {
      return ConditionSet::tensors(load_saved_tensor(conditions.file, "conditions"));
    });
  if (distributed) {  // everything of this rank's own is checked: now meet the others
    auto options = *distributed;
    options.timeout =
        std::chrono::milliseconds(static_cast<int64_t>(config_.distributed_timeout_s * 1000));
    group_ = std::make_unique<ProcessGroup>(options);
  }
  try {
    trainer_ = std::make_unique<Trainer>(trainer_options, std::move(model),
                                         std::move(reward_of_samples), group_.get());
  } catch (const InvalidOption& e) {
    throw with_json_path(e, source);
  } catch (const Error& e) {  // the model and the options together (e.g. conditions missing)
    throw Error(source + ": " + e.what());
  }
  std::error_code ec;
  const bool has_checkpoint = fs::exists(path("checkpoint.pt"), ec);
  if (resume_) {
    check(has_checkpoint, "--resume: '", path("checkpoint.pt"), "' does not exist");
    const auto saved = read_json_file(path("config.json"));
    check(resumable_part(saved) == resumable_part(to_json(config_)), "--resume: the configuration ",
          "differs from the one in '", path("config.json"),
          "' (only iterations and output may change)");
  } else {
    check(!has_checkpoint, "'", config_.output.run_dir,
          "' already holds a run (checkpoint.pt): pass --resume to continue it, or choose another "
          "output.run_dir");
  }
}

TuneRun::~TuneRun() = default;

std::string TuneRun::summary() const {
  return fmt::format("'{}' with reward '{}': {} iterations, run directory '{}'", config_.model,
                     reward_->name(), config_.iterations, config_.output.run_dir);
}

std::string TuneRun::validate_only() {
  if (resume_) trainer_->load_checkpoint(path("checkpoint.pt"));
  return summary();
}

std::string TuneRun::path(const std::string& name) const {
  return (fs::path(config_.output.run_dir) / name).string();
}

bool TuneRun::interrupted() const {
  return group_ ? group_->any(interrupt_requested()) : interrupt_requested();
}

void TuneRun::prepare_run_directory() {
  if (!writes()) {  // another rank: it only reads the checkpoint
    if (resume_) trainer_->load_checkpoint(path("checkpoint.pt"));
    saved_iteration_ = trainer_->iteration();
    return;
  }
  fs::create_directories(path("samples"));
  lock_ =
      std::make_unique<FileLock>(path(".lock"), "run directory '" + config_.output.run_dir + "'");
  // Temporary folders of writers that were killed (their pid gone).
  if (const int n = remove_stale_temporaries(path("")) + remove_stale_temporaries(path("samples")))
    spdlog::warn("removed {} temporary folder(s) left in '{}' by a run that was killed", n,
                 config_.output.run_dir);
  if (resume_) {  // the checkpoint is read before anything in the directory changes
    trainer_->load_checkpoint(path("checkpoint.pt"));
    saved_iteration_ = trainer_->iteration();
    wall_time_offset_ = truncate_metrics(path("metrics.jsonl"), trainer_->iteration());
    spdlog::info("resumed '{}' at iteration {}", config_.output.run_dir, trainer_->iteration());
  } else {
    check(!fs::exists(path("checkpoint.pt")), "'", config_.output.run_dir,
          "' already holds a run (checkpoint.pt): pass --resume to continue it");
    write_bytes_atomically(path("metrics.jsonl"), "");
    if (config_.output.grids) write_grid(trainer_->model(), "before.png");
  }
  // An earlier session's export goes until this one exports: the directory looks finished
  // (tuned.pt) only when its run is.
  std::error_code ec;
  for (const auto& file : saved_model_files(path("tuned.pt"))) fs::remove(file, ec);
  for (const auto* file : {"tuned_lora.pt", "tuned_lora.json"}) fs::remove(path(file), ec);
  fs::remove(path("samples/after.png"), ec);
  write_json_file(path("config.json"), to_json(config_));
}

bool TuneRun::run() {
  prepare_run_directory();
  const auto& out = config_.output;
  const auto every = [](int64_t n, int64_t i) { return n > 0 && i % n == 0; };
  const auto start = std::chrono::steady_clock::now();
  spdlog::info("tuning {}", summary());
  if (group_)
    spdlog::info("data-parallel: {} ranks, each sampling {} of every batch of {}",
                 group_->world_size(), trainer_->queue().local_batch(), config_.trainer.batch);
  int64_t values = 0;
  const auto theta = trainer_->model().trainable_parameters();
  for (const auto& p : theta) values += p.numel();
  const auto& lora = config_.trainer.lora;
  spdlog::info("θ: {} values in {} tensors{}, precision {}; Adam keeps 2 values for each", values,
               theta.size(),
               lora.rank > 0 ? fmt::format(" (LoRA adapters, rank {})", lora.rank) : "",
               name_of(config_.precision, precision_names()));
  if (config_.trainer.objective.beta == 0)
    spdlog::warn(
        "objective.beta = 0: nothing holds the model near its data, and the path KL is "
        "not computed (KL n/a); idtune eval --reference measures it afterwards");
  while (trainer_->iteration() < config_.iterations) {
    if (interrupted()) {
      if (trainer_->iteration() == 0) {  // the queue is not filled yet: nothing to keep
        spdlog::warn("interrupted before the first iteration: nothing to resume; start again");
        return false;
      }
      if (trainer_->iteration() == saved_iteration_) {
        spdlog::warn("interrupted at iteration {}, the checkpoint's: continue with --resume",
                     saved_iteration_);
        return false;
      }
      save_checkpoint();
      spdlog::warn("interrupted at iteration {}: checkpoint written; continue with --resume",
                   trainer_->iteration());
      return false;
    }
    fair_share_.rebalance();
    const auto t0 = std::chrono::steady_clock::now();
    IterationReport report;
    try {
      report = trainer_->step();
    } catch (const NonFiniteGradients&) {  // θ is the last good one: keep it
      if (trainer_->iteration() > saved_iteration_) save_checkpoint();
      spdlog::error("the checkpoint '{}' holds θ before the non-finite gradients",
                    path("checkpoint.pt"));
      throw;
    }
    if (report.skipped)
      spdlog::warn("iteration {}: the gradient was not finite; update skipped ({} so far)",
                   report.iteration, report.skipped_updates);
    const auto t1 = std::chrono::steady_clock::now();
    wall_time_ = wall_time_offset_ + std::chrono::duration<double>(t1 - start).count();
    log_iteration(report, std::chrono::duration<double>(t1 - t0).count());
    watch_kl(report);
    const int64_t done = trainer_->iteration();
    if (writes() && out.grids && every(out.image_every, done))  // not an EMA copy per rank
      write_grid(trainer_->export_model(),
                 "step_" + std::to_string(1000000 + done).substr(1) + ".png");
    if (every(out.checkpoint_every, done) || done == config_.iterations) save_checkpoint();
  }
  export_tuned_model();
  return true;
}

void TuneRun::watch_kl(const IterationReport& r) {
  // A path KL that is large within a few updates: the model is being pushed off its data
  // (reward hacking), the step too large or β too small for this model.
  if (!writes() || !r.updated || kl_warned_ || trainer_->updates() > kKlWatchUpdates ||
      r.kl <= kKlTooLarge)
    return;
  kl_warned_ = true;
  spdlog::warn(
      "the path KL went from 0 to {:.3g} in {} updates: the model is probably being pushed off "
      "its data (reward hacking). Lower optimiser.lr (the KL grows with lr squared) or raise "
      "objective.beta; docs/latent.md#choosing-lr-and-beta",
      r.kl, trainer_->updates());
}

void TuneRun::log_iteration(const IterationReport& r, double seconds) {
  if (!writes()) return;
  // With β = 0 the path KL is not computed (it would cost a reference call per step): null.
  const bool kl_measured = config_.trainer.objective.beta > 0;
  const nlohmann::json line = {
      {"step", r.iteration},
      {"updated", r.updated},
      {"reward_mean", r.reward_mean},
      {"reward_std", r.reward_std},
      {"kl", kl_measured ? nlohmann::json(r.kl) : nlohmann::json()},
      {"loss", r.loss},
      {"grad_norm", r.grad_norm},
      {"lr", r.lr},
      {"sample_steps_per_s", r.sample_steps / seconds},
      {"skipped_updates", r.skipped_updates},
      {"allreduce_s", group_ ? nlohmann::json(r.reduce_seconds) : nlohmann::json()},
      {"threads", at::get_num_threads()},
      {"wall_time_s", wall_time_}};
  std::ofstream metrics(path("metrics.jsonl"), std::ios::app);
  metrics << dump_json(line) << "\n";
  check(metrics.good(), "cannot append to '", path("metrics.jsonl"), "': ", std::strerror(errno));
  // Every log_every iterations, the last, and the first kFirstLogged: the KL of the first
  // updates is where reward hacking shows.
  const int64_t n = config_.output.log_every, done = r.iteration + 1;
  if (n <= 0 || (done % n != 0 && done != config_.iterations && done > kFirstLogged)) return;
  const double eta = wall_time_ / done * (config_.iterations - done);
  spdlog::info(
      "[{:>6}/{}] reward {:+.4f} ± {:.4f}  KL {}  loss {:+.4f}  |g| {:.3g}  "
      "{:.0f} sample-steps/s  eta {:.0f}s",
      done, config_.iterations, r.reward_mean, r.reward_std,
      kl_measured ? fmt::format("{:.4f}", r.kl) : std::string("n/a"), r.loss, r.grad_norm,
      r.sample_steps / seconds, eta);
}

void TuneRun::write_grid(const ScoreModel& model, const std::string& name) const {
  if (!writes()) return;
  const Noise noise(config_.output.grid_seed);  // the same images every time
  int64_t n = config_.output.grid_samples, columns = 0;
  at::Tensor c;
  const auto& classes = config_.conditions.classes;
  if (!classes.empty()) {  // one row per class
    const auto rows = class_rows(classes, n);
    c = rows.labels.to(model.device());
    columns = rows.per_row;
    n = c.size(0);
  } else if (const auto& set = trainer_->options().conditions) {
    c = set->draw(noise, 0, n, torch::dtype(model.dtype()).device(model.device()));
  }
  const auto y0 = initial_state(model, n, noise, 0);
  const auto samples = sample_path(trainer_->sampler(), model, y0, noise, 0, c).final_state();
  torch::NoGradGuard no_grad;
  write_image_grid(model.images(samples), model.card().data_range, path("samples/" + name),
                   columns);
}

void TuneRun::save_checkpoint() {
  trainer_->save_checkpoint(path("checkpoint.pt"));
  saved_iteration_ = trainer_->iteration();
}

void TuneRun::export_tuned_model() const {
  if (!writes()) return;
  const auto tuned = trainer_->export_model();
  ModelCard card = tuned.card();
  const auto& t = config_.trainer;
  card.provenance = {{"base_model", config_.model},
                     {"base_provenance", tuned.card().provenance},
                     {"tuned_by", "idtune tune"},
                     {"reward", reward_->name()},
                     {"lambda", t.objective.lambda},
                     {"beta", t.objective.beta},
                     {"iterations", trainer_->iteration()},
                     {"updates", trainer_->updates()},
                     {"method", name_of(t.method, method_names())},
                     {"sampler", to_json(t.sampler)}};
  if (const auto* lora = tuned.lora()) {  // the adapters alone, then the merged model
    lora->save(path("tuned_lora.pt"), config_.model);
    spdlog::info("wrote '{}' (+ .json): the adapters alone", path("tuned_lora.pt"));
  }
  tuned.save(path("tuned.pt"), card);
  spdlog::info("wrote '{}' (+ card)", path("tuned.pt"));
  if (config_.output.grids) write_grid(tuned, "after.png");
}

}  // namespace idtune
