#pragma once
// The model card: the JSON file beside a score model's TorchScript file (`m.pt` ->
// `m.json`) that says what the network's input and output mean (spec §2, model contract).

#include "idtune/diffusion/schedule.h"

#include "idtune/core/name_table.h"

#include <nlohmann/json.hpp>

#include <array>
#include <string>
#include <vector>

namespace idtune {

/// What the network's output o means; the score follows as in spec §2.
enum class Prediction { Score, Epsilon, V };
const NameTable<Prediction>& prediction_names();

/// How time is fed: t itself, or the training step index i (ddpm-discrete only).
enum class TimeInput { Continuous, Discrete };
const NameTable<TimeInput>& time_input_names();

/// The scalar type of the time tensor the network receives.
enum class TimeDtype { Float, Long };
const NameTable<TimeDtype>& time_dtype_names();

struct ModelCard {
  /// Image shape [C, H, W].
  std::vector<int64_t> shape;
  /// Range of the data the model was trained on, e.g. [-1, 1].
  std::array<double, 2> data_range{-1.0, 1.0};
  ScheduleOptions schedule;
  Prediction prediction = Prediction::Score;
  TimeInput time_input = TimeInput::Continuous;
  TimeDtype time_dtype = TimeDtype::Float;
  /// Free-form record of where the model came from (base model, reward, λ, β, steps...).
  nlohmann::json provenance = nlohmann::json::object();
};

/// Parses and validates a card; `source` names it in messages (a file path).
ModelCard parse_model_card(const nlohmann::json& json, const std::string& source);
nlohmann::json to_json(const ModelCard& card);

/// `path/to/model.pt` -> `path/to/model.json`.
std::string card_path_for(const std::string& model_path);
ModelCard load_model_card(const std::string& card_path);
void save_model_card(const ModelCard& card, const std::string& card_path);

}  // namespace idtune
