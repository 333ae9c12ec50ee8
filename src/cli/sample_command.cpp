// idtune sample --model m.pt --n 64 --out grid.png

#include "commands.h"
#include "idtune/diffusion/conditions.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/eval/image_grid.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

namespace idtune::cli {

namespace {

int run_sample(const Flags& flags) {
  const auto model = ScoreModel::load(flags.text("model"), model_options(flags));
  const Sampler sampler = make_sampler(flags, model);
  const Noise noise(noise_seed(flags));
  const int64_t n = flags.integer("n", 1, 4096);
  // A conditional model: --classes, one row of n / |classes| samples per class.
  const auto classes = flags.integers("classes");
  at::Tensor c;
  int64_t rows_of = 0;
  if (!classes.empty()) {
    in_context("--classes", [&] {
      const auto rows = class_rows(classes, n);
      c = rows.labels.to(model.device());
      rows_of = rows.per_row;
      model.check_conditions(c, c.size(0));
    });
  }
  const int64_t count = classes.empty() ? n : c.size(0);
  const auto images =
      sample_path(sampler, model, initial_state(model, count, noise, 0), noise, 0, c).final_state();
  torch::NoGradGuard no_grad;
  write_image_grid(model.images(images), model.card().data_range, flags.text("out"), rows_of);
  spdlog::info("wrote {} samples of '{}' to '{}'", n, flags.text("model"), flags.text("out"));
  return 0;
}

}  // namespace

Command sample_command() {
  return {"sample", "draw samples from a score model into a PNG grid",
          with_sampling_flags(
              {{"model", "", "TorchScript score model (card beside it)", false, false, true},
               {"out", "samples.png", "PNG grid to write"},
               {"n", "64", "number of samples"},
               {"classes", "", "conditional models: labels, one grid row each (e.g. 0,1,2)"}}),
          run_sample};
}

}  // namespace idtune::cli
