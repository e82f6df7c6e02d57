// Weight-only quantization of embedding tables: a Gather from a constant float [V, D] table becomes a
// Gather from an int8 table with one symmetric scale per row, in standard ONNX operators (opset 13), so any
// runtime runs it and only the gathered rows are ever converted back to float.
//
//   Before:  ids -> Gather(E [V, D] float, axis=0) -> y
//   After:   ids -> Gather(E_q [V, D] int8) -> Cast(float) -> Mul -> y
//            ids -> Gather(E_scale [V, 1] float) -------------^
//
// Rows are quantized to [-127, 127] with scale max|row| / 127 (a zero row gets scale 1). A table holding NaN or
// infinite values, or one that other operators also read (tied input/output embeddings) is left alone: quantizing it would keep a float copy
// beside the int8 one. 4 bits would need DequantizeLinear with int4 blocks (opset 21), so tables are int8
// whatever --bits says for MatMul.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "exec/array.h"
#include "quant/params.h"
#include "quant/quantize.h"
#include "rewrite/rewrite.h"
#include "util/error.h"

namespace mopt::quant {
using namespace ::mopt::rewrite;
namespace d = ir::dtype;

bool is_embedding_gather(const ir::Node& node) {
  if (!node.is_op("Gather") || !node.is_default_domain() || node.input(0) == nullptr || node.input(1) == nullptr) return false;
  const ir::Tensor* table = node.input(0)->constant();
  return table != nullptr && table->dtype() == d::kFloat && table->dims().size() == 2 && !node.input(1)->constant() &&
         (node.attribute_int("axis").value_or(0) == 0 || node.attribute_int("axis").value_or(0) == -2);
}

namespace {

struct QuantizedTable {
  ir::Value* values;  // int8 [V, D]
  ir::Value* scales;  // float [V, 1]
};

bool all_finite(const ir::Value* table) {
  exec::Array holder;
  const std::span<const float> values = float_span(*table->constant(), holder);
  return std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); });
}

QuantizedTable quantize_table(ir::Graph& g, ir::Value* table, QuantizeSummary& summary) {
  const std::vector<int64_t> dims = table->constant()->dims();
  const int64_t rows = dims[0], cols = dims[1];
  exec::Array holder;
  const std::span<const float> values = float_span(*table->constant(), holder);
  exec::Array q = exec::Array::uninitialized(d::kInt8, {rows, cols});
  exec::Array s = exec::Array::uninitialized(d::kFloat, {rows, 1});
  int8_t* qv = q.data<int8_t>();
  float* sv = s.data<float>();
  double rmin = 0, rmax = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = values.data() + r * cols;
    float absmax = 0;
    for (int64_t c = 0; c < cols; ++c) {
      absmax = std::max(absmax, std::fabs(row[c]));
      rmin = std::min(rmin, static_cast<double>(row[c]));
      rmax = std::max(rmax, static_cast<double>(row[c]));
    }
    const float scale = absmax > 0 ? absmax / 127.0f : 1.0f;
    sv[r] = scale;
    for (int64_t c = 0; c < cols; ++c)
      qv[r * cols + c] = static_cast<int8_t>(std::clamp(std::nearbyint(row[c] / scale), -127.0f, 127.0f));
  }
  TensorRecord rec{table->name(), "weight", "int8 (Gather rows)", "minmax, symmetric per row", {}, {0}, 0, 0, rmin, rmax, rmin, rmax};
  // The report keeps a few scales, not one per row of a 30k-row vocabulary.
  for (int64_t r = 0; r < std::min<int64_t>(rows, 16); ++r) rec.scale.push_back(sv[r]);
  summary.tensors.push_back(std::move(rec));
  return {add_constant(g, table->name() + "_int8", std::move(q)), add_constant(g, table->name() + "_row_scale", std::move(s))};
}

}  // namespace

void quantize_gathers(ir::Model& model, const std::vector<ir::Node*>& nodes, QuantizeSummary& summary) {
  ir::Graph& g = model.graph();
  const std::set<const ir::Node*> selected(nodes.begin(), nodes.end());
  std::map<ir::Value*, QuantizedTable> done;  // tables shared by several Gathers are quantized once
  std::vector<ir::Value*> old_tables;
  for (ir::Node* node : nodes) {
    ir::Value* table = node->input(0);
    const bool shared_elsewhere = table->is_graph_output() || std::any_of(table->uses().begin(), table->uses().end(), [&](const ir::Use& u) {
                                    return !selected.count(u.node);
                                  });
    if (shared_elsewhere) {
      summary.skipped.emplace_back(describe(*node), "its table is also read by other operators (quantizing it would keep a float copy)");
      continue;
    }
    if (!done.count(table) && !all_finite(table)) {
      summary.skipped.emplace_back(describe(*node), "its table holds NaN or infinite values");
      continue;
    }
    ir::Value* y = node->output(0);
    const std::string y_name = y->name();
    auto [it, fresh] = done.try_emplace(table);
    if (fresh) {
      it->second = quantize_table(g, table, summary);
      old_tables.push_back(table);
    }
    ir::Value* ids = node->input(1);
    ir::Node* gq = g.create_node("Gather", {it->second.values, ids}, 1, node, "", y_name + "_int8");
    ir::Node* cast = g.create_node("Cast", {gq->output(0)}, 1, node, "", y_name + "_float");
    set_int_attr(*cast, "to", d::kFloat);
    ir::Node* gs = g.create_node("Gather", {it->second.scales, ids}, 1, node, "", y_name + "_row_scale");
    ir::Node* mul = g.create_node("Mul", {cast->output(0), gs->output(0)}, 1, node, "", y_name + "_dequantized");
    const std::string base = node->name().empty() ? "Gather" : node->name();
    gq->mutable_proto().set_name(model.fresh_name(base + "_int8"));
    cast->mutable_proto().set_name(model.fresh_name(base + "_cast"));
    gs->mutable_proto().set_name(model.fresh_name(base + "_row_scale"));
    mul->mutable_proto().set_name(model.fresh_name(base + "_dequantize"));
    summary.layers.push_back(LayerRecord::of(*node, y_name, mul->output(0)->name()));
    if (!g.replace_all_uses(y, mul->output(0))) fail("quantize: could not rewire the output of '{}'", describe(*node));
    g.erase(node);
  }
  if (!done.empty())
    summary.notes.push_back(fmt::format("{} embedding table(s) stored as int8 rows with one scale each (Gather, Cast, Mul: standard "
                                        "operators; symmetric whatever --asymmetric-weights says for MatMul; 4-bit tables would need opset 21)", done.size()));
  remove_unused_weights(g, old_tables);
}

}  // namespace mopt::quant
