// idtune sample --model m.pt --n 64 --out grid.png

#include "commands.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/eval/image_grid.h"

#include <spdlog/spdlog.h>

namespace idtune::cli {

namespace {

int run_sample(const Flags& flags) {
  const auto model = ScoreModel::load(flags.text("model"), model_options(flags));
  const Sampler sampler = make_sampler(flags, model);
  const Noise noise(static_cast<uint64_t>(flags.integer("seed")));
  const int64_t n = flags.integer("n");
  check(n >= 1 && n <= 4096, "idtune sample: --n must be in [1, 4096], got ", n);
  const auto images =
      sample_path(sampler, model, initial_state(model, n, noise, 0), noise, 0).final_state();
  write_image_grid(model.images(images), model.card().data_range, flags.text("out"));
  spdlog::info("wrote {} samples of '{}' to '{}'", n, flags.text("model"), flags.text("out"));
  return 0;
}

}  // namespace

Command sample_command() {
  return {"sample", "draw samples from a score model into a PNG grid",
          with_sampling_flags(
              {{"model", "", "TorchScript score model (card beside it)", false, false, true},
               {"out", "samples.png", "PNG grid to write"},
               {"n", "64", "number of samples"}}),
          run_sample};
}

}  // namespace idtune::cli
