#include "idtune/training/tune_config.h"

#include "idtune/core/device.h"
#include "idtune/core/error.h"
#include "idtune/core/json_reader.h"
#include "idtune/core/text.h"

#include <torch/torch.h>

#include <algorithm>

namespace idtune {

namespace {

void parse_algorithm(JsonReader reader, TrainerOptions& o) {
  reader.read_enum("method", o.method, method_names());
  reader.read("queue_slots", o.queue_slots);
  reader.read("warm_start", o.warm_start);
  reader.read_enum("gradient", o.gradient, gradient_estimator_names());
  reader.read("backprop_steps", o.backprop_steps);
  reader.finish();
}

void parse_objective(JsonReader reader, TrainerOptions& o) {
  reader.read("lambda", o.objective.lambda);
  reader.read("beta", o.objective.beta);
  reader.finish();
}

void parse_optimiser(JsonReader reader, OptimiserOptions& o) {
  reader.read("lr", o.lr);
  reader.read("betas", o.betas);
  reader.read("eps", o.eps);
  reader.read("weight_decay", o.weight_decay);
  reader.read("clip_grad_norm", o.clip_grad_norm);
  reader.read("ema_decay", o.ema_decay);
  reader.read("tune", o.tune);
  reader.read("max_skipped_in_a_row", o.max_skipped_in_a_row);
  reader.finish();
}

void parse_lora(JsonReader reader, LoraOptions& o) {
  reader.require("rank", o.rank);
  reader.read("alpha", o.alpha);
  reader.read("targets", o.targets);
  reader.finish();
}

void parse_output(JsonReader reader, OutputOptions& o) {
  reader.read("run_dir", o.run_dir);
  check(!o.run_dir.empty(), reader.path_of("run_dir"), ": must not be empty");
  reader.read("grids", o.grids);
  reader.read_in_range("log_every", o.log_every, 0, 1000000000);
  reader.read_in_range("image_every", o.image_every, 0, 1000000000);
  reader.read_in_range("checkpoint_every", o.checkpoint_every, 0, 1000000000);
  reader.read_in_range("grid_samples", o.grid_samples, 1, 1024);
  reader.read("grid_seed", o.grid_seed);
  reader.finish();
}

}  // namespace

TuneConfig parse_tune_config(const nlohmann::json& json, const std::string& source) {
  TuneConfig c;
  JsonReader reader(json, source + ": ");
  reader.require("model", c.model);
  read_dtype(reader, c.dtype);
  reader.read_enum("precision", c.precision, precision_names());
  reader.read("device", c.device);
  reader.read("reward", c.reward);
  reader.read_in_range("iterations", c.iterations, 1, 1000000000);
  reader.read("batch", c.trainer.batch);
  reader.read("seed", c.trainer.seed);
  if (reader.has("sampler")) {
    auto sampler = reader.object("sampler");
    c.trainer.sampler = parse_sampler_options(sampler);
  }
  if (reader.has("objective")) parse_objective(reader.object("objective"), c.trainer);
  if (reader.has("algorithm")) parse_algorithm(reader.object("algorithm"), c.trainer);
  if (reader.has("optimiser")) parse_optimiser(reader.object("optimiser"), c.trainer.optimiser);
  if (reader.has("lora")) parse_lora(reader.object("lora"), c.trainer.lora);
  if (reader.has("conditions")) {
    auto conditions = reader.object("conditions");
    conditions.read("classes", c.conditions.classes);
    conditions.read("file", c.conditions.file);
    conditions.finish();
    check(c.conditions.classes.empty() != c.conditions.file.empty(), conditions.path_of("classes"),
          ": give either classes (a list of labels) or file ",
          "(a torch.save'd tensor of conditions)");
  }
  if (reader.has("output")) parse_output(reader.object("output"), c.output);
  if (reader.has("distributed")) {
    auto distributed = reader.object("distributed");
    distributed.read_in_range("timeout_s", c.distributed_timeout_s, 1.0, 86400.0);
    distributed.read_in_range("check_every", c.trainer.theta_check_every, 0, 1000000000);
    distributed.finish();
  }
  reader.finish();
  c.source = source;
  return c;
}

nlohmann::json to_json(const TuneConfig& c) {
  const auto& t = c.trainer;
  const auto& o = t.optimiser;
  const auto& out = c.output;
  nlohmann::json json = {
      {"model", c.model},
      {"device", c.device},
      {"dtype", c.dtype},
      {"precision", name_of(c.precision, precision_names())},
      {"reward", c.reward},
      {"iterations", c.iterations},
      {"batch", t.batch},
      {"seed", t.seed},
      {"sampler", to_json(t.sampler)},
      {"objective", {{"lambda", t.objective.lambda}, {"beta", t.objective.beta}}},
      {"algorithm",
       {{"method", name_of(t.method, method_names())},
        {"queue_slots", t.queue_slots},
        {"warm_start", t.warm_start},
        {"gradient", name_of(t.gradient, gradient_estimator_names())},
        {"backprop_steps", t.backprop_steps}}},
      {"optimiser",
       {{"lr", o.lr},
        {"betas", o.betas},
        {"eps", o.eps},
        {"weight_decay", o.weight_decay},
        {"clip_grad_norm", o.clip_grad_norm},
        {"ema_decay", o.ema_decay},
        {"tune", o.tune},
        {"max_skipped_in_a_row", o.max_skipped_in_a_row}}},
      {"output",
       {{"run_dir", out.run_dir},
        {"grids", out.grids},
        {"log_every", out.log_every},
        {"image_every", out.image_every},
        {"checkpoint_every", out.checkpoint_every},
        {"grid_samples", out.grid_samples},
        {"grid_seed", out.grid_seed}}},
      {"distributed",
       {{"timeout_s", c.distributed_timeout_s}, {"check_every", t.theta_check_every}}}};
  if (t.lora.rank > 0)
    json["lora"] = {{"rank", t.lora.rank}, {"alpha", t.lora.alpha}, {"targets", t.lora.targets}};
  if (!c.conditions.classes.empty()) json["conditions"] = {{"classes", c.conditions.classes}};
  if (!c.conditions.file.empty()) json["conditions"] = {{"file", c.conditions.file}};
  return json;
}

void apply_override(nlohmann::json& config, const std::string& assignment) {
  const std::string where = "--set '" + clipped(assignment) + "'";
  const auto eq = assignment.find('=');
  check(eq != std::string::npos && eq > 0, where,
        ": expected key=value, e.g. --set sampler.steps=64");
  const std::string key = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  // JSON (read with the limits of every JSON input: depth, duplicates) or else a string.
  const nlohmann::json value =
      nlohmann::json::accept(text) ? parse_json(text, where) : nlohmann::json(text);
  check(std::count(key.begin(), key.end(), '.') < kMaxJsonDepth, where,
        ": the key nests deeper than ", kMaxJsonDepth, " levels");
  nlohmann::json* node = &config;
  std::string pointer;
  for (size_t start = 0;;) {
    check(node->is_object(), where, ": ", pointer.empty() ? "/" : pointer, " is not an object");
    const auto dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? dot : dot - start);
    check(!part.empty(), where, ": empty key component");
    pointer += "/" + part;
    if (dot == std::string::npos) {
      (*node)[part] = value;
      return;
    }
    if (!node->contains(part)) (*node)[part] = nlohmann::json::object();
    node = &(*node)[part];
    start = dot + 1;
  }
}

}  // namespace idtune
