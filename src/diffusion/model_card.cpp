#include "idtune/diffusion/model_card.h"

#include "idtune/core/error.h"
#include "idtune/core/json_reader.h"

namespace idtune {

const NameTable<Prediction>& prediction_names() {
  static const NameTable<Prediction> table = {{"score", Prediction::Score},
                                              {"epsilon", Prediction::Epsilon},
                                              {"v", Prediction::V},
                                              {"sample", Prediction::Sample}};
  return table;
}

const NameTable<TimeInput>& time_input_names() {
  static const NameTable<TimeInput> table = {{"continuous", TimeInput::Continuous},
                                             {"discrete", TimeInput::Discrete}};
  return table;
}

const NameTable<TimeDtype>& time_dtype_names() {
  static const NameTable<TimeDtype> table = {{"float", TimeDtype::Float},
                                             {"long", TimeDtype::Long}};
  return table;
}

const NameTable<ConditionKind>& condition_kind_names() {
  static const NameTable<ConditionKind> table = {{"class", ConditionKind::Class},
                                                 {"tensor", ConditionKind::Tensor}};
  return table;
}

ModelCard image_card(const ModelCard& card) {
  if (!card.decoder) return card;
  ModelCard images = card;
  images.shape = card.decoder->image_shape;
  images.output_channels = images.shape[0];
  images.decoder.reset();
  return images;
}

namespace {

/// [C, H, W] with every size in [1, 65536].
void check_shape(const std::vector<int64_t>& shape, const std::string& where) {
  check(shape.size() == 3, where, ": expected [C, H, W], got ", nlohmann::json(shape).dump());
  for (auto d : shape)
    check(d >= 1 && d <= 65536, where, ": every size must be in [1, 65536], got ",
          nlohmann::json(shape).dump());
}

DecoderCard parse_decoder(JsonReader reader) {
  DecoderCard decoder;
  reader.require("file", decoder.file);
  check(!decoder.file.empty(), reader.path_of("file"), ": must name a TorchScript file");
  reader.read_in_range("scale_factor", decoder.scale_factor, 0.0, 1e6, /*open_low=*/true);
  reader.require("image_shape", decoder.image_shape);
  check_shape(decoder.image_shape, reader.path_of("image_shape"));
  reader.finish();
  return decoder;
}

ConditionCard parse_condition(JsonReader reader) {
  ConditionCard c;
  reader.read_enum("kind", c.kind, condition_kind_names());
  if (c.kind == ConditionKind::Class) {
    reader.require("num_classes", c.num_classes);
    check(c.num_classes >= 1 && c.num_classes <= 1000000, reader.path_of("num_classes"), ": ",
          c.num_classes, " must be in [1, 1000000]");
    reader.read("null_class", c.null_class);
    check(c.null_class >= -1 && c.null_class <= c.num_classes, reader.path_of("null_class"), ": ",
          c.null_class, " must be a label in [0, num_classes] (usually num_classes: the label ",
          "dropped in training), or -1 for none");
  } else {
    reader.require("shape", c.shape);
    check(!c.shape.empty() && c.shape.size() <= 4, reader.path_of("shape"),
          ": expected the shape of one condition, 1 to 4 sizes, got ",
          nlohmann::json(c.shape).dump());
    for (auto d : c.shape)
      check(d >= 1 && d <= 1000000, reader.path_of("shape"),
            ": every size must be in [1, 1000000]");
    reader.read("null_file", c.null_file);
  }
  reader.finish();
  return c;
}

}  // namespace

ModelCard parse_model_card(const nlohmann::json& json, const std::string& source) {
  ModelCard card;
  JsonReader reader(json, source + ": ");
  reader.require("shape", card.shape);
  check_shape(card.shape, reader.path_of("shape"));
  reader.read("data_range", card.data_range);
  check(card.data_range[0] < card.data_range[1], reader.path_of("data_range"),
        ": expected [low, high] with low < high, got ", nlohmann::json(card.data_range).dump());
  auto schedule = reader.object("schedule");
  card.schedule = parse_schedule(schedule);
  reader.read_enum("prediction", card.prediction, prediction_names());
  card.output_channels = card.shape[0];
  reader.read_in_range("output_channels", card.output_channels, card.shape[0], 65536);
  reader.read_enum("time_input", card.time_input, time_input_names());
  reader.read_in_range("time_scale", card.time_scale, 0.0, 1e9, /*open_low=*/true);
  reader.read_enum("time_dtype", card.time_dtype, time_dtype_names());
  if (reader.has("decoder")) card.decoder = parse_decoder(reader.object("decoder"));
  if (reader.has("condition")) card.condition = parse_condition(reader.object("condition"));
  reader.read("provenance", card.provenance);
  reader.finish();

  const bool discrete = card.schedule.kind == ScheduleKind::DdpmDiscrete;
  check(discrete == (card.time_input == TimeInput::Discrete), reader.path_of("time_input"), ": \"",
        name_of(card.time_input, time_input_names()), "\" does not fit schedule \"",
        name_of(card.schedule.kind, schedule_names()),
        "\": a ddpm-discrete schedule takes time_input \"discrete\" (step indices), "
        "every other schedule \"continuous\"");
  check(discrete || card.time_dtype == TimeDtype::Float, reader.path_of("time_dtype"),
        ": continuous time must be \"float\"");
  check(!discrete || card.time_scale == 1.0, reader.path_of("time_scale"),
        ": applies to continuous time only (a discrete model receives the step index)");
  at_json_path(source, "/schedule", [&] { Schedule validate(card.schedule); });
  return card;
}

nlohmann::json to_json(const ModelCard& card) {
  nlohmann::json json = {
      {"shape", card.shape},
      {"data_range", card.data_range},
      {"schedule", to_json(card.schedule)},
      {"prediction", name_of(card.prediction, prediction_names())},
      {"output_channels", card.output_channels > 0 ? card.output_channels : card.shape.at(0)},
      {"time_input", name_of(card.time_input, time_input_names())},
      {"time_scale", card.time_scale},
      {"time_dtype", name_of(card.time_dtype, time_dtype_names())},
      {"provenance", card.provenance}};
  if (card.decoder)
    json["decoder"] = {{"file", card.decoder->file},
                       {"scale_factor", card.decoder->scale_factor},
                       {"image_shape", card.decoder->image_shape}};
  if (const auto& c = card.condition) {
    json["condition"] = {{"kind", name_of(c->kind, condition_kind_names())}};
    if (c->kind == ConditionKind::Class)
      json["condition"].update({{"num_classes", c->num_classes}, {"null_class", c->null_class}});
    else
      json["condition"].update({{"shape", c->shape}, {"null_file", c->null_file}});
  }
  return json;
}

std::string card_path_for(const std::string& model_path) {
  const auto dot = model_path.rfind('.');
  const auto slash = model_path.rfind('/');
  const bool has_extension =
      dot != std::string::npos && (slash == std::string::npos || dot > slash);
  return (has_extension ? model_path.substr(0, dot) : model_path) + ".json";
}

ModelCard load_model_card(const std::string& card_path) {
  return parse_model_card(read_json_file(card_path), card_path);
}

void save_model_card(const ModelCard& card, const std::string& card_path) {
  write_json_file(card_path, to_json(card));
}

}  // namespace idtune
