// quantize: the quantization pass for pipelines, quantize(mode=dynamic|static|weight-only, ...). The
// rewrites live in lib/quant (shared with `mopt quantize`, which adds the opset upgrade, accuracy-aware
// fallback and per-layer error report around them); this file maps pass options onto them. Static mode
// calibrates on `data` with the executor first.
//
//   quantize                                       dynamic: MatMul/Gemm -> MatMulInteger
//   quantize(mode=static,data=calib/,per-channel=true,calibration=entropy)
//   quantize(mode=static,data=calib.npy,format=qoperator)
//   quantize(mode=weight-only,bits=4,block-size=32)  MatMul -> com.microsoft MatMulNBits
#include <fmt/format.h>

#include <sstream>

#include "data/feeds.h"
#include "pass/pass.h"
#include "quant/calibrate.h"
#include "quant/quantize.h"
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

class QuantizePass : public pass::Pass {
 public:
  explicit QuantizePass(const pass::Options& o) : options_(o) {}

  pass::PassResult run(ir::Model& model, pass::PassContext& ctx) override {
    quant::QuantizeConfig config = config_from(options_);
    std::optional<quant::CalibrationTable> table;
    if (config.mode == quant::Mode::Static) {
      const std::string& data_path = options_.get_string("data");
      if (data_path.empty()) usage_error("quantize(mode=static) needs calibration data: data=PATH");
      std::vector<data::Feeds> samples = data::load_samples(model, data_path);
      const int64_t limit = options_.get_int("max-samples");
      if (limit > 0 && static_cast<int64_t>(samples.size()) > limit) samples.resize(static_cast<size_t>(limit));
      quant::CalibrationOptions calibration;
      calibration.method = quant::parse_calibration_method(options_.get_string("calibration"));
      calibration.percentile = options_.get_float("percentile");
      table = quant::calibrate(model, samples, calibration);
    }
    quant::QuantizeSummary summary = quant::quantize_model(model, config, table ? &*table : nullptr);
    ctx.count("nodes-quantized", summary.nodes_quantized());
    ctx.count("nodes-skipped", static_cast<int64_t>(summary.skipped.size()));
    nlohmann::json details = quant::to_json(summary);
    if (table) details["calibration"] = {{"method", table->method}, {"samples", table->samples}, {"seconds", table->seconds}};
    ctx.set_details(std::move(details));
    for (const auto& [node, why] : summary.skipped) {
      if (ctx.explain()) fmt::print(stderr, "quantize: skipped '{}': {}\n", node, why);
    }
    return {summary.nodes_quantized() > 0};
  }

  static quant::QuantizeConfig config_from(const pass::Options& o) {
    quant::QuantizeConfig c;
    c.mode = quant::parse_mode(o.get_string("mode"));
    c.format = quant::parse_format(o.get_string("format"));
    c.per_channel = o.get_bool("per-channel");
    c.weight_type = quant::parse_qtype(o.get_string("weight-type"));
    c.activation_type = quant::parse_qtype(o.get_string("activation-type"));
    c.symmetric_weights = !o.get_bool("asymmetric-weights");
    c.symmetric_activations = o.get_bool("symmetric-activations");
    c.op_types = split_list(o.get_string("op-types"));
    c.exclude_nodes = split_list(o.get_string("exclude-nodes"));
    c.exclude_op_types = split_list(o.get_string("exclude-op-types"));
    c.keep_first = o.get_bool("keep-first");
    c.keep_last = o.get_bool("keep-last");
    c.bits = static_cast<int>(o.get_int("bits"));
    c.block_size = o.get_int("block-size");
    c.accuracy_level = o.get_int("accuracy-level");
    return c;
  }

 private:
  pass::Options options_;
};

}  // namespace

const std::vector<pass::OptionSpec>& QuantizeOptions() {
  using T = pass::OptionSpec::Type;
  static const std::vector<pass::OptionSpec> specs = {
      {"mode", T::Choice, "dynamic", "dynamic (no data), static (calibrated activations) or weight-only (MatMul blocks)", {"dynamic", "static", "weight-only"}},
      {"format", T::Choice, "qdq", "static output: QuantizeLinear/DequantizeLinear pairs or QLinear operators", {"qdq", "qoperator"}},
      {"data", T::String, "", "calibration data for static mode (.npy/.npz/.pb file or folder)", {}},
      {"max-samples", T::Int, "0", "use at most this many calibration samples (0: all)", {}},
      {"calibration", T::Choice, "minmax", "activation range method", {"minmax", "percentile", "entropy", "mse"}},
      {"percentile", T::Float, "99.999", "percentile of |x| kept by calibration=percentile", {}},
      {"per-channel", T::Bool, "false", "one weight scale per output channel", {}},
      {"weight-type", T::Choice, "int8", "quantized weight type", {"int8", "uint8"}},
      {"activation-type", T::Choice, "uint8", "quantized activation type (static mode)", {"uint8", "int8"}},
      {"asymmetric-weights", T::Bool, "false", "weights with a zero point instead of symmetric ranges", {}},
      {"symmetric-activations", T::Bool, "false", "activations with symmetric ranges", {}},
      {"op-types", T::String, "", "comma-separated operator types to quantize (default: the mode's)", {}},
      {"exclude-nodes", T::String, "", "comma-separated node names to keep in float", {}},
      {"exclude-op-types", T::String, "", "comma-separated operator types to keep in float", {}},
      {"keep-first", T::Bool, "false", "keep the first Conv/MatMul/Gemm in float", {}},
      {"keep-last", T::Bool, "false", "keep the last Conv/MatMul/Gemm in float", {}},
      {"bits", T::Int, "4", "weight-only: bits per weight (4 or 8)", {}},
      {"block-size", T::Int, "32", "weight-only: weights per block along K (power of two >= 16)", {}},
      {"accuracy-level", T::Int, "0", "weight-only: MatMulNBits accuracy_level (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8)", {}},
  };
  return specs;
}

std::unique_ptr<pass::Pass> createQuantize(const pass::Options& options) { return std::make_unique<QuantizePass>(options); }

}  // namespace mopt::passes
