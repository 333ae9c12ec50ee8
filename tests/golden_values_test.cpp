// Golden values from plain PyTorch (scripts/golden_values.py writes tests/fixtures/golden/):
// the sampler tables of every sampler × schedule, and the exact gradient of one tiny ε-model
// on a fixed path and noise, computed there by autograd through the unrolled chain in float64.
// Regenerate with: /usr/bin/python3 scripts/golden_values.py

#include "idtune/core/json_reader.h"
#include "idtune/diffusion/adjoint.h"
#include "idtune/diffusion/sampler.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/diffusion/schedule.h"
#include "idtune/diffusion/toy_models.h"
#include "idtune/training/reward.h"
#include "test_helpers.h"

#include <torch/torch.h>

#include <map>

namespace idtune {
namespace {

const std::string kGolden = IDTUNE_SOURCE_DIR "/tests/fixtures/golden/";
// The tables are a few float64 operations each: agreement up to rounding.
constexpr double kTableTolerance = 1e-12;
// The gradient sums K steps of vector-Jacobian products in a different order than autograd.
constexpr double kGradientTolerance = 1e-10;

at::Tensor f64(const std::vector<double>& values) { return torch::tensor(values, torch::kFloat64); }

const nlohmann::json& golden() {
  static const nlohmann::json json = read_json_file(kGolden + "golden_values.json");
  return json;
}

SamplerOptions sampler_options(const nlohmann::json& json) {
  JsonReader reader(json, "golden sampler: ");
  return parse_sampler_options(reader);
}

ScheduleOptions schedule_options(const nlohmann::json& json) {
  JsonReader reader(json, "golden schedule: ");
  return parse_schedule(reader);
}

TEST(GoldenValues, SamplerTablesMatchPlainPyTorch) {
  int checked = 0;
  for (const auto& table : golden()["tables"]) {
    SCOPED_TRACE(table["schedule"].dump() + " " + table["sampler"].dump());
    TinyUNetOptions o;
    o.size = 4;
    o.schedule = schedule_options(table["schedule"]);
    const auto model = make_tiny_unet(o);
    const Sampler sampler(sampler_options(table["sampler"]), model);
    std::vector<double> tau, a, b, sigma;
    for (int64_t k = 0; k < sampler.num_steps(); ++k) {
      const auto& c = sampler.coefficients(k);
      tau.push_back(c.tau), a.push_back(c.a), b.push_back(c.b), sigma.push_back(c.sigma);
    }
    for (const auto& [name, computed] : std::map<std::string, std::vector<double>>{
             {"tau", tau}, {"a", a}, {"b", b}, {"sigma", sigma}}) {
      const auto expected = table[name].get<std::vector<double>>();
      ASSERT_EQ(computed.size(), expected.size()) << name;
      const double error = testing::relative_error({f64(computed)}, {f64(expected)});
      EXPECT_LE(error, kTableTolerance)
          << name << ": computed " << f64(computed) << "\nexpected " << f64(expected);
    }
    ++checked;
  }
  EXPECT_GE(checked, 40);
}

TEST(GoldenValues, AdjointGradientMatchesAutogradInPlainPyTorch) {
  const auto& g = golden()["adjoint"];
  const ScoreModelOptions f64_cpu{c10::kCPU, c10::kDouble};
  const auto model = ScoreModel::load(kGolden + g["model"].get<std::string>(), f64_cpu);
  const auto reference =
      ScoreModel::load(kGolden + g["reference"].get<std::string>(), f64_cpu).frozen_copy();
  const Sampler sampler(sampler_options(g["sampler"]), model);
  const Noise noise(g["seed"].get<uint64_t>());
  const auto stream = g["stream"].get<uint64_t>();
  const auto y0 = initial_state(model, g["batch"].get<int64_t>(), noise, stream);
  const auto path = sample_path(sampler, model, y0, noise, stream);
  const auto reward =
      Reward::parse(g["reward"].get<std::string>(), model.card(), c10::kCPU, c10::kDouble);
  const auto params = model.trainable_parameters();
  const auto result = AdjointSolver(sampler, {g["lambda"].get<double>(), g["beta"].get<double>()})
                          .gradient({model, params, &reference}, path, reward.function());

  EXPECT_LE(testing::relative_error({path.final_state().flatten()},
                                    {f64(g["final_state"].get<std::vector<double>>())}),
            kTableTolerance)
      << "the path differs: noise or sampler";
  EXPECT_LE(testing::relative_error({result.reward}, {f64(g["reward_values"])}), kTableTolerance);
  EXPECT_LE(testing::relative_error({result.kl}, {f64(g["kl"])}), kGradientTolerance);
  size_t i = 0, compared = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    if (!p.requires_grad()) continue;
    ASSERT_TRUE(g["gradient"].contains(name)) << "no golden gradient for " << name;
    const auto expected = f64(g["gradient"][name]).view(p.sizes());
    const double error = testing::relative_error({result.grad[i++]}, {expected});
    EXPECT_LE(error, kGradientTolerance) << name << ": maxdiff relative " << error;
    ++compared;
  }
  EXPECT_EQ(compared, g["gradient"].size());
}

}  // namespace
}  // namespace idtune
