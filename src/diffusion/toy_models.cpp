#include "idtune/diffusion/toy_models.h"

#include "idtune/core/error.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>

namespace idtune {

ScoreModel make_ou_gaussian_model(const OuGaussianOptions& options) {
  torch::jit::Module module("OuGaussianScore");
  const bool conditional = !options.class_thetas.empty();
  module.register_parameter("theta",
                            conditional ? torch::tensor(options.class_thetas, torch::kFloat64)
                                        : torch::tensor({options.theta}, torch::kFloat64),
                            false);
  module.register_parameter("kappa", torch::tensor({options.kappa}, torch::kFloat64), false);
  if (conditional) {
    module.define(R"(
def forward(self, x, t, c):
    theta = self.theta.index_select(0, c).view(-1, 1, 1, 1)
    return -self.kappa * (x - theta * torch.exp(-t).view(-1, 1, 1, 1))
)");
  } else {
    module.define(R"(
def forward(self, x, t):
    return -self.kappa * (x - self.theta * torch.exp(-t).view(-1, 1, 1, 1))
)");
  }
  ModelCard card;
  if (conditional) {
    const auto n = static_cast<int64_t>(options.class_thetas.size()) - 1;
    check(n >= 1, "ou-gaussian: class_thetas needs n + 1 >= 2 values (the last: the null label)");
    card.condition = ConditionCard{ConditionKind::Class, n, n, {}, ""};
  }
  card.shape = {1, 1, 1};
  card.data_range = {-10.0, 10.0};
  card.schedule.kind = ScheduleKind::Ou;
  card.schedule.t_max = options.t_max;
  card.provenance = {{"built_by", "idtune::make_ou_gaussian_model"}};
  return ScoreModel(std::move(module), card, options.model, "ou-gaussian");
}

namespace {

/// N(0, 1/fan_in) weights from a seeded generator.
class Initialiser {
 public:
  explicit Initialiser(uint64_t seed)
      : generator_(at::make_generator<at::CPUGeneratorImpl>(seed)) {}
  at::Tensor weight(std::vector<int64_t> shape, int64_t fan_in) {
    return torch::randn(shape, generator_, torch::dtype(torch::kFloat64)) / std::sqrt(fan_in);
  }

 private:
  at::Generator generator_;
};

}  // namespace

ScoreModel make_tiny_unet(const TinyUNetOptions& o) {
  check(o.size % 2 == 0 && o.width % 2 == 0, "tiny U-Net: size and width must be even");
  const int64_t C = o.channels, W = o.width, F = 4;  // F: time-embedding frequencies
  Initialiser init(o.seed);
  torch::jit::Module m("TinyUNet");
  auto add = [&](const std::string& name, at::Tensor value) {
    m.register_parameter(name, value, false);
  };
  m.register_buffer("freqs", torch::logspace(-1, 1, F, 10, torch::kFloat64));
  add("time_w", init.weight({2 * F, W}, 2 * F));
  add("time_b", torch::zeros({W}, torch::kFloat64));
  add("in_w", init.weight({W, C, 3, 3}, 9 * C));
  add("in_b", torch::zeros({W}, torch::kFloat64));
  add("norm_w", torch::ones({W}, torch::kFloat64));
  add("norm_b", torch::zeros({W}, torch::kFloat64));
  add("down_w", init.weight({2 * W, W, 3, 3}, 9 * W));
  add("down_b", torch::zeros({2 * W}, torch::kFloat64));
  add("up_w", init.weight({W, 3 * W, 3, 3}, 27 * W));
  add("up_b", torch::zeros({W}, torch::kFloat64));
  add("out_w", init.weight({C, W, 3, 3}, 9 * W) * 0.1);
  add("out_b", torch::zeros({C}, torch::kFloat64));
  const bool conditional = o.classes > 0;
  if (conditional) add("class_emb", init.weight({o.classes + 1, W}, 1));
  m.define(
      std::string(conditional ? "def forward(self, x, t, c):\n" : "def forward(self, x, t):\n") +
      R"(
    tt = t.to(x.dtype)[:, None]
    emb = torch.cat([torch.sin(tt * self.freqs), torch.cos(tt * self.freqs)], 1)
    emb = torch.silu(torch.matmul(emb, self.time_w) + self.time_b)
)" + (conditional ? "    emb = emb + self.class_emb.index_select(0, c)\n" : "") +
      R"(

    h = torch.conv2d(x, self.in_w, self.in_b, [1, 1], [1, 1]) + emb[:, :, None, None]
    h = torch.silu(torch.group_norm(h, 2, self.norm_w, self.norm_b))
    d = torch.avg_pool2d(h, [2, 2])
    d = torch.silu(torch.conv2d(d, self.down_w, self.down_b, [1, 1], [1, 1]))
    u = torch.upsample_nearest2d(d, [h.size(2), h.size(3)])
    u = torch.silu(torch.conv2d(torch.cat([u, h], 1), self.up_w, self.up_b, [1, 1], [1, 1]))
    return torch.conv2d(u, self.out_w, self.out_b, [1, 1], [1, 1])
)");
  ModelCard card;
  card.shape = {C, o.size, o.size};
  card.schedule = o.schedule;
  card.prediction = o.prediction;
  card.time_input =
      o.schedule.kind == ScheduleKind::DdpmDiscrete ? TimeInput::Discrete : TimeInput::Continuous;
  card.provenance = {{"built_by", "idtune::make_tiny_unet"}, {"seed", o.seed}};
  if (conditional)
    card.condition = ConditionCard{ConditionKind::Class, o.classes, o.classes, {}, ""};
  return ScoreModel(std::move(m), card, o.model, "tiny-unet");
}

}  // namespace idtune
