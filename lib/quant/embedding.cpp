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
#include <optional>
#include <set>

#include "exec/array.h"
#include "exec/parallel.h"
#include "quant/params.h"
#include "quant/quantize.h"
#include "rewrite/rewrite.h"
#include "util/error.h"
#include "util/file.h"

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

// Quantizes the table row by row, reading it in blocks of whole rows (mopt::for_each_block: from the file
// when it lies in the mapped model, so the table being replaced is never faulted in, nor copied whole).
// Rows are spread over the threads. A table holding NaN or infinite values is left alone: nothing is added
// to the graph and nullopt is returned.
std::optional<QuantizedTable> quantize_table(ir::Graph& g, ir::Value* table, QuantizeSummary& summary) {
  const std::vector<int64_t> dims = table->constant()->dims();
  const int64_t rows = dims[0], cols = dims[1];
  const ir::Bytes bytes = table->constant()->data();
  const size_t row_bytes = static_cast<size_t>(cols) * sizeof(float);
  if (bytes.size() != static_cast<uint64_t>(rows) * row_bytes)
    fail("tensor '{}' holds {} bytes but its shape needs {}", table->name(), bytes.size(), static_cast<uint64_t>(rows) * row_bytes);
  exec::Array q = exec::Array::uninitialized(d::kInt8, {rows, cols});
  exec::Array s(d::kFloat, {rows, 1});
  int8_t* qv = q.data<int8_t>();
  float* sv = s.data<float>();
  std::vector<float> row_min(static_cast<size_t>(rows), 0.0f), row_max(static_cast<size_t>(rows), 0.0f);
  std::vector<uint8_t> row_finite(static_cast<size_t>(rows), 1);
  auto quantize_row = [&](int64_t r, const float* row) {
    float absmax = 0, lo = 0, hi = 0;
    bool finite = true;
    for (int64_t c = 0; c < cols; ++c) {
      finite &= std::isfinite(row[c]);
      absmax = std::max(absmax, std::fabs(row[c]));
      lo = std::min(lo, row[c]);
      hi = std::max(hi, row[c]);
    }
    row_finite[static_cast<size_t>(r)] = finite;
    row_min[static_cast<size_t>(r)] = lo;
    row_max[static_cast<size_t>(r)] = hi;
    if (!finite) return;
    const float scale = absmax > 0 ? absmax / 127.0f : 1.0f;
    sv[r] = scale;
    int8_t* out = qv + r * cols;
    for (int64_t c = 0; c < cols; ++c)  // |row[c] / scale| is 127 and a rounding error at most
      out[c] = static_cast<int8_t>(std::clamp(round_half_even(row[c] / scale), -127.0f, 127.0f));
  };
  bool finite = true;
  const size_t rows_per_block = std::max<size_t>(1, (size_t{1} << 20) / std::max<size_t>(row_bytes, 1));
  if (row_bytes > 0) {
    mopt::for_each_block(bytes.span(), rows_per_block * row_bytes, [&](size_t offset, std::span<const std::byte> block) {
      if (!finite) return;
      const auto first = static_cast<int64_t>(offset / row_bytes), count = static_cast<int64_t>(block.size() / row_bytes);
      const auto* values = reinterpret_cast<const float*>(block.data());
      exec::parallel_for(count, cols * 4, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) quantize_row(first + r, values + r * cols);
      });
      for (int64_t r = first; r < first + count; ++r) finite &= row_finite[static_cast<size_t>(r)] != 0;
    });
  }
  if (!finite) return std::nullopt;
  double rmin = 0, rmax = 0;
  for (size_t r = 0; r < row_min.size(); ++r) {
    rmin = std::min(rmin, static_cast<double>(row_min[r]));
    rmax = std::max(rmax, static_cast<double>(row_max[r]));
  }
  TensorRecord rec{table->name(), "weight", "int8 (Gather rows)", "minmax, symmetric per row", {}, {0}, 0, 0, rmin, rmax, rmin, rmax};
  // The report keeps a few scales, not one per row of a 30k-row vocabulary.
  for (int64_t r = 0; r < std::min<int64_t>(rows, 16); ++r) rec.scale.push_back(sv[r]);
  summary.tensors.push_back(std::move(rec));
  return QuantizedTable{add_constant(g, table->name() + "_int8", std::move(q)), add_constant(g, table->name() + "_row_scale", std::move(s))};
}

}  // namespace

void quantize_gathers(ir::Model& model, const std::vector<ir::Node*>& nodes, QuantizeSummary& summary) {
  ir::Graph& g = model.graph();
  const std::set<const ir::Node*> selected(nodes.begin(), nodes.end());
  std::map<ir::Value*, QuantizedTable> done;  // tables shared by several Gathers are quantized once
  std::set<ir::Value*> not_finite;
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
    auto it = done.find(table);
    if (it == done.end() && !not_finite.count(table)) {
      if (std::optional<QuantizedTable> quantized = quantize_table(g, table, summary)) {
        it = done.emplace(table, *quantized).first;
        old_tables.push_back(table);
      } else {
        not_finite.insert(table);
      }
    }
    if (it == done.end()) {
      summary.skipped.emplace_back(describe(*node), "its table holds NaN or infinite values");
      continue;
    }
    ir::Value* y = node->output(0);
    const std::string y_name = y->name();
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
