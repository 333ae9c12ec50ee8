// Mixed precision and LoRA (docs/precision-and-lora.md): the adapters' gradient is the chain
// rule applied to the full gradient, the merged export is the adapted model (resume with
// adapters: trainer_test.cpp); under bf16 the adjoint still equals autograd through the
// sampler; a non-finite gradient skips its update, and too many in a row stop the run with the
// last good θ.

#include "idtune/core/json_reader.h"
#include "idtune/core/precision.h"
#include "idtune/core/text.h"
#include "idtune/diffusion/adjoint.h"
#include "idtune/diffusion/backprop_through_sampler.h"
#include "idtune/diffusion/lora.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/diffusion/toy_models.h"
#include "idtune/training/trainer.h"
#include "test_helpers.h"

#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <iterator>

namespace idtune {
namespace {

// float64: the two routes to the adapters' gradient differ by summation order only.
constexpr double kChainRuleTolerance = 1e-10;
// The merged model computes W₀ + ΔW once; the adapted one the same sum per call: equal up to
// float64 rounding of the sum.
constexpr double kMergedTolerance = 1e-12;
// bf16 keeps 8 significant bits (relative rounding 2⁻⁹ ≈ 2e-3). The adjoint and autograd run
// the same bf16 kernels on the same inputs; they differ in the float32 order of the sums, and
// a cotangent that differs in its last float32 bits can round to a neighbouring bf16 value
// (one bf16 ulp, 4e-3 relative, on a few elements). 2e-2 is five ulps: a wrong Jacobian (a
// missing term, a sign) is off by O(1).
constexpr double kBf16AdjointTolerance = 2e-2;

const std::vector<std::string> kTinyUNetWeights = {"^(in|down|up|out|time)_w$"};

TinyUNetOptions tiny(c10::ScalarType dtype = c10::kDouble, Precision p = Precision::Fp32) {
  TinyUNetOptions o;
  o.size = 4;
  o.width = 4;
  o.seed = 3;
  o.model = {c10::kCPU, dtype, p};
  return o;
}

LoraOptions lora(int64_t rank = 3, double alpha = 6.0) {
  LoraOptions o;
  o.rank = rank;
  o.alpha = alpha;
  o.targets = kTinyUNetWeights;
  return o;
}

/// Gives every B random values: at B = 0 the gradient of A is zero and the test would be weak.
void randomise_b(const ScoreModel& model) {
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : model.lora()->named_parameters())
    if (ends_with(name, ".lora_B")) p.normal_(0.0, 0.3);
}

at::Tensor probe_x(const ScoreModel& model) {
  return torch::randn(model.batch_shape(3), torch::dtype(model.dtype()));
}
at::Tensor probe_t(const ScoreModel& model) {
  return torch::tensor({0.2, 0.5, 0.9}, torch::dtype(model.dtype()));
}

TEST(Lora, TheModelStartsUnchangedAndOnlyTheAdaptersAreTrainable) {
  auto model = make_tiny_unet(tiny());
  const auto x = probe_x(model), t = probe_t(model);
  torch::NoGradGuard no_grad;
  const auto before = model.score(x, t);
  model.add_lora(lora(), /*seed=*/5);
  EXPECT_TRUE(torch::equal(model.score(x, t), before)) << "B = 0: the adapted model is the base";
  const auto trainable = model.trainable_parameters();
  ASSERT_EQ(trainable.size(), 2 * model.lora()->targets().size());
  EXPECT_EQ(model.lora()->targets().size(), 5u);
  for (const auto& [name, p] : model.named_parameters())
    EXPECT_EQ(p.requires_grad(), name.find(".lora_") != std::string::npos) << name;
  const auto frozen = model.frozen_copy();
  EXPECT_EQ(frozen.lora(), nullptr);
  EXPECT_TRUE(frozen.trainable_parameters().empty());
  EXPECT_TRUE(torch::equal(frozen.score(x, t), before));
}

TEST(Lora, AdapterGradientsAreTheChainRuleAppliedToTheFullGradient) {
  // L = <v, s(x, t)>. With W = W₀ + s B A:  ∂L/∂B = s G Aᵀ,  ∂L/∂A = s Bᵀ G,  G = ∂L/∂W
  // (each weight flattened to [out, fan_in]); G from the merged model by autograd.
  auto model = make_tiny_unet(tiny());
  model.add_lora(lora(), 5);
  randomise_b(model);
  const auto x = probe_x(model), t = probe_t(model);
  const auto v = torch::randn_like(x);
  const auto adapters = model.lora()->named_parameters();
  std::vector<at::Tensor> ab;
  for (const auto& [name, p] : adapters) ab.push_back(p);
  const auto through_adapters =
      torch::autograd::grad({(model.score(x, t) * v).sum()}, ab, {}, false, false, true);

  const auto merged = model.merged();
  std::vector<at::Tensor> weights;
  for (const auto& target : model.lora()->targets())
    for (const auto& [name, p] : merged.named_parameters())
      if (name == target) weights.push_back(p.requires_grad_(true));
  ASSERT_EQ(weights.size(), model.lora()->targets().size());
  const auto full = torch::autograd::grad({(merged.score(x, t) * v).sum()}, weights);

  const double scale = lora().scale();
  std::vector<at::Tensor> chain_rule;
  for (size_t i = 0; i < weights.size(); ++i) {
    const auto g = full[i].reshape({full[i].size(0), -1});
    const auto a = ab[2 * i].detach(), b = ab[2 * i + 1].detach();
    chain_rule.push_back(scale * b.t().mm(g));  // ∂L/∂A
    chain_rule.push_back(scale * g.mm(a.t()));  // ∂L/∂B
  }
  EXPECT_LT(testing::relative_error(through_adapters, chain_rule), kChainRuleTolerance);
  double norm = 0;
  for (const auto& g : chain_rule) norm += g.square().sum().item<double>();
  EXPECT_GT(norm, 1e-6) << "the comparison is not vacuous";
}

TEST(Lora, TheMergedExportIsTheAdaptedModelAndTheAdaptersNameTheirBase) {
  testing::TempDir dir;
  auto base = make_tiny_unet(tiny());
  base.save(dir.file("base.pt"));
  auto model = ScoreModel::load(dir.file("base.pt"), {c10::kCPU, c10::kDouble});
  model.add_lora(lora(), 5);
  randomise_b(model);
  model.save(dir.file("merged.pt"));
  model.lora()->save(dir.file("adapters.pt"), dir.file("base.pt"));

  const auto merged = ScoreModel::load(dir.file("merged.pt"), {c10::kCPU, c10::kDouble});
  EXPECT_EQ(merged.lora(), nullptr);
  torch::NoGradGuard no_grad;
  const auto x = probe_x(model), t = probe_t(model);
  const auto adapted = model.score(x, t);
  EXPECT_LT(testing::relative_error({merged.score(x, t)}, {adapted}), kMergedTolerance);
  EXPECT_GT((adapted - base.score(x, t)).abs().max().item<double>(), 1e-3) << "B had no effect";

  const auto card = read_json_file(dir.file("adapters.json"));
  EXPECT_EQ(card.at("rank"), 3);
  EXPECT_EQ(card.at("scale"), 2.0);
  EXPECT_EQ(card.at("weights").size(), 5u);
  const auto sha1sum = testing::run("sha1sum " + dir.file("base.pt"));
  ASSERT_EQ(sha1sum.status, 0);
  EXPECT_EQ(sha1sum.output.substr(0, 40), card.at("base_model_sha1").get<std::string>());
  std::ifstream in(dir.file("adapters.pt"), std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  const auto adapters = torch::pickle_load(bytes).toGenericDict();
  EXPECT_EQ(adapters.size(), 10u);
  for (const auto& [name, p] : model.lora()->named_parameters())
    EXPECT_TRUE(torch::equal(adapters.at(name).toTensor(), p)) << name;
}

TEST(Lora, TargetsThatSelectNothingOrNotAWeightMatrixAreRefused) {
  auto model = make_tiny_unet(tiny());
  LoraOptions o = lora();
  o.targets = {"^nothing$"};
  testing::expect_error([&] { model.clone().add_lora(o, 0); },
                        {"lora.targets: pattern '^nothing$' matches no Linear/Conv2d weight"});
  o.targets = {"norm_w"};
  testing::expect_error([&] { model.clone().add_lora(o, 0); },
                        {"lora.targets: 'norm_w'", "has shape [4]", "Linear"});
  o = lora(0);
  testing::expect_error([&] { model.clone().add_lora(o, 0); }, {"lora.rank"});
  TrainerOptions t;
  t.sampler.steps = 4;
  t.queue_slots = 2;
  t.lora = lora();
  t.optimiser.tune = {"in_w"};
  testing::expect_error(
      [&] {
        Trainer(t, make_tiny_unet(tiny()), [](const at::Tensor& x) { return x.mean({1, 2, 3}); });
      },
      {"optimiser.tune", "lora.targets"});
}

TEST(Lora, AWeightThatDoesNotReachTheOutputIsRefused) {
  // As a frozen graph (weights inlined as constants) would be: adapters that cannot learn.
  torch::jit::Module m("NotAllUsed");
  m.register_parameter("used_weight", torch::eye(4, torch::kFloat64), false);
  m.register_parameter("unused_weight", torch::ones({2, 2}, torch::kFloat64), false);
  m.define("def forward(self, x, t):\n    return torch.matmul(x, self.used_weight)\n");
  const ScoreModel model(m, make_tiny_unet(tiny()).card(), {c10::kCPU, c10::kDouble}, "m.pt");
  testing::expect_error(
      [&] {
        model.clone().add_lora(LoraOptions{2, 0, {}}, 0);
      },
      {"m.pt: lora: the weight 'unused_weight' does not reach"});
  auto used_only = model.clone();
  used_only.add_lora(LoraOptions{2, 0, {"^used"}}, 0);
  EXPECT_EQ(used_only.trainable_parameters().size(), 2u);
}

TEST(Precision, Bf16NeedsFloat32AndFp16NeedsCuda) {
  testing::expect_error([] { check_precision(Precision::Bf16, c10::kCPU, c10::kDouble); },
                        {"precision bf16 needs dtype float32"});
  testing::expect_error([] { check_precision(Precision::Fp16, c10::kCPU, c10::kFloat); },
                        {"precision fp16 needs a CUDA device"});
  check_precision(Precision::Bf16, c10::kCPU, c10::kFloat);
}

TEST(Precision, Bf16RunsTheNetworkInBf16AndReturnsFloat32) {
  const auto fp32 = make_tiny_unet(tiny(c10::kFloat));
  const auto bf16 = make_tiny_unet(tiny(c10::kFloat, Precision::Bf16));
  torch::NoGradGuard no_grad;
  const auto x = probe_x(fp32), t = probe_t(fp32);
  const auto a = fp32.score(x, t), b = bf16.score(x, t);
  EXPECT_EQ(b.scalar_type(), c10::kFloat);
  const double error = testing::relative_error({b}, {a});
  EXPECT_GT(error, 1e-5) << "bf16 made no difference: autocast is off";
  EXPECT_LT(error, 5e-2) << "bf16 is far from float32";
  EXPECT_FALSE(at::autocast::is_cpu_enabled()) << "the guard restores autocast";
}

TEST(Precision, UnderBf16TheAdjointStillEqualsAutogradThroughTheSampler) {
  auto model = make_tiny_unet(tiny(c10::kFloat, Precision::Bf16));
  const auto reference = make_tiny_unet([] {
                           auto o = tiny(c10::kFloat, Precision::Bf16);
                           o.seed = 4;
                           return o;
                         }())
                             .frozen_copy();
  Sampler sampler({SamplerKind::SdeEuler, 5, 1e-2}, model);
  const auto params = model.trainable_parameters();
  Noise noise(11);
  const auto y0 = initial_state(model, 3, noise, 4);
  const auto reward = [](const at::Tensor& x) { return torch::sin(2 * x).flatten(1).sum(1); };
  const Objective objective{1.3, 0.7};
  const auto path = sample_path(sampler, model, y0, noise, 4);
  const auto adjoint =
      AdjointSolver(sampler, objective).gradient({model, params, &reference}, path, reward);
  const auto unrolled =
      unrolled_objective(sampler, {model, params, &reference}, y0, {noise, 4}, reward, {objective});
  const auto autograd = torch::autograd::grad({unrolled.objective.mean()}, params);
  const double error = testing::relative_error(adjoint.grad, autograd);
  EXPECT_LT(error, kBf16AdjointTolerance) << "relative error " << error;
  EXPECT_LT(testing::relative_error({adjoint.kl}, {unrolled.kl}), kBf16AdjointTolerance);
  RecordProperty("relative_error", std::to_string(error));
}

TEST(NonFiniteGradients, AreSkippedThenStopTheRunWithTheLastGoodTheta) {
  TrainerOptions o;
  o.sampler = {SamplerKind::SdeEuler, 4, 1e-2};
  o.queue_slots = 2;
  o.batch = 2;
  o.optimiser.lr = 1e-2;
  o.optimiser.max_skipped_in_a_row = 3;
  // From its third call on, the reward's value is finite and its gradient infinite
  // (√u at u = 0), as when fp16 overflows in a backward pass.
  int calls = 0;
  auto reward = [&calls](const at::Tensor& x) {
    const auto r = x.flatten(1).mean(1);
    if (++calls < 3) return r;
    return r + torch::sqrt(x - x.detach()).flatten(1).sum(1);
  };
  Trainer trainer(o, make_tiny_unet(tiny()), reward);
  int64_t skipped = 0;
  at::Tensor good;
  try {
    for (int i = 0; i < 20; ++i) {
      const auto r = trainer.step();
      if (r.updated) good = trainer.model().trainable_parameters()[0].clone();
      if (r.skipped) {
        ++skipped;
        EXPECT_EQ(r.skipped_updates, skipped);
        EXPECT_TRUE(torch::equal(trainer.model().trainable_parameters()[0], good));
      }
    }
    ADD_FAILURE() << "the run did not stop";
  } catch (const NonFiniteGradients& e) {
    EXPECT_NE(std::string(e.what()).find("not finite 3 times in a row"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(skipped, 2) << "two skipped, the third stops";
  ASSERT_TRUE(good.defined());
  EXPECT_TRUE(torch::equal(trainer.model().trainable_parameters()[0], good));
}

}  // namespace
}  // namespace idtune
