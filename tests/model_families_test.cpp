// The cookbook (docs/bring-your-own-model.md) as a test, one family of public checkpoints each,
// written in its codebase's style under scripts/families/ and exported by
// scripts/export_model.py: loaded by idtune, adjoint = autograd in float64, tuned by
// `idtune tune` (the reward rises on the same noise), and the tuned file loads in Python.
// In float32, as users run them: like the public code they imitate, these networks build their
// time embeddings in float32 (a traced graph even records the dtype), so they cannot run in
// float64. The float64 adjoint claims are in adjoint_test, golden_values_test and
// your_checkpoint_test (latent, with a decoder).

#include "idtune/core/json_reader.h"
#include "idtune/core/torchscript.h"
#include "idtune/diffusion/adjoint.h"
#include "idtune/diffusion/backprop_through_sampler.h"
#include "idtune/diffusion/conditions.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/training/reward.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace idtune {
namespace {

using testing::run;

const std::string kPython = "/usr/bin/python3 ";
const std::string kFamilies = IDTUNE_SOURCE_DIR "/scripts/families/";
const std::string kScripts = IDTUNE_SOURCE_DIR "/scripts/";
// The adjoint sums K vector-Jacobian products in another order than autograd: in float32 over
// K = 4 steps of a ~100k-parameter network, a few units in the 6th digit.
constexpr double kFloat32AdjointTolerance = 1e-4;

struct Family {
  std::string name;
  std::string init;         // arguments of the family script (it writes <dir>/state...)
  std::string export_args;  // arguments of export_model.py; {dir} is the work folder
  std::string reward;
  // Conditional families: the config's `conditions` ({dir} allowed) and the guidance scale
  // used in the adjoint check, the tune and the Python check.
  nlohmann::json conditions = nullptr;
  double guidance = 0;
  // Merged into the tune's config: LoRA and bf16 on the attention families.
  nlohmann::json tune_with = nullptr;
};

/// LoRA adapters (every weight matrix, attention's in_proj_weight included) and bf16 autocast.
const nlohmann::json kLoraBf16 = {
    {"lora", {{"rank", 2}}}, {"precision", "bf16"}, {"optimiser", {{"lr", 1e-2}}}};

std::string with_dir(std::string text, const std::string& dir) {
  for (size_t at; (at = text.find("{dir}")) != std::string::npos;) text.replace(at, 5, dir);
  return text;
}

class ModelFamily : public ::testing::TestWithParam<Family> {
 protected:
  std::string file(const std::string& name) const { return dir_.file(name); }
  testing::TempDir dir_;
};

TEST_P(ModelFamily, ExportsTunesAndLoadsBackInPython) {
  const auto& f = GetParam();
  const std::string dir = file("");
  const auto init = run(kPython + kFamilies + with_dir(f.init, dir));
  ASSERT_EQ(init.status, 0) << init.output;
  const auto exported = run(kPython + kScripts + "export_model.py " + with_dir(f.export_args, dir) +
                            " --out " + file("base.pt"));
  ASSERT_EQ(exported.status, 0) << exported.output;

  // Loaded by idtune: the exact adjoint equals autograd through the sampler.
  const auto model = ScoreModel::load(file("base.pt"), {c10::kCPU, c10::kFloat});
  const auto reference = model.frozen_copy();
  const auto params = model.trainable_parameters();
  SamplerOptions sampling{SamplerKind::Ddpm, 4};
  sampling.guidance_scale = f.guidance;
  const Sampler sampler(sampling, model);
  const Noise noise(2);
  const auto y0 = initial_state(model, 2, noise, 0);
  nlohmann::json conditions = f.conditions.is_null()
                                  ? f.conditions
                                  : nlohmann::json::parse(with_dir(f.conditions.dump(), dir));
  at::Tensor c;
  if (conditions.contains("classes"))
    c = ConditionSet::classes(conditions["classes"]).draw(noise, 0, 2, y0.options());
  else if (conditions.contains("file"))
    c = ConditionSet::tensors(load_saved_tensor(conditions["file"], "conditions"))
            .draw(noise, 0, 2, y0.options());
  const auto reward = Reward::parse(f.reward, image_card(model.card()), c10::kCPU, c10::kFloat);
  const RewardFn reward_fn = [&](const at::Tensor& y) { return reward(model.images(y)); };
  const auto adjoint = AdjointSolver(sampler, {1.0, 0.1})
                           .gradient({model, params, &reference},
                                     sample_path(sampler, model, y0, noise, 0, c), reward_fn);
  const auto unrolled = unrolled_objective(sampler, {model, params, &reference}, y0, {noise, 0},
                                           reward_fn, {{1.0, 0.1}}, c);
  const auto autograd = torch::autograd::grad({unrolled.objective.mean()}, params);
  EXPECT_LT(testing::relative_error(adjoint.grad, autograd), kFloat32AdjointTolerance);

  // Tuned by the CLI; then the tuned model's reward against the base's, on the same noise.
  nlohmann::json config = {
      {"model", file("base.pt")},
      {"reward", f.reward},
      {"objective", {{"lambda", 1.0}, {"beta", 0.0}}},
      {"sampler", {{"kind", "ddpm"}, {"steps", 4}, {"guidance_scale", f.guidance}}},
      {"algorithm", {{"queue_slots", 2}}},
      {"optimiser", {{"lr", 1e-3}}},
      {"batch", 4},
      {"iterations", 6},
      {"output", {{"run_dir", file("run")}, {"log_every", 0}}}};
  if (!conditions.is_null()) config["conditions"] = conditions;
  if (!f.tune_with.is_null()) config.merge_patch(f.tune_with);
  write_json_file(file("run.json"), config);
  const auto tuned = run(IDTUNE_EXECUTABLE " tune --config " + file("run.json"));
  ASSERT_EQ(tuned.status, 0) << tuned.output;
  if (!f.tune_with.is_null()) {
    EXPECT_NE(tuned.output.find("(LoRA adapters, rank 2), precision bf16"), std::string::npos)
        << tuned.output;
  }
  // The tuned model loads with everything beside it (decoder, null condition).
  EXPECT_NO_THROW(ScoreModel::load(file("run/tuned.pt"), {c10::kCPU, c10::kFloat}));
  std::string classes;  // idtune eval draws labels itself; tensor conditions it cannot draw
  for (const auto& label : conditions.is_object()
                               ? conditions.value("classes", nlohmann::json::array())
                               : nlohmann::json::array())
    classes += (classes.empty() ? " --classes " : ",") + label.dump();
  if (conditions.is_null() || !classes.empty()) {
    const auto eval = run(IDTUNE_EXECUTABLE " eval --model " + file("run/tuned.pt") +
                          " --reference " + file("base.pt") + " --reward '" + f.reward +
                          "' --sampler ddpm --steps 4 --n 16 --batch 16" + classes +
                          " --guidance " + std::to_string(f.guidance) + " 2>/dev/null");
    ASSERT_EQ(eval.status, 0) << eval.output;
    const auto report = nlohmann::json::parse(eval.output.substr(eval.output.find('{')));
    EXPECT_GT(report["reward_mean"].get<double>(), report["reference_reward_mean"].get<double>())
        << report.dump();
  }

  // The tuned file is TorchScript with the base's signature and card, loadable in Python.
  const auto check = run(kPython + kScripts + "check_export.py --model " + file("run/tuned.pt") +
                         " --steps 4 --n 4 --reward '" + f.reward + "'" +
                         (conditions.is_null() ? "" : " --guidance " + std::to_string(f.guidance)));
  EXPECT_EQ(check.status, 0) << check.output;
}

const std::string kDdpmSchedule =
    " --schedule ddpm-discrete --beta-schedule linear --beta-start 1e-4 --beta-end 0.02"
    " --num-train-steps 1000 --time-dtype long";

INSTANTIATE_TEST_SUITE_P(
    Cookbook, ModelFamily,
    ::testing::Values(
        // ε DDPM U-Net with nn.MultiheadAttention and integer time: scripting fails, the
        // exporter traces with autograd on (no inference-only attention kernel recorded).
        // Tuned with LoRA in bf16.
        Family{"ddpm_attention", "ddpm_attention_unet.py --steps 0 --out {dir}/state.pt",
               "--module " + kFamilies +
                   "ddpm_attention_unet.py --class Model --state-dict "
                   "{dir}/state.pt --shape 3 16 16 --prediction epsilon" +
                   kDdpmSchedule,
               "brightness", nullptr, 0, kLoraBf16},
        // lucidrains style: v-prediction, the wrapper's own alphas_cumprod.
        Family{
            "v_prediction", "v_prediction_unet.py --steps 0 --out {dir}/state.pt",
            "--module " + kFamilies +
                "v_prediction_unet.py --class build_diffusion "
                "--state-dict {dir}/state.pt --state-dict-key model --submodule model --shape 1 16 "
                "16 --schedule ddpm-discrete --alphas-cumprod-attr alphas_cumprod --prediction v "
                "--time-dtype long",
            "brightness"},
        // x0-prediction on a cosine (squaredcos) schedule.
        Family{
            "x0_prediction",
            "v_prediction_unet.py --steps 0 --objective pred_x0 --beta-schedule cosine --out "
            "{dir}/state.pt",
            "--module " + kFamilies +
                "v_prediction_unet.py --class build_diffusion "
                "--init-kwargs '{\"objective\":\"pred_x0\",\"beta_schedule\":\"cosine\"}' "
                "--state-dict {dir}/state.pt --state-dict-key model --submodule model --shape 1 16 "
                "16 --schedule ddpm-discrete --alphas-cumprod-attr alphas_cumprod --prediction "
                "sample --time-dtype long",
            "brightness"},
        // guided-diffusion style: ε and a learned variance, 2C output channels.
        Family{
            "learned_sigma", "learned_sigma_unet.py --steps 0 --out {dir}/state.pt",
            "--module " + kFamilies +
                "learned_sigma_unet.py --class UNetModel --state-dict "
                "{dir}/state.pt --shape 3 16 16 --schedule ddpm-discrete --beta-schedule "
                "squaredcos_cap_v2 --num-train-steps 1000 --prediction epsilon --output-channels 6 "
                "--time-dtype long",
            "channel-mean:2"},
        // diffusers style: forward(sample, timestep) returns an object with .sample.
        Family{"diffusers", "diffusers_style_unet.py --steps 0 --out {dir}/state.pt",
               "--module " + kFamilies +
                   "diffusers_style_unet.py --class UNet2DModel "
                   "--state-dict {dir}/state.pt --shape 1 16 16 --prediction epsilon" +
                   kDdpmSchedule,
               "brightness"},
        // A latent model (4×7×7) with its decoder to 1×28×28 images.
        Family{"latent", "latent.py --steps 0 --out {dir}/latent",
               "--module " + kFamilies +
                   "latent.py --class LatentDenoiser --state-dict "
                   "{dir}/latent/latent_state.pt --shape 4 7 7 --schedule ddpm-discrete "
                   "--beta-schedule scaled_linear --beta-start 0.00085 --beta-end 0.012 "
                   "--num-train-steps 1000 --prediction epsilon --time-dtype long --decoder "
                   "{dir}/latent/vae_decoder.pt --scale-factor 3.3139 --image-shape 1 28 28",
               "brightness"},
        // guided-diffusion style, class-conditional: forward(x, timesteps, y), null label 10,
        // tuned with classifier-free guidance w = 1.
        Family{"class_conditional",
               "learned_sigma_unet.py --steps 0 --num-classes 10 --out {dir}/state.pt",
               "--module " + kFamilies +
                   "learned_sigma_unet.py --class UNetModel --init-kwargs '{\"num_classes\": 11}' "
                   "--state-dict {dir}/state.pt --shape 3 16 16 --schedule ddpm-discrete "
                   "--beta-schedule squaredcos_cap_v2 --num-train-steps 1000 --prediction epsilon "
                   "--output-channels 6 --time-dtype long --condition class --num-classes 10",
               "channel-mean:2",
               {{"classes", {0, 1, 2}}},
               1.0},
        // Cross-attention on text-encoder states [4, 8], with the empty prompt as ∅; tuned with
        // LoRA in bf16.
        Family{"text_conditional",
               "cross_attention_unet.py --steps 0 --out {dir}/state.pt --null-out {dir}/null.pt "
               "--prompts-out {dir}/prompts.pt",
               "--module " + kFamilies +
                   "cross_attention_unet.py --class UNet2DConditionModel --state-dict "
                   "{dir}/state.pt --shape 3 16 16 --prediction epsilon --condition tensor "
                   "--condition-shape 4 8 --null-condition {dir}/null.pt" +
                   kDdpmSchedule,
               "brightness",
               {{"file", "{dir}/prompts.pt"}},
               1.0,
               kLoraBf16}),
    [](const ::testing::TestParamInfo<Family>& info) { return info.param.name; });

}  // namespace
}  // namespace idtune
