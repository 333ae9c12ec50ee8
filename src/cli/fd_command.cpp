// idtune fd --classifier c.pt --a images.gz --b images.gz: the FD between two image files,
// e.g. Fashion-MNIST's training set against its test set (the floor a model's FD is read against).

#include "commands.h"
#include "idtune/eval/classifier.h"
#include "idtune/eval/idx_images.h"

#include <cstdio>
#include <limits>

namespace idtune::cli {

namespace {

/// The images of an idx file: at least 2 (a covariance of their features is needed).
at::Tensor read_images(const std::string& file, const std::array<double, 2>& range, int64_t limit) {
  const auto images = read_idx_images(file, range, limit);
  check(images.size(0) >= 2, "idtune fd: '", file, "' gave ", images.size(0), " images (--limit ",
        limit, "); the FD needs at least 2 per file");
  return images;
}

int run_fd(const Flags& flags) {
  const std::array<double, 2> range{flags.number("range-min"), flags.number("range-max")};
  check(range[0] < range[1], "idtune fd: --range-min (", range[0], ") must be below --range-max (",
        range[1], ")");
  const int64_t limit = flags.integer("limit", -1, std::numeric_limits<int64_t>::max());
  const auto classifier = Classifier::load(flags.text("classifier"), c10::kCPU, c10::kFloat);
  const auto a = read_images(flags.text("a"), range, limit);
  const auto b = read_images(flags.text("b"), range, limit);
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
