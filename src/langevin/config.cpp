#include "idtune/langevin/config.h"

#include "idtune/core/device.h"
#include "idtune/core/error.h"
#include "idtune/core/json_reader.h"

namespace idtune {

const NameTable<PotentialKind>& potential_kind_names() {
  static const NameTable<PotentialKind> table = {
      {"gaussian-mixture", PotentialKind::GaussianMixture},
      {"torchscript", PotentialKind::TorchScript}};
  return table;
}

const NameTable<PointRewardKind>& point_reward_kind_names() {
  static const NameTable<PointRewardKind> table = {
      {"none", PointRewardKind::None},
      {"gated-gaussian", PointRewardKind::GatedGaussian},
      {"torchscript", PointRewardKind::TorchScript}};
  return table;
}

const NameTable<ReferenceKind>& reference_kind_names() {
  static const NameTable<ReferenceKind> table = {
      {"none", ReferenceKind::None},
      {"gaussian-mixture", ReferenceKind::GaussianMixture},
      {"file", ReferenceKind::File}};
  return table;
}

PointRewardConfig smoothed_hexagon_reward() {
  PointRewardConfig guide;
  guide.kind = PointRewardKind::GatedGaussian;
  guide.gated.gate = RewardGate::Sigmoid;
  guide.gated.alpha = 0.7;
  return guide;
}

namespace {

/// Reads logits, means, covariances and checks that their shapes agree.
void parse_mixture(JsonReader& reader, MixtureSpec& m) {
  reader.read("logits", m.logits);
  reader.read("means", m.means);
  reader.read("covariances", m.covariances);
  check(!m.means.empty(), reader.path_of("means"), ": a mixture needs at least one mean");
  const size_t d = m.means[0].size();
  for (const auto& mu : m.means)
    check(mu.size() == d && d >= 1, reader.path_of("means"),
          ": every mean must have the same dimension >= 1, found ", mu.size(), " and ", d);
  check(m.logits.size() == m.means.size(), reader.path_of("logits"), ": ", m.logits.size(),
        " logits for ", m.means.size(), " means");
  check(m.covariances.empty() || m.covariances.size() == m.means.size(),
        reader.path_of("covariances"), ": ", m.covariances.size(), " covariances for ",
        m.means.size(), " means (leave it out for identities)");
  for (const auto& sigma : m.covariances) {
    check(sigma.size() == d, reader.path_of("covariances"), ": each must be ", d, "×", d);
    for (const auto& row : sigma)
      check(row.size() == d, reader.path_of("covariances"), ": each must be ", d, "×", d);
  }
}

nlohmann::json mixture_json(const MixtureSpec& m) {
  return {{"logits", m.logits}, {"means", m.means}, {"covariances", m.covariances}};
}

void parse_potential(JsonReader reader, PotentialConfig& p) {
  reader.read_enum("kind", p.kind, potential_kind_names());
  if (p.kind == PotentialKind::GaussianMixture) {
    reader.read_enum("parameters", p.parameters, mixture_parameter_names());
    parse_mixture(reader, p.mixture);
  } else {
    reader.require("file", p.file);
    reader.read_in_range("dim", p.dim, 1, 1000000);
  }
  reader.finish();
}

void parse_point_reward(JsonReader reader, PointRewardConfig& r) {
  reader.read_enum("kind", r.kind, point_reward_kind_names());
  if (r.kind == PointRewardKind::GatedGaussian) {
    auto& g = r.gated;
    reader.read("center", g.center);
    check(!g.center.empty(), reader.path_of("center"), ": must not be empty");
    reader.read_in_range("tau", g.tau, 0.0, 1e12, /*open_low=*/true);
    reader.read_in_range("alpha", g.alpha, 0.0, 1e12, true);
    reader.read_enum("gate", g.gate, reward_gate_names());
    reader.read_in_range("sigmoid_scale", g.sigmoid_scale, 0.0, 1e12, true);
  } else if (r.kind == PointRewardKind::TorchScript) {
    reader.require("file", r.file);
  }
  reader.finish();
}

nlohmann::json point_reward_json(const PointRewardConfig& r) {
  nlohmann::json j = {{"kind", name_of(r.kind, point_reward_kind_names())}};
  const auto& g = r.gated;
  if (r.kind == PointRewardKind::GatedGaussian)
    j.update({{"center", g.center},
              {"tau", g.tau},
              {"alpha", g.alpha},
              {"gate", name_of(g.gate, reward_gate_names())},
              {"sigmoid_scale", g.sigmoid_scale}});
  if (r.kind == PointRewardKind::TorchScript) j["file"] = r.file;
  return j;
}

void parse_reference(JsonReader reader, ReferenceConfig& r) {
  reader.read_enum("kind", r.kind, reference_kind_names());
  if (r.kind == ReferenceKind::GaussianMixture) parse_mixture(reader, r.mixture);
  if (r.kind == ReferenceKind::File) reader.require("file", r.file);
  reader.read_in_range("batch", r.batch, r.kind == ReferenceKind::File ? 0 : 1, 100000000);
  reader.finish();
}

void parse_algorithm(JsonReader reader, LangevinConfig& c) {
  auto& t = c.trainer;
  reader.read_enum("method", t.method, langevin_method_names());
  reader.read("inner_steps", t.inner_steps);
  reader.read("guidance_weight", t.guidance_weight);
  if (reader.has("guide")) parse_point_reward(reader.object("guide"), c.guide);
  reader.finish();
}

void parse_optimiser(JsonReader reader, LangevinTrainerOptions& t) {
  reader.read_enum("kind", t.optimiser, theta_optimiser_names());
  reader.read("lr", t.lr);
  reader.read_enum("step_rule", t.step_rule, step_rule_names());
  reader.read("betas", t.betas);
  reader.read("eps", t.eps);
  reader.finish();
}

void parse_output(JsonReader reader, LangevinOutputOptions& o) {
  reader.read("run_dir", o.run_dir);
  check(!o.run_dir.empty(), reader.path_of("run_dir"), ": must not be empty");
  reader.read_in_range("log_every", o.log_every, 0, 1000000000);
  reader.read("save_particles", o.save_particles);
  reader.finish();
}

void check_consistency(const LangevinConfig& c, const std::string& source) {
  const bool mixture = c.potential.kind == PotentialKind::GaussianMixture;
  check(mixture || !c.theta0.empty(), source,
        ": /theta0 is required with a torchscript potential (θ₀ as a list of numbers)");
  if (c.reference.kind == ReferenceKind::GaussianMixture && mixture)
    check(c.reference.mixture.means[0].size() == c.potential.mixture.means[0].size(), source,
          ": /reference/means have dimension ", c.reference.mixture.means[0].size(),
          " but the potential's have ", c.potential.mixture.means[0].size());
}

}  // namespace

LangevinConfig parse_langevin_config(const nlohmann::json& json, const std::string& source) {
  LangevinConfig c;
  JsonReader reader(json, source + ": ");
  reader.read("device", c.device);
  read_dtype(reader, c.dtype);
  reader.read("seed", c.trainer.seed);
  reader.read_in_range("steps", c.steps, 1, 1000000000);
  reader.read("theta0", c.theta0);
  parse_potential(reader.object("potential"), c.potential);
  if (reader.has("reward")) parse_point_reward(reader.object("reward"), c.reward);
  if (reader.has("reference")) parse_reference(reader.object("reference"), c.reference);
  if (reader.has("objective")) {
    auto objective = reader.object("objective");
    objective.read("lambda", c.trainer.objective.lambda);
    objective.read("beta", c.trainer.objective.beta);
    objective.finish();
  }
  if (reader.has("sampler")) {
    auto sampler = reader.object("sampler");
    sampler.read("gamma", c.trainer.gamma);
    sampler.read("particles", c.trainer.particles);
    sampler.finish();
  }
  if (reader.has("algorithm")) parse_algorithm(reader.object("algorithm"), c);
  if (reader.has("optimiser")) parse_optimiser(reader.object("optimiser"), c.trainer);
  if (reader.has("output")) parse_output(reader.object("output"), c.output);
  reader.finish();
  check_consistency(c, source);
  c.source = source;
  return c;
}

nlohmann::json to_json(const LangevinConfig& c) {
  const auto& t = c.trainer;
  nlohmann::json potential = {{"kind", name_of(c.potential.kind, potential_kind_names())}};
  if (c.potential.kind == PotentialKind::GaussianMixture) {
    potential["parameters"] = name_of(c.potential.parameters, mixture_parameter_names());
    potential.update(mixture_json(c.potential.mixture));
  } else {
    potential.update({{"file", c.potential.file}, {"dim", c.potential.dim}});
  }
  nlohmann::json reference = {{"kind", name_of(c.reference.kind, reference_kind_names())},
                              {"batch", c.reference.batch}};
  if (c.reference.kind == ReferenceKind::GaussianMixture)
    reference.update(mixture_json(c.reference.mixture));
  if (c.reference.kind == ReferenceKind::File) reference["file"] = c.reference.file;
  return {{"device", c.device},
          {"dtype", c.dtype},
          {"seed", t.seed},
          {"steps", c.steps},
          {"theta0", c.theta0},
          {"potential", potential},
          {"reward", point_reward_json(c.reward)},
          {"reference", reference},
          {"objective", {{"lambda", t.objective.lambda}, {"beta", t.objective.beta}}},
          {"sampler", {{"gamma", t.gamma}, {"particles", t.particles}}},
          {"algorithm",
           {{"method", name_of(t.method, langevin_method_names())},
            {"inner_steps", t.inner_steps},
            {"guidance_weight", t.guidance_weight},
            {"guide", point_reward_json(c.guide)}}},
          {"optimiser",
           {{"kind", name_of(t.optimiser, theta_optimiser_names())},
            {"lr", t.lr},
            {"step_rule", name_of(t.step_rule, step_rule_names())},
            {"betas", t.betas},
            {"eps", t.eps}}},
          {"output",
           {{"run_dir", c.output.run_dir},
            {"log_every", c.output.log_every},
            {"save_particles", c.output.save_particles}}}};
}

}  // namespace idtune
