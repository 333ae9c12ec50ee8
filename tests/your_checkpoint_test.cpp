// Checkpoints as people have them (docs/model-card.md): extra output channels, time fed scaled,
// schedules by diffusers' names or as explicit arrays, latent models with a decoder, and the
// refusal of a module without derivatives before any sampling.

#include "idtune/core/json_reader.h"
#include "idtune/diffusion/adjoint.h"
#include "idtune/diffusion/backprop_through_sampler.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/diffusion/schedule.h"
#include "idtune/diffusion/toy_models.h"
#include "idtune/run/tune_run.h"
#include "idtune/training/trainer.h"
#include "test_helpers.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

namespace idtune {
namespace {

using testing::expect_error;
using testing::relative_error;
using testing::TempDir;

// Wrappers compute the same function through a different route: agreement up to rounding.
constexpr double kSameFunctionTolerance = 1e-12;
// The adjoint sums K vector-Jacobian products in another order than autograd.
constexpr double kAdjointTolerance = 1e-10;

TinyUNetOptions f64_unet(int64_t channels = 1) {
  TinyUNetOptions o;
  o.channels = channels;
  o.size = 4;
  o.model = {c10::kCPU, c10::kDouble};
  return o;
}

/// `inner`'s network behind a TorchScript wrapper with the body given (x, t, and o = inner's
/// output in scope), described by `card`.
ScoreModel wrapped(const ScoreModel& inner, const std::string& body, const ModelCard& card) {
  torch::jit::Module m("Wrapped");
  m.register_module("inner", inner.clone().module());
  m.define("def forward(self, x, t):\n" + body);
  return ScoreModel(std::move(m), card, {c10::kCPU, c10::kDouble});
}

TEST(OutputChannels, ChannelsPastTheImageAreIgnored) {
  const auto inner = make_tiny_unet(f64_unet());
  ModelCard card = inner.card();
  card.output_channels = 2;  // guided-diffusion's learn_sigma: ε then a variance
  const auto model = wrapped(
      inner, "    o = self.inner.forward(x, t)\n    return torch.cat([o, 5 * o + 1], 1)\n", card);
  const auto x = torch::randn({3, 1, 4, 4}, torch::kFloat64);
  const auto t = torch::rand({3}, torch::kFloat64) * 0.9 + 0.05;
  EXPECT_LT(relative_error({model.score(x, t)}, {inner.score(x, t)}), kSameFunctionTolerance);
  card.output_channels = 1;  // the card must say so: a 2-channel output is refused otherwise
  expect_error(
      [&] {
        wrapped(inner, "    o = self.inner.forward(x, t)\n    return torch.cat([o, o], 1)\n", card);
      },
      {"returned shape [2, 2, 4, 4]", "expected [2, 1, 4, 4]"});
}

TEST(TimeScale, ANetworkFedScaledTimeGivesTheSameScore) {
  const auto inner = make_tiny_unet(f64_unet());
  ModelCard card = inner.card();
  card.time_scale = 1000.0;  // a t ∈ [0, 1] model that was trained on t · 1000
  const auto model = wrapped(inner, "    return self.inner.forward(x, t / 1000.0)\n", card);
  const auto x = torch::randn({3, 1, 4, 4}, torch::kFloat64);
  const auto t = torch::rand({3}, torch::kFloat64) * 0.9 + 0.05;
  EXPECT_LT(relative_error({model.score(x, t)}, {inner.score(x, t)}), kSameFunctionTolerance);
}

// ---- schedules by diffusers' names, against their closed forms written here ----

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

/// b_i of each named schedule, in plain double arithmetic.
std::vector<double> expected_betas(BetaSchedule kind, double start, double end, int64_t N) {
  std::vector<double> b(N);
  for (int64_t i = 0; i < N; ++i) {
    const double u = double(i) / double(N - 1);
    switch (kind) {
      case BetaSchedule::Linear:
        b[i] = start + u * (end - start);
        break;
      case BetaSchedule::ScaledLinear:
        b[i] = std::pow(std::sqrt(start) + u * (std::sqrt(end) - std::sqrt(start)), 2);
        break;
      case BetaSchedule::SquaredcosCapV2: {
        const auto abar = [](double t) {
          return std::pow(std::cos((t + 0.008) / 1.008 * M_PI / 2), 2);
        };
        b[i] = std::min(1 - abar(double(i + 1) / N) / abar(double(i) / N), 0.999);
        break;
      }
      case BetaSchedule::Sigmoid:
        b[i] = sigmoid(-6 + 12 * u) * (end - start) + start;
        break;
    }
  }
  return b;
}

TEST(BetaSchedules, EachNamedScheduleMatchesItsClosedForm) {
  const int64_t N = 50;
  for (const auto& [name, kind] : beta_schedule_names()) {
    ScheduleOptions o;
    o.kind = ScheduleKind::DdpmDiscrete;
    o.beta_schedule = kind;
    o.beta_start = 0.00085;
    o.beta_end = 0.012;
    o.num_train_steps = N;
    const Schedule schedule(o);
    const auto b = expected_betas(kind, o.beta_start, o.beta_end, N);
    double abar = 1;
    for (int64_t i = 0; i < N; ++i) {
      abar *= 1 - b[i];
      EXPECT_NEAR(schedule.alpha_bar(double(i)), abar, kSameFunctionTolerance * abar)
          << name << " i = " << i;
    }
  }
}

TEST(BetaSchedules, ExplicitAlphasCumprodIsUsedAsIsAndChecked) {
  auto json = nlohmann::json{{"kind", "ddpm-discrete"}, {"alphas_cumprod", {0.99, 0.9, 0.5, 0.1}}};
  JsonReader reader(json, "m.json: /schedule");
  const Schedule schedule(parse_schedule(reader));
  EXPECT_EQ(schedule.t_max(), 3.0);
  for (int64_t i = 0; i < 4; ++i)
    EXPECT_EQ(schedule.alpha_bar(double(i)), json["alphas_cumprod"][i].get<double>());
  ScheduleOptions bad;
  bad.kind = ScheduleKind::DdpmDiscrete;
  bad.alphas_cumprod = {0.9, 0.95, 0.5};
  expect_error([&] { Schedule{bad}; }, {"alphas_cumprod must decrease strictly"});
  json["betas"] = {0.1, 0.2};
  JsonReader both(json, "m.json: /schedule");
  expect_error([&] { parse_schedule(both); }, {"m.json: /schedule/betas", "not both"});
  json = {{"kind", "ddpm-discrete"}, {"beta_schedule", "cosine"}};
  JsonReader unknown(json, "m.json: /schedule");
  expect_error([&] { parse_schedule(unknown); },
               {"/schedule/beta_schedule", "linear, scaled_linear, squaredcos_cap_v2, sigmoid"});
}

// ---- a module without derivatives is refused before any sampling ----

TEST(Differentiability, InferenceOnlyAttentionIsRefusedNamingTheOp) {
  torch::jit::Module m("FastPathAttention");
  const auto f64 = torch::kFloat64;
  m.register_parameter("w", torch::randn({12, 4}, f64) * 0.3, false);
  m.register_parameter("b", torch::zeros({12}, f64), false);
  m.register_parameter("pw", torch::randn({4, 4}, f64) * 0.3, false);
  m.register_parameter("pb", torch::zeros({4}, f64), false);
  // What tracing nn.MultiheadAttention under torch.no_grad() records (torch 1.13).
  m.define(R"(
def forward(self, x, t):
    q = x.flatten(2).transpose(1, 2)
    out = torch._native_multi_head_attention(q, q, q, 4, 2, self.w, self.b, self.pw, self.pb)[0]
    return out.transpose(1, 2).reshape(x.shape)
)");
  ModelCard card;
  card.shape = {4, 2, 2};
  const ScoreModel model(std::move(m), card, {c10::kCPU, c10::kDouble}, "traced.pt");
  TrainerOptions o;
  o.sampler.steps = 4;
  o.batch = 2;
  expect_error([&] { Trainer(o, model, [](const at::Tensor& x) {
                       return x.mean({1, 2, 3});
                     }); },
               {"traced.pt", "cannot be differentiated",
                "derivative for aten::_native_multi_head_attention is not implemented",
                "scripts/export_model.py"});
}

// ---- latent models: rewards see decoded images, and the adjoint goes through the decoder ----

/// A decoder from latents [B, 4, 4, 4] to images [B, 1, 8, 8] in [-1, 1].
torch::jit::Module make_decoder() {
  torch::jit::Module m("Decoder");
  torch::manual_seed(3);
  m.register_parameter("w", torch::randn({1, 4, 3, 3}, torch::kFloat64) * 0.3, false);
  m.register_parameter("b", torch::zeros({1}, torch::kFloat64), false);
  m.define(R"(
def forward(self, z):
    up = torch.upsample_nearest2d(z, [8, 8])
    return torch.tanh(torch.conv2d(up, self.w, self.b, [1, 1], [1, 1]))
)");
  return m;
}

ScoreModel latent_model() {
  auto options = f64_unet(4);
  auto model = make_tiny_unet(options);
  ModelCard card = model.card();
  card.decoder = DecoderCard{"decoder.pt", 0.5, {1, 8, 8}};
  ScoreModel latent(model.module(), card, options.model, "latent");
  latent.attach_decoder(make_decoder());
  return latent;
}

TEST(LatentModel, AdjointThroughTheDecoderMatchesAutograd) {
  const auto model = latent_model();
  const auto reference = model.frozen_copy();
  const auto params = model.trainable_parameters();
  const Sampler sampler({SamplerKind::SdeEuler, 6, 1e-2}, model);
  const Noise noise(4);
  const auto y0 = initial_state(model, 3, noise, 0);
  // The reward sees decoded images: R(decoder(y / scale)), brightness of [1, 8, 8] images.
  const RewardFn reward = [&](const at::Tensor& y) { return model.images(y).mean({1, 2, 3}); };
  const auto path = sample_path(sampler, model, y0, noise, 0);
  const auto adjoint =
      AdjointSolver(sampler, {1.3, 0.4}).gradient({model, params, &reference}, path, reward);
  const auto unrolled = unrolled_objective(sampler, {model, params, &reference}, y0, {noise, 0},
                                           reward, {{1.3, 0.4}});
  const auto autograd = torch::autograd::grad({unrolled.objective.mean()}, params);
  EXPECT_LT(relative_error(adjoint.grad, autograd), kAdjointTolerance);
  // The decoder matters: a reward on the raw latents gives another gradient.
  const RewardFn raw = [](const at::Tensor& y) { return y.mean({1, 2, 3}); };
  const auto without =
      AdjointSolver(sampler, {1.3, 0.4}).gradient({model, params, &reference}, path, raw);
  EXPECT_GT(relative_error(without.grad, autograd), 1e-3);
}

TEST(LatentModel, SavedWithItsDecoderAndTunedWithGridsOfDecodedImages) {
  TempDir dir;
  latent_model().save(dir.file("latent.pt"));
  const auto card = read_json_file(dir.file("latent.json"));
  EXPECT_EQ(card["decoder"]["file"], "latent_decoder.pt");
  ASSERT_TRUE(std::filesystem::exists(dir.file("latent_decoder.pt")));
  const auto loaded = ScoreModel::load(dir.file("latent.pt"), {c10::kCPU, c10::kDouble});
  EXPECT_EQ(loaded.images(torch::zeros({2, 4, 4, 4}, torch::kFloat64)).sizes(),
            c10::IntArrayRef({2, 1, 8, 8}));

  const nlohmann::json config = {
      {"model", dir.file("latent.pt")},
      {"dtype", "float64"},
      {"reward", "brightness"},
      {"sampler", {{"kind", "sde-euler"}, {"steps", 4}}},
      {"algorithm", {{"queue_slots", 2}}},
      {"batch", 2},
      {"iterations", 2},
      {"output", {{"run_dir", dir.file("run")}, {"image_every", 1}, {"grid_samples", 4}}}};
  TuneRun run(parse_tune_config(config, "latent.json"), /*resume=*/false);
  ASSERT_TRUE(run.run());
  for (const auto* f : {"samples/before.png", "samples/after.png", "tuned.pt", "tuned_decoder.pt"})
    EXPECT_TRUE(std::filesystem::exists(dir.file("run/") + f)) << f;
  EXPECT_EQ(read_json_file(dir.file("run/tuned.json"))["decoder"]["file"], "tuned_decoder.pt");

  // Without a decoder, 4-channel samples never reach the PNG writer: refused before the run.
  make_tiny_unet(f64_unet(4)).save(dir.file("raw.pt"));
  auto raw = config;
  raw["model"] = dir.file("raw.pt");
  raw["output"]["run_dir"] = dir.file("raw_run");
  expect_error([&] { TuneRun(parse_tune_config(raw, "raw.json"), false); },
               {"raw.json: /output/grids = true", "1 or 3 channels", "makes 4",
                "set output.grids to false"});
  EXPECT_FALSE(std::filesystem::exists(dir.file("raw_run")));
  raw["output"]["grids"] = false;  // grids off: it tunes
  TuneRun without_grids(parse_tune_config(raw, "raw.json"), false);
  EXPECT_TRUE(without_grids.run());
  EXPECT_FALSE(std::filesystem::exists(dir.file("raw_run/samples/after.png")));
}

}  // namespace
}  // namespace idtune
