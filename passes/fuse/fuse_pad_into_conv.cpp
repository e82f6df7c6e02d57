// fuse-pad-into-conv: folds an explicit constant Pad of the spatial axes into the pads attribute of the
// Conv, AveragePool or MaxPool that reads it.
//
//   Before:  x[N,C,H,W] -> Pad(pads=[0,0,1,1, 0,0,1,1], value=0) -> t -> Conv(pads=[0,0,0,0]) -> y
//   After:   x -> Conv(pads=[1,1,1,1]) -> y
//
// Padding inside the operator is the same as padding before it when the padded value is what the
// operator pads with: 0 for Conv; 0 for AveragePool with count_include_pad=1 (the padded zeros are
// counted either way); -inf for MaxPool. Conditions: constant mode; constant, non-negative pads that
// leave the batch and channel axes alone; t feeds only the consumer; the consumer uses explicit pads
// (auto_pad NOTSET); a MaxPool's Indices output is unused (indices would refer to another tensor).
#include <cmath>
#include <limits>

#include "pass/rule.h"
#include "rewrite/rewrite.h"

namespace mopt::passes {
namespace {

struct PadInfo {
  std::vector<int64_t> pads;  // begin values for every axis, then end values
  double value = 0;
};

std::optional<PadInfo> constant_pad(const ir::Node& pad, const char** why) {
  const int64_t opset = pad.owner()->model()->opset();
  if (rewrite::attr_string(pad, "mode", "constant") != "constant") {
    *why = "not constant mode";
    return std::nullopt;
  }
  PadInfo info;
  if (opset < 11) {
    info.pads = rewrite::attr_ints(pad, "pads");
    info.value = pad.attribute_float("value").value_or(0.0f);
  } else {
    std::optional<exec::Array> p = rewrite::constant_array(pad.input(1));
    if (!p || p->dtype() != ir::dtype::kInt64) {
      *why = "its pads are not constant";
      return std::nullopt;
    }
    info.pads = p->to_int64s();
    if (pad.input(2)) {
      std::optional<exec::Array> v = rewrite::constant_array(pad.input(2));
      if (!v || v->numel() != 1) {
        *why = "its constant value is not a constant scalar";
        return std::nullopt;
      }
      info.value = v->scalar_double();
    }
    if (pad.input(3)) {
      *why = "Pad with axes is not handled";
      return std::nullopt;
    }
  }
  const size_t rank = info.pads.size() / 2;
  if (info.pads.size() % 2 != 0 || rank < 3) {
    *why = "pads do not describe a tensor with spatial axes";
    return std::nullopt;
  }
  for (int64_t p : info.pads) {
    if (p < 0) {
      *why = "negative pads (cropping) cannot become operator pads";
      return std::nullopt;
    }
  }
  if (info.pads[0] || info.pads[1] || info.pads[rank] || info.pads[rank + 1]) {
    *why = "it pads the batch or channel axis";
    return std::nullopt;
  }
  return info;
}

// Why `consumer` cannot absorb a pad with `value`, or nullptr.
const char* reason_consumer_cannot_absorb(const ir::Node& consumer, double value) {
  const std::string auto_pad = rewrite::attr_string(consumer, "auto_pad", "NOTSET");
  if (auto_pad != "NOTSET") return "the consumer uses auto_pad";
  if (consumer.is_op("Conv")) return value == 0 ? nullptr : "Conv pads with 0, the Pad with another value";
  if (consumer.is_op("AveragePool")) {
    if (rewrite::attr_int(consumer, "count_include_pad", 0) != 1) return "AveragePool does not count padding (count_include_pad=0)";
    return value == 0 ? nullptr : "AveragePool pads with 0, the Pad with another value";
  }
  if (consumer.is_op("MaxPool")) {
    if (const ir::Value* indices = consumer.output(1); indices && (indices->has_uses() || indices->is_graph_output()))
      return "MaxPool's Indices output is used";
    return std::isinf(value) && value < 0 ? nullptr : "MaxPool ignores padding; only a -inf Pad matches it";
  }
  return "not read by a Conv, AveragePool or MaxPool";
}

struct PadFusion {
  ir::Node* consumer;
  std::vector<int64_t> pads;  // the consumer's pads with the Pad's added
};

class FusePadIntoConvRule : public pass::RewriteRule<PadFusion> {
 public:
  std::vector<std::string> anchors() const override { return {"Pad"}; }
  std::string counter(const PadFusion&) const override { return "pads-fused"; }

  pass::Matched<PadFusion> match(const ir::Node& pad) const override {
    if (pad.output(0) == nullptr) return pass::no_match();
    ir::Node* consumer = rewrite::sole_consumer(*pad.output(0));
    if (consumer == nullptr || consumer->owner() != pad.owner() || consumer->input(0) != pad.output(0))
      return pass::refuse("its output is not read by exactly one operator's data input");
    const char* why = nullptr;
    std::optional<PadInfo> info = constant_pad(pad, &why);
    if (info) why = reason_consumer_cannot_absorb(*consumer, info->value);
    if (why) return pass::refuse(why);
    const size_t rank = info->pads.size() / 2, spatial = rank - 2;
    std::vector<int64_t> pads = rewrite::attr_ints(*consumer, "pads");
    if (pads.empty()) pads.assign(2 * spatial, 0);
    if (pads.size() != 2 * spatial) return pass::refuse("the consumer's pads do not match the Pad's rank");
    for (size_t i = 0; i < spatial; ++i) {
      pads[i] += info->pads[2 + i];
      pads[spatial + i] += info->pads[rank + 2 + i];
    }
    return PadFusion{consumer, std::move(pads)};
  }

  void apply(ir::Graph& graph, ir::Node& pad, const PadFusion& m) const override {
    rewrite::set_ints_attr(*m.consumer, "pads", m.pads);
    m.consumer->set_input(0, pad.input(0));
    graph.erase(&pad);
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& FusePadIntoConvOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createFusePadIntoConv(const pass::Options&) { return pass::make_rule_pass<FusePadIntoConvRule>(); }

}  // namespace mopt::passes
