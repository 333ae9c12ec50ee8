// idtune fd --classifier c.pt --a images.gz --b images.gz: the FD between two image files,
// e.g. Fashion-MNIST's training set against its test set (the floor a model's FD is read against).

#include "commands.h"
#include "idtune/eval/classifier.h"
#include "idtune/eval/idx_images.h"

#include <cstdio>

namespace idtune::cli {

namespace {

int run_fd(const Flags& flags) {
  const std::array<double, 2> range{flags.number("range-min"), flags.number("range-max")};
  const auto classifier = Classifier::load(flags.text("classifier"), c10::kCPU, c10::kFloat);
  const int64_t limit = flags.integer("limit");
  const auto a = read_idx_images(flags.text("a"), range, limit);
  const auto b = read_idx_images(flags.text("b"), range, limit);
  const nlohmann::json result = {
      {"a", flags.text("a")},
      {"b", flags.text("b")},
      {"images_a", a.size(0)},
      {"images_b", b.size(0)},
      {"fd", frechet_distance(classifier.feature_statistics(a), classifier.feature_statistics(b))}};
  std::puts(result.dump(2).c_str());
  return 0;
}

}  // namespace

Command fd_command() {
  return {"fd",
          "Fréchet distance between two idx image files in a classifier's features",
          {{"classifier", "", "TorchScript classifier with features(x)", false, false, true},
           {"a", "", "idx image file (.gz or not)", false, false, true},
           {"b", "", "idx image file (.gz or not)", false, false, true},
           {"limit", "-1", "use the first N images of each file (-1: all)"},
           {"range-min", "-1", "pixel 0 maps to this value (the classifier's input range)"},
           {"range-max", "1", "pixel 255 maps to this value"}},
          run_fd};
}

}  // namespace idtune::cli
