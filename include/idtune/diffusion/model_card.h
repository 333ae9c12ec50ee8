#pragma once
// The model card: the JSON file beside a score model's TorchScript file (`m.pt` ->
// `m.json`) that says what the network's input and output mean (spec §2, model contract).

#include "idtune/diffusion/schedule.h"

#include "idtune/core/name_table.h"

#include <nlohmann/json.hpp>

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace idtune {

/// What the network's output o means; the score follows as in spec §2:
///   score: s = o;  epsilon: s = −o/σ;  v (= αε − σx₀): s = −(α o + σ x)/σ;
///   sample (x₀): s = −(x − α o)/σ².
enum class Prediction { Score, Epsilon, V, Sample };
const NameTable<Prediction>& prediction_names();

/// How time is fed: t itself, or the training step index i (ddpm-discrete only).
enum class TimeInput { Continuous, Discrete };
const NameTable<TimeInput>& time_input_names();

/// The scalar type of the time tensor the network receives.
enum class TimeDtype { Float, Long };
const NameTable<TimeDtype>& time_dtype_names();

/// A latent model's decoder: images = decoder(latent / scale_factor).
struct DecoderCard {
  /// TorchScript forward(z [B, C, H, W]) -> images [B, image_shape…] in the card's data range;
  /// a relative path is relative to the card's folder.
  std::string file;
  /// The latents the model samples are scale_factor × the autoencoder's (0.18215 in SD 1.x).
  double scale_factor = 1.0;
  /// [C, H, W] of the decoded images.
  std::vector<int64_t> image_shape;
};

/// What a conditional network's third input c is.
enum class ConditionKind { Class, Tensor };
const NameTable<ConditionKind>& condition_kind_names();

/// A conditional model: forward(x, t, c), c int64 class labels [B] or a float tensor
/// [B, shape…]; `null` is the unconditional input classifier-free guidance needs.
struct ConditionCard {
  ConditionKind kind = ConditionKind::Class;
  /// Class: labels 0 … num_classes − 1.
  int64_t num_classes = 0;
  /// Class: the label trained as "no condition" (label dropout), usually num_classes; −1: none.
  int64_t null_class = -1;
  /// Tensor: the shape of one condition (e.g. [77, 768] text-encoder states).
  std::vector<int64_t> shape;
  /// Tensor: a torch.save'd tensor [shape…] used as "no condition" (relative to the card's
  /// folder); empty: none.
  std::string null_file;
  bool has_null() const {
    return kind == ConditionKind::Class ? null_class >= 0 : !null_file.empty();
  }
};

struct ModelCard {
  /// The model's input shape [C, H, W]: the image, or the latent of a latent model.
  std::vector<int64_t> shape;
  /// Range of the images (decoded images for a latent model), e.g. [-1, 1].
  std::array<double, 2> data_range{-1.0, 1.0};
  ScheduleOptions schedule;
  Prediction prediction = Prediction::Score;
  /// Channels of the network's output: C, or more when it also predicts something idtune does
  /// not use (a learned variance, guided-diffusion's learn_sigma): the first C channels are the
  /// prediction. 0 in a parsed card means C.
  int64_t output_channels = 0;
  TimeInput time_input = TimeInput::Continuous;
  /// A continuous-time network receives time_scale · t (e.g. 1000 for t ∈ [0, 1] fed as t·1000).
  double time_scale = 1.0;
  TimeDtype time_dtype = TimeDtype::Float;
  /// Set for a latent model.
  std::optional<DecoderCard> decoder;
  /// Set for a conditional model.
  std::optional<ConditionCard> condition;
  /// Free-form record of where the model came from (base model, reward, λ, β, steps...).
  nlohmann::json provenance = nlohmann::json::object();
};

/// The card of the images rewards, grids and FD see: the card itself, or for a latent model
/// the decoded images' (shape = decoder.image_shape, no decoder).
ModelCard image_card(const ModelCard& card);

/// Parses and validates a card; `source` names it in messages (a file path).
ModelCard parse_model_card(const nlohmann::json& json, const std::string& source);
nlohmann::json to_json(const ModelCard& card);

/// `path/to/model.pt` -> `path/to/model.json`.
std::string card_path_for(const std::string& model_path);
ModelCard load_model_card(const std::string& card_path);
void save_model_card(const ModelCard& card, const std::string& card_path);

}  // namespace idtune
