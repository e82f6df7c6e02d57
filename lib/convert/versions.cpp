// Opset conversion through ONNX's version converter (and mopt's own adapter from 17 to 21), and IR versions; see versions.h.
#include "convert/versions.h"

#include <onnx/version_converter/convert.h>

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "ir/proto.h"
#include "ir/validate.h"
#include "ir/verify.h"
#include "rewrite/rewrite.h"
#include "util/error.h"

namespace mopt::convert {

namespace {

constexpr uint64_t kInlineLimit = 1 << 16;  // payloads above this skip the converter (see convert_opset)

// The converter's assertion text without its source location ("./onnx/version_converter/...: adapt:
// Assertion `false` failed: No Previous Version of LayerNormalization exists"), reworded where known.
std::string converter_complaint(const std::string& what) {
  std::string message = one_line(what);
  if (auto at = message.find("failed: "); at != std::string::npos) message = message.substr(at + 8);
  // "<prefix><number> for <op>" and "No Previous Version of <op> exists"
  auto after = [&](const std::string& prefix, std::string& version, std::string& op) {
    const size_t at = message.find(prefix);
    if (at == std::string::npos) return false;
    const size_t number = at + prefix.size(), end = message.find(' ', number);
    const size_t for_at = message.find(" for ", number);
    if (end == std::string::npos || for_at == std::string::npos) return false;
    version = message.substr(number, end - number);
    op = message.substr(for_at + 5);
    return true;
  };
  std::string version, op;
  if (after("No Adapter To Version $", version, op)) return fmt::format("it has no adapter for {} to opset {}", op, version);
  if (after("No Adapter From Version $", version, op)) return fmt::format("it has no adapter for {} from opset {}", op, version);
  const std::string previous = "No Previous Version of ";
  if (const size_t at = message.find(previous); at != std::string::npos) {
    const size_t start = at + previous.size(), end = message.find(' ', start);
    return fmt::format("{} does not exist in the older opset", message.substr(start, end - start));
  }
  return message;
}

// ONNX's converter on `model`, as a new model (a copy at the same opset when `target` is its own). Weights travel through the converter as one-byte
// placeholders (export_for_analysis) and come back by name as the same shared bytes: the conversion
// never copies them (on a 435 MB model the peak went from 1.5 GB to the model's size). Unnamed large
// Constant tensors would not be found again, so a model with any goes through whole.
std::unique_ptr<ir::Model> run_converter(const ir::Model& model, int64_t target) {
  std::map<std::string, ir::Bytes> weights;
  bool all_named = true;
  model.for_each_graph([&](const ir::Graph& g) {
    for (const ir::Value* v : g.initializers()) {
      if (v->initializer()->raw().size() > kInlineLimit) weights.emplace(v->initializer()->name(), v->initializer()->raw());
    }
    for (const ir::Node* n : g.nodes()) {
      for (const ir::Attribute& a : n->attributes()) {
        if (!a.tensor || a.tensor->raw().size() <= kInlineLimit) continue;
        if (a.tensor->name().empty() || weights.count(a.tensor->name())) all_named = false;
        weights.emplace(a.tensor->name(), a.tensor->raw());
      }
    }
  });
  onnx::ModelProto converted = all_named ? ir::export_for_analysis(model, kInlineLimit) : ir::export_model(model);
  try {
    if (model.opset() != target) converted = onnx::version_conversion::ConvertVersion(converted, static_cast<int>(target));
  } catch (const std::exception& e) {
    fail("cannot convert the model from opset {} to {} with ONNX's version converter: {}", model.opset(), target,
         converter_complaint(e.what()));
  }
  return ir::import_model(std::move(converted), [&](const onnx::TensorProto& shell) {
    std::optional<ir::Bytes> payload;
    if (!all_named || shell.raw_data().size() != 1) return payload;
    if (auto it = weights.find(shell.name()); it != weights.end()) payload = it->second;
    return payload;
  });
}

bool is_softmax_family(const ir::Node& node) {
  return node.is_default_domain() && (node.is_op("Softmax") || node.is_op("LogSoftmax") || node.is_op("Hardmax"));
}

// Softmax, LogSoftmax and Hardmax up to opset 12 coerce their input to 2-D at `axis` (default 1) and
// normalize each row; from opset 13 they normalize along `axis` (default -1) alone. ONNX's adapter
// rewrites the old form with a Reshape to the input's static shape, so it fails ("input shape is
// unknown") on unshaped inputs and writes a wrong Reshape for symbolic dims. This rewrite, at opset 12,
// leaves the adapter nothing to do:
//
//   last axis:  Softmax(axis=a)  ->  Softmax(axis=-1)                      (same rows either way)
//   otherwise:  y = Softmax(x, axis=a)  ->  y = Reshape(Softmax(Flatten(x, axis=a), axis=-1), Shape(x))
void prepare_softmax_for_opset13(ir::Model& model) {
  model.for_each_graph([](ir::Graph& g) {
    for (ir::Node* n : g.nodes()) {
      if (!is_softmax_family(*n) || n->input(0) == nullptr) continue;
      const int64_t axis = rewrite::attr_int(*n, "axis", 1);
      const std::optional<size_t> rank = rewrite::rank_of(*n->input(0));
      if (axis == -1 || (rank && axis == static_cast<int64_t>(*rank) - 1)) {
        rewrite::set_int_attr(*n, "axis", -1);
        continue;
      }
      ir::Value* x = n->input(0);
      ir::Node* flatten = g.create_node("Flatten", {x}, 1, n, "", x->name() + "_rows");
      rewrite::set_int_attr(*flatten, "axis", axis);
      ir::Node* rows = g.create_node(n->op_type(), {flatten->output(0)}, 1, n, "", n->output(0)->name() + "_rows");
      rewrite::set_int_attr(*rows, "axis", -1);
      rows->mutable_proto().set_name(n->name());
      ir::Node* shape = g.create_node("Shape", {x}, 1, n, "", x->name() + "_shape");
      ir::Node* reshape = g.create_node("Reshape", {rows->output(0), shape->output(0)}, 1, n, "", n->output(0)->name());
      if (!g.replace_all_uses(n->output(0), reshape->output(0)))
        fail("internal error: cannot rewire the output of {} '{}' for opset 13", n->op_type(), n->name());
      g.erase(n);
    }
  });
}

// Opset 17 -> 18..21, which ONNX 1.12's converter does not know. Between them only these operators
// changed in a way an existing model notices; the others gained types, attributes with the old
// behaviour as default, or optional inputs (Pad, Resize, Cast, Scatter*, AveragePool, QuantizeLinear, ...):
//
//   18  ReduceL1/L2/LogSum/LogSumExp/Max/Mean/Min/Prod/SumSquare(x, axes=[1])  ->  Reduce*(x, [1])
//       Split(x) into n outputs (equal parts, no split input)                ->  Split(x, num_outputs=n)
//   20  GridSample(mode=bilinear|bicubic)                                     ->  GridSample(mode=linear|cubic)
//       DFT(axis=a): the axis became an input; not supported (refused with its name)
//   21  GroupNormalization: scale and bias per channel instead of per group; an opset-17 model has none
//       (it arrived at 18), a newer one is refused
void adapt_beyond_17(ir::Model& model, int64_t from, int64_t target) {
  static const std::set<std::string> kReduceAxesToInput = {"ReduceL1",  "ReduceL2",  "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
                                                           "ReduceMean", "ReduceMin", "ReduceProd",   "ReduceSumSquare"};
  auto crosses = [&](int64_t version) { return from < version && target >= version; };
  // Refusals first, so a refused model is left as it was.
  model.for_each_graph([&](const ir::Graph& g) {
    for (const ir::Node* n : g.nodes()) {
      if (!n->is_default_domain()) continue;
      if (crosses(20) && n->is_op("DFT"))
        fail("not supported: converting DFT '{}' to opset {} (its axis became an input at opset 20)", n->name(), target);
      if (crosses(21) && n->is_op("GroupNormalization"))
        fail("not supported: converting GroupNormalization '{}' to opset {} (its scale and bias became per channel at opset 21)",
             n->name(), target);
    }
  });
  model.for_each_graph([&](ir::Graph& g) {
    for (ir::Node* n : g.nodes()) {
      if (!n->is_default_domain()) continue;
      if (crosses(18) && kReduceAxesToInput.count(n->op_type()) && n->attribute("axes") != nullptr) {
        const std::vector<int64_t> axes = rewrite::attr_ints(*n, "axes");
        exec::Array axes_array(ir::dtype::kInt64, {static_cast<int64_t>(axes.size())});
        std::copy(axes.begin(), axes.end(), axes_array.data<int64_t>());
        n->add_input(rewrite::add_constant(g, n->output(0)->name() + "_axes", std::move(axes_array)));
        rewrite::remove_attr(*n, "axes");
      }
      if (crosses(18) && n->is_op("Split") && n->input(1) == nullptr && n->attribute("num_outputs") == nullptr)
        rewrite::set_int_attr(*n, "num_outputs", static_cast<int64_t>(n->outputs().size()));
      if (crosses(20) && n->is_op("GridSample")) {
        const std::string mode = rewrite::attr_string(*n, "mode", "bilinear");
        if (mode == "bilinear" || mode == "bicubic") rewrite::set_string_attr(*n, "mode", mode == "bilinear" ? "linear" : "cubic");
      }
    }
  });
  for (auto& op : *model.mutable_proto().mutable_opset_import()) {
    if (op.domain().empty() || op.domain() == "ai.onnx") op.set_version(target);
  }
}

// The model converted by ONNX's converter to `target` (<= 17), Softmax and its kin crossing opset 13 by
// mopt's own rewrite (prepare_softmax_for_opset13).
std::unique_ptr<ir::Model> converted_by_onnx(const ir::Model& model, int64_t target) {
  bool has_softmax = false;
  model.for_each_graph([&](const ir::Graph& g) {
    for (const ir::Node* n : g.nodes()) has_softmax |= is_softmax_family(*n);
  });
  if (model.opset() < 13 && target >= 13 && has_softmax) {
    // Up to opset 12 with ONNX's converter, Softmax and its kin by mopt's own rewrite, then on.
    std::unique_ptr<ir::Model> result = run_converter(model, 12);
    prepare_softmax_for_opset13(*result);
    return run_converter(*result, target);
  }
  return run_converter(model, target);
}

}  // namespace

bool convert_opset(ir::Model& model, int64_t target) {
  ir::validate_model(model);  // the converter runs ONNX's shape inference
  const int64_t current = model.opset();
  if (current == target) return false;
  if (target < 1 || target > kNewestOpset) {
    usage_error("opset {}: mopt converts between opsets 1 and {} (with ONNX 1.12's converter up to 17, its own adapter above)",
                target, kNewestOpset);
  }
  if (current > 17 && target < current)
    usage_error("not supported: converting down from opset {} (ONNX 1.12's converter reads opsets up to 17)", current);
  if (target <= 17) {
    model.replace_with(std::move(*converted_by_onnx(model, target)));
  } else if (current < 17) {
    std::unique_ptr<ir::Model> result = converted_by_onnx(model, 17);
    adapt_beyond_17(*result, 17, target);  // may refuse: the model is then unchanged
    model.replace_with(std::move(*result));
  } else {
    adapt_beyond_17(model, current, target);  // refuses before it changes anything
  }
  // IR 3 lists initializers as inputs; newer IR versions treat those as overridable inputs, so leaving
  // IR 3 also stops listing them (see upgrade_ir_version).
  const int64_t needed = min_ir_version_for_opset(target);
  if (model.ir_version() < needed && !upgrade_ir_version(model, needed)) model.mutable_proto().set_ir_version(needed);
  return true;
}

int64_t min_ir_version_for_opset(int64_t opset) {
  // onnx/helper.py VERSION_TABLE: (opset, IR version) of each ONNX release.
  static constexpr std::pair<int64_t, int64_t> kReleases[] = {{8, 3},   {9, 4},   {10, 5},  {11, 6},
                                                              {14, 7},  {18, 8},  {20, 9},  {22, 10}};
  for (const auto& [last_opset, ir] : kReleases) {
    if (opset <= last_opset) return ir;
  }
  return 11;
}

bool upgrade_ir_version(ir::Model& model, int64_t target) {
  if (model.ir_version() >= 4 || target < 4) return false;
  model.for_each_graph([](ir::Graph& g) {
    for (ir::Value* v : std::vector<ir::Value*>(g.inputs())) {
      if (v->initializer()) g.remove_input_of_initializer(v);
    }
  });
  model.mutable_proto().set_ir_version(target);
  return true;
}

void set_ir_version(ir::Model& model, int64_t target) {
  const int64_t needed = std::max<int64_t>(4, min_ir_version_for_opset(model.opset()));
  if (target < needed) {
    usage_error("IR version {} is too old for this model: opset {} needs IR {} or newer (and mopt writes IR 4 or newer)",
                target, model.opset(), needed);
  }
  if (target > 11) usage_error("IR version {}: the newest IR version mopt knows is 11", target);
  if (model.ir_version() < 4) upgrade_ir_version(model, target);
  model.mutable_proto().set_ir_version(target);
}

}  // namespace mopt::convert
