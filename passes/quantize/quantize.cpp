// quantize: the quantization pass for pipelines, quantize(mode=dynamic|static|weight-only, ...). The
// rewrites live in lib/quant (shared with `mopt quantize`, which adds the opset upgrade, accuracy-aware
// fallback and per-layer error report around them); this file maps pass options onto them. Static mode
// calibrates on `data` with the executor first.
//
//   quantize                                       dynamic: MatMul/Gemm -> MatMulInteger
//   quantize(mode=static,data=calib/,per-channel=true,calibration=entropy)
//   quantize(mode=static,data=calib.npy,format=qoperator)
//   quantize(mode=weight-only,bits=4,block-size=32)  MatMul -> com.microsoft MatMulNBits
//   quantize(mode=weight-only,format=qdq)           MatMul(DequantizeLinear(int4, block_size=32)), opset 21
#include <fmt/format.h>

#include <map>
#include <sstream>

#include "data/feeds.h"
#include "pass/pass.h"
#include "eval/accuracy.h"
#include "quant/accuracy_aware.h"
#include "quant/calibrate.h"
#include "quant/overrides.h"
#include "convert/versions.h"
#include "quant/quantize.h"
#include "rewrite/rewrite.h"
#include "util/error.h"

namespace mopt::passes {
namespace {

std::set<std::string> split_list(const std::string& text) {
  std::set<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.insert(item);
  }
  return out;
}

constexpr size_t kLayerErrorSamples = 4;  // samples the per-layer error report runs
constexpr int64_t kUpgradeIrVersion = 7;  // the IR version released with opset 13

class QuantizePass : public pass::Pass {
 public:
  explicit QuantizePass(const pass::Options& o) : options_(o) {
    for (const std::string& spec : o.get_list("tensor-range")) range_overrides_.push_back(data::parse_named_range(spec, "tensor-range"));
    for (const std::string& spec : o.get_list("tensor-type")) {
      const size_t eq = spec.rfind('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
        usage_error("tensor-type: expected NAME=TYPE (int8, uint8, int16, uint16), not '{}'", spec);
      tensor_types_[spec.substr(0, eq)] = quant::parse_qtype(spec.substr(eq + 1), false, true);
    }
    if (const std::string& path = o.get_string("overrides"); !path.empty()) {
      overrides_ = quant::read_overrides(path);
      for (const data::NamedRange& r : overrides_.tensor_ranges) {
        for (const data::NamedRange& flag : range_overrides_) {
          if (flag.name == r.name) usage_error("tensor-range and the overrides file both set the range of '{}'", r.name);
        }
      }
      range_overrides_.insert(range_overrides_.end(), overrides_.tensor_ranges.begin(), overrides_.tensor_ranges.end());
      for (const auto& [name, type] : overrides_.tensor_types) {
        if (tensor_types_.count(name) && tensor_types_.at(name) != type)
          usage_error("tensor-type and the overrides file give '{}' different types", name);
      }
    }
  }

  pass::PassResult run(ir::Model& model, pass::PassContext& ctx) override {
    quant::QuantizeConfig config = make_config();
    check_names(model, config);
    nlohmann::json details;
    upgrade_opset_if_needed(model, config, ctx, details);
    std::optional<quant::CalibrationTable> table;
    const eval::Evaluation* evaluation = ctx.evaluation();
    if (config.mode == quant::Mode::Static) table = calibrate(model, config, evaluation);
    quant::FallbackTarget target;
    if (const double max_drop = options_.get_float("max-accuracy-drop"); max_drop >= 0) target.max_drop = max_drop;
    if (const double min_cosine = options_.get_float("min-cosine"); min_cosine >= -1) target.min_cosine = min_cosine;

    std::optional<quant::FallbackResult> fallback;
    if (target.max_drop || target.min_cosine) {
      const std::string flag = target.max_drop ? "max-accuracy-drop" : "min-cosine";
      if (evaluation == nullptr) usage_error("quantize({}=...) needs the accuracy check (drop --accuracy off)", flag);
      eval::require_real_data(evaluation->source, fmt::format("the accuracy-aware fallback (--{})", flag));
      if (int64_t named = rewrite::name_unnamed_nodes(model)) ctx.count("nodes-named", named);
      fallback = quant::accuracy_aware_exclusions(model, config, table ? &*table : nullptr, *evaluation, target);
      config.exclude_nodes.insert(fallback->kept_float.begin(), fallback->kept_float.end());
    }

    // Float values of the layers about to be quantized, for the per-layer error report.
    std::vector<data::Feeds> error_samples;
    eval::Captures float_values;
    if (evaluation) {
      const size_t n = std::min<size_t>(evaluation->samples.size(), kLayerErrorSamples);
      error_samples.assign(evaluation->samples.begin(), evaluation->samples.begin() + static_cast<std::ptrdiff_t>(n));
      std::set<std::string> outputs;
      for (const ir::Node* node : quant::select_nodes(model, config, nullptr)) outputs.insert(node->output(0)->name());
      float_values = eval::capture_values(model, error_samples, outputs, evaluation->threads);
    }

    // Quantize in QDQ form first: per-layer errors are measured there, then QOperator fuses patterns.
    const quant::Format format = config.output_format();
    if (config.mode == quant::Mode::Static) config.format = quant::Format::QDQ;
    quant::QuantizeSummary summary = quant::quantize_model(model, config, table ? &*table : nullptr);
    if (evaluation) {
      std::set<std::string> values;
      for (const quant::LayerRecord& l : summary.layers) values.insert(l.value);
      quant::add_layer_errors(float_values, eval::capture_values(model, error_samples, values, evaluation->threads), summary);
    }
    if (format == quant::Format::QOperator && config.mode == quant::Mode::Static) quant::qdq_to_qoperator(model, summary);

    for (const std::string& w : summary.warnings) ctx.warn(w);
    ctx.count("nodes-quantized", summary.nodes_quantized());
    ctx.count("nodes-skipped", static_cast<int64_t>(summary.skipped.size()));
    if (summary.biases_corrected > 0) ctx.count("biases-corrected", summary.biases_corrected);
    for (const auto& [node, why] : summary.skipped) {
      if (ctx.explain()) fmt::print(stderr, "quantize: skipped '{}': {}\n", node, why);
    }
    nlohmann::json j = quant::to_json(summary);
    if (!details.is_null()) j.update(details);
    if (table) j["calibration"] = {{"method", table->method}, {"samples", table->samples}, {"rows", table->rows},
                                   {"seconds", table->seconds},
                                   {"seconds_per_row", table->seconds / static_cast<double>(std::max<int64_t>(1, table->rows))}};
    if (evaluation) j["layer_error_samples"] = error_samples.size();
    if (fallback) {
      j["accuracy_aware"] = fallback->to_json();
      if (!fallback->final_score.meets(target))
        ctx.warn(fmt::format("accuracy-aware: the target is not met even with every layer in float ({})", fallback->final_score.describe()));
    }
    ctx.set_details(std::move(j));
    return {summary.nodes_quantized() > 0, summary.nodes_quantized() > 0 ? "" : unchanged_reason(summary, fallback)};
  }

  // Why nothing was quantized, from the skipped nodes' reasons (the most common first).
  static std::string unchanged_reason(const quant::QuantizeSummary& summary, const std::optional<quant::FallbackResult>& fallback) {
    if (fallback && !fallback->kept_float.empty())
      return fmt::format("the accuracy-aware fallback kept every layer in float to meet the target (with every layer "
                         "quantized: {}{})",
                         fallback->initial.describe(), fallback->basis.empty() ? "" : ", " + fallback->basis);
    if (summary.skipped.empty()) return fmt::format("the model has no operator that {} quantization handles", summary.mode);
    if (!summary.regions.empty() && std::all_of(summary.regions.begin(), summary.regions.end(),
                                                [](const quant::RegionRecord& r) { return r.kept_float; })) {
      const quant::RegionRecord* best = &summary.regions.front();
      for (const quant::RegionRecord& r : summary.regions) {
        if (r.multiply_adds && (!best->multiply_adds || *r.multiply_adds * best->cost > *best->multiply_adds * r.cost)) best = &r;
      }
      return fmt::format("every int8 region would run slower than float in ONNX Runtime's CPU kernels (--target ort-cpu): "
                         "{} region(s), the best saving {:.2g} multiply-adds per sample where its conversions and int8 calls "
                         "cost {:.2g} (--target portable quantizes anyway)",
                         summary.regions.size(), static_cast<double>(best->multiply_adds.value_or(0)), static_cast<double>(best->cost));
    }
    std::map<std::string, int> reasons;
    for (const auto& [node, why] : summary.skipped) ++reasons[why];
    std::vector<std::pair<int, std::string>> sorted;
    for (const auto& [why, n] : reasons) sorted.emplace_back(n, why);
    std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<std::string> parts;
    for (size_t i = 0; i < sorted.size() && i < 3; ++i) parts.push_back(fmt::format("{} node(s): {}", sorted[i].first, sorted[i].second));
    return fmt::format("0 of {} candidate node(s) quantized ({})", summary.skipped.size(), fmt::join(parts, "; "));
  }

  // Static and dynamic quantization write operators newer than old exports import; such models are
  // upgraded (upgrade-opset=true) to the opset the written operators need and no further: per-tensor
  // QuantizeLinear is opset 10, DynamicQuantizeLinear 11, a per-channel axis 13. The report says so.
  void upgrade_opset_if_needed(ir::Model& model, const quant::QuantizeConfig& config, pass::PassContext& ctx,
                               nlohmann::json& details) {
    const int64_t need = config.mode == quant::Mode::Dynamic ? 11
                         : config.mode == quant::Mode::Static ? quant::static_qdq_opset(config)
                         : config.output_format() == quant::Format::QDQ ? 21 : 0;  // weight-only: blocked DequantizeLinear
    const int64_t have = model.opset(), ir_version = model.ir_version();
    if (!options_.get_bool("upgrade-opset")) return;
    if (have < need) {
      convert::convert_opset(model, need);
      const bool per_channel = config.mode == quant::Mode::Static && config.per_channel;
      const char* with = config.mode == quant::Mode::WeightOnly ? " with format=qdq"
                         : config.mode == quant::Mode::Static && need == 21 ? " with 16-bit activations" : "";
      ctx.warn(fmt::format("upgraded the model from opset {} to {} ({}{} quantization{} needs it)", have, need, quant::name(config.mode),
                           per_channel ? " per-channel" : "", with));
      details["opset_upgrade"] = {{"from", have}, {"to", need}};
    }
    // An opset upgrade of an IR 3 model already left IR 3 (convert_opset); either way the report says so.
    if (convert::upgrade_ir_version(model, kUpgradeIrVersion) || (ir_version < 4 && model.ir_version() >= 4)) {
      ctx.warn(fmt::format("upgraded IR version {} to {}: initializers are no longer listed as graph inputs, so they can be "
                           "quantized", ir_version, model.ir_version()));
      details["ir_version_upgrade"] = {{"from", ir_version}, {"to", model.ir_version()}};
    }
  }

  quant::CalibrationTable calibrate(const ir::Model& model, const quant::QuantizeConfig& config, const eval::Evaluation* evaluation) const {
    const std::string& data_path = options_.get_string("data");
    if (data_path.empty()) usage_error("quantize(mode=static) needs calibration data: data=PATH");
    const double percentile = options_.get_float("percentile");
    if (!(percentile > 0 && percentile <= 100)) usage_error("percentile must be in (0, 100], not {}", percentile);
    std::vector<data::Feeds> samples = eval::load_calibration(model, data_path, evaluation);
    const int64_t limit = options_.get_int("max-samples");
    if (limit > 0 && static_cast<int64_t>(samples.size()) > limit) samples.resize(static_cast<size_t>(limit));
    quant::CalibrationOptions calibration;
    calibration.method = quant::parse_calibration_method(options_.get_string("calibration"));
    calibration.percentile = options_.get_float("percentile");
    calibration.threads = evaluation ? evaluation->threads : 0;  // --threads, as for the accuracy check
    calibration.channel_means_of = quant::bias_correction_inputs(model, config);  // empty without bias-correction
    quant::CalibrationTable table = quant::calibrate(model, samples, calibration);
    quant::apply_range_overrides(table, range_overrides_);
    return table;
  }

  // Nodes to keep float and tensors with settings of their own must exist (a typo would quantize them
  // silently), checked before the opset upgrade and calibration spend their time; tensor settings need static mode.
  void check_names(const ir::Model& model, const quant::QuantizeConfig& config) const {
    if (config.mode != quant::Mode::Static &&
        (!overrides_.tensor_types.empty() || !overrides_.tensor_ranges.empty() || !overrides_.tensor_symmetry.empty()))
      usage_error("the overrides file's \"tensors\" settings apply to static quantization only (here mode={})", quant::name(config.mode));
    auto require_value = [&](const std::string& name, const char* setting) {
      if (model.graph().find_local(name) == nullptr) usage_error("{}: the main graph has no value named '{}'", setting, name);
    };
    for (const auto& [name, qtype] : config.activation_types) require_value(name, "tensor-type");
    for (const auto& [name, symmetric] : config.activation_symmetry) require_value(name, "the overrides file's tensors");
    for (const data::NamedRange& r : range_overrides_) require_value(r.name, "tensor-range");
    std::set<std::string> missing = config.exclude_nodes;
    for (const ir::Node* n : model.graph().nodes()) missing.erase(n->name());
    if (!missing.empty()) {
      const bool in_file = std::any_of(missing.begin(), missing.end(), [&](const std::string& name) { return overrides_.keep_float.count(name); });
      usage_error("{}: the main graph has no node named '{}'", in_file ? "the overrides file's keep_float" : "exclude-nodes", *missing.begin());
    }
  }

  // The configuration from the options and the overrides file.
  quant::QuantizeConfig make_config() const {
    const pass::Options& o = options_;
    quant::QuantizeConfig c;
    c.mode = quant::parse_mode(o.get_string("mode"));
    const std::string& format = o.get_string("format");
    if (!format.empty()) c.format = quant::parse_format(format);
    c.target = quant::parse_target(o.get_string("target"));
    c.per_channel = o.get_bool("per-channel");
    c.weight_type = quant::parse_qtype(o.get_string("weight-type"));
    c.activation_type = quant::parse_qtype(o.get_string("activation-type"));
    c.activation_types = tensor_types_;
    c.symmetric_weights = !o.get_bool("asymmetric-weights");
    c.symmetric_activations = o.get_bool("symmetric-activations");
    c.bias_correction = o.get_bool("bias-correction");
    c.op_types = split_list(o.get_string("op-types"));
    c.exclude_nodes = split_list(o.get_string("exclude-nodes"));
    c.exclude_nodes.insert(overrides_.keep_float.begin(), overrides_.keep_float.end());
    c.activation_types.insert(overrides_.tensor_types.begin(), overrides_.tensor_types.end());  // equal to the flag's where both
    c.activation_symmetry = overrides_.tensor_symmetry;
    c.exclude_op_types = split_list(o.get_string("exclude-op-types"));
    c.keep_first = o.get_bool("keep-first");
    c.keep_last = o.get_bool("keep-last");
    c.bits = static_cast<int>(o.get_int("bits"));
    c.block_size = o.get_int("block-size");
    c.block_search = o.get_string("block-search") == "mse";
    c.accuracy_level = o.get_int("accuracy-level");
    return c;
  }

 private:
  pass::Options options_;
  std::vector<data::NamedRange> range_overrides_;  // tensor-range and the file's ranges, checked when the pipeline is parsed
  std::map<std::string, int32_t> tensor_types_;    // tensor-type, parsed with the pipeline
  quant::Overrides overrides_;                     // the overrides file, read when the pipeline is parsed
};

}  // namespace

const std::vector<pass::OptionSpec>& QuantizeOptions() {
  using T = pass::OptionSpec::Type;
  static const std::vector<pass::OptionSpec> specs = {
      {"mode", T::Choice, "dynamic", "dynamic (no data), static (calibrated activations) or weight-only (MatMul blocks)", {"dynamic", "static", "weight-only"}},
      {"format", T::Choice, "", "static: qdq (QuantizeLinear/DequantizeLinear pairs, the default) or qoperator (QLinear operators); weight-only: qoperator (com.microsoft MatMulNBits, the default) or qdq (blocked DequantizeLinear, opset 21, any runtime)", {"qdq", "qoperator"}, "mode=static|weight-only"},
      {"target", T::Choice, "ort-cpu", "where the model runs: ort-cpu keeps float the Conv/MatMul/Gemm whose int8 kernels ONNX Runtime's CPU runs slower than float; portable quantizes all the mode handles", {"ort-cpu", "portable"}, "mode=dynamic|static"},
      {"data", T::String, "", "calibration data for static mode (.npy/.npz/.pb file or folder)", {}, "mode=static"},
      {"max-samples", T::Int, "0", "use at most this many calibration samples (0: all)", {}, "mode=static", 0},
      {"calibration", T::Choice, "minmax", "activation range method", {"minmax", "percentile", "entropy", "mse"}, "mode=static"},
      {"percentile", T::Float, "99.999", "percentile of |x| kept by calibration=percentile", {}, "calibration=percentile", 0, 100},
      {"per-channel", T::Bool, "false", "one weight scale per output channel", {}, "mode=dynamic|static"},
      {"weight-type", T::Choice, "int8", "quantized weight type", {"int8", "uint8"}, "mode=dynamic|static"},
      {"activation-type", T::Choice, "uint8", "quantized activation type (static mode)", {"uint8", "int8"}, "mode=static"},
      {"asymmetric-weights", T::Bool, "false", "weights with a zero point instead of symmetric ranges", {}},
      {"symmetric-activations", T::Bool, "false", "activations with symmetric ranges", {}, "mode=static"},
      {"tensor-range", T::String, "", "ranges that replace the calibrated ones, per activation tensor: 'NAME=LO:HI,NAME=LO:HI'", {}, "mode=static"},
      {"tensor-type", T::String, "", "activation tensors with their own quantized type, e.g. one whose range int8 cannot resolve: 'NAME=int16,NAME=uint16' (int8, uint8, int16, uint16; 16 bits need opset 21 and run as float operators between 16-bit QuantizeLinear/DequantizeLinear)", {}, "mode=static"},
      {"overrides", T::String, "", "a JSON file of per-node and per-tensor settings: {\"keep_float\": [NODE, ...], \"tensors\": {NAME: {\"type\": \"int16\", \"range\": [LO, HI], \"symmetric\": true}}} (as exclude-nodes, tensor-type, tensor-range and a tensor's own symmetry; tensors only in static mode)", {}},
      {"bias-correction", T::Bool, "false", "add the mean output shift of each layer's rounded weights (from the calibration data) back to its bias", {}, "mode=static"},
      {"op-types", T::String, "", "comma-separated operator types to quantize (default: the mode's)", {}},
      {"exclude-nodes", T::String, "", "comma-separated node names to keep in float", {}},
      {"exclude-op-types", T::String, "", "comma-separated operator types to keep in float", {}},
      {"keep-first", T::Bool, "false", "keep the first Conv/MatMul/Gemm in float", {}},
      {"keep-last", T::Bool, "false", "keep the last Conv/MatMul/Gemm in float", {}},
      {"bits", T::Int, "4", "weight-only: bits per weight (4 or 8)", {}, "mode=weight-only"},
      {"block-size", T::Int, "32", "weight-only: weights per block along K (power of two >= 16)", {}, "mode=weight-only"},
      {"block-search", T::Choice, "none", "weight-only: each block's range as is (none), or shrunk to the factor in [0.525, 1] whose codes give the least squared error on the block's weights (mse; the report gives both errors)", {"none", "mse"}, "mode=weight-only"},
      {"max-accuracy-drop", T::Float, "-1", "keep the most sensitive layers in float until the accuracy drop (percentage points) is within this; needs the accuracy check (-1: off)", {}},
      {"min-cosine", T::Float, "-2", "keep the most sensitive layers in float until every output's cosine similarity to the float model is at least this (any model, no labels needed); needs the accuracy check (-2: off)", {}, "", -2, 1},
      {"upgrade-opset", T::Bool, "true", "upgrade models below the opset the written operators need, to that opset (10 static, 11 dynamic, 13 per-channel, 21 16-bit activations or weight-only qdq)", {}},
      {"accuracy-level", T::Int, "0", "weight-only: MatMulNBits accuracy_level (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8)", {}, "mode=weight-only", 0, 4},
  };
  return specs;
}

std::unique_ptr<pass::Pass> createQuantize(const pass::Options& options) { return std::make_unique<QuantizePass>(options); }

}  // namespace mopt::passes
