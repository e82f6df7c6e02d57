// Placement for ONNX Runtime's CPU kernels (--target ort-cpu): which regions of a static QDQ model are
// worth quantizing. ONNX Runtime fuses DequantizeLinear -> op -> QuantizeLinear into an integer kernel,
// so inside a region of quantized nodes data stays int8; at the region's borders every value is
// converted (QuantizeLinear on the way in, DequantizeLinear on the way out). A region pays off when its
// Conv/MatMul/Gemm multiply-adds outweigh those conversions:
//
//   multiply_adds(region) >= kMultiplyAddsPerConvertedValue * converted_values(region)   (MatMul/Gemm count half)
//                            + kMultiplyAddsPerInt8Node * (nodes(region) + border_tensors(region))
//
//   float -> [Q] -> Conv(K=576) -> MaxPool -> Conv(K=144) -> [DQ] -> float     pays: one region, two borders
//   float -> [Q] -> MatMul(K=64) -> [DQ] -> LayerNorm -> [Q] -> MatMul ...      does not: ~32 multiply-adds
//                                                                                per converted value
// Both counts are per calibration sample, from the calibration table (values per tensor) and the weights
// (reduction depth per output). A region whose counts are unknown is kept quantized. Before that, the
// non-weighted candidates at region edges are trimmed (trim_region_edges): a pooling or Add whose output
// only float code reads would just requantize it.
#include <fmt/format.h>

#include <map>
#include <numeric>
#include <set>
#include <unordered_map>

#include "quant/quantize.h"
#include "rewrite/rewrite.h"

namespace mopt::quant {
namespace {

// Union-find over the candidate nodes.
struct Regions {
  std::vector<size_t> parent;
  explicit Regions(size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), size_t{0}); }
  size_t root(size_t i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
  }
  void join(size_t a, size_t b) { parent[root(a)] = root(b); }
};

bool is_weighted(const ir::Node& n) { return n.is_op("Conv") || n.is_op("MatMul") || n.is_op("Gemm"); }

}  // namespace

namespace {


// Non-weighted candidates (data movement, Add, Mul, Concat, pools) at a region's edge gain nothing: one
// whose output no candidate reads only requantizes a value that float code reads next (behind a head's
// Softmax or Sigmoid that rounding is what collapses accuracy); one that reads no candidate's output needs
// its inputs quantized just for itself. They are dropped until none is left at an edge.
void trim_region_edges(std::vector<ir::Node*>& nodes, QuantizeSummary& summary) {
  for (bool changed = true; changed;) {
    changed = false;
    const std::set<const ir::Node*> selected(nodes.begin(), nodes.end());
    std::set<const ir::Node*> dropped;
    for (const ir::Node* n : nodes) {
      if (is_weighted(*n)) continue;
      bool feeds = false, fed = false;
      for (const ir::Value* y : n->outputs()) {
        for (const ir::Use& u : y ? y->uses() : std::vector<ir::Use>{}) feeds |= selected.count(u.node) > 0;
      }
      for (const ir::Value* v : n->inputs()) {
        const ir::Node* p = v ? v->producer() : nullptr;
        // A Relu between a candidate and this node is folded into the candidate's output range.
        if (p && p->is_op("Relu") && p->input(0)) p = p->input(0)->producer();
        fed |= p && selected.count(p) > 0;
      }
      if (feeds && fed) continue;
      dropped.insert(n);
      summary.skipped.emplace_back(rewrite::describe(*n), !fed ? "kept in float: none of its inputs comes from a quantized node"
                                                              : "kept in float: no quantized node reads its output (requantizing it "
                                                                "would only add error)");
    }
    if (dropped.empty()) break;
    std::erase_if(nodes, [&](const ir::Node* n) { return dropped.count(n) > 0; });
    changed = true;
  }
}

}  // namespace

void keep_unprofitable_regions_float(const CalibrationTable& table, std::vector<ir::Node*>& nodes, QuantizeSummary& summary) {
  trim_region_edges(nodes, summary);
  std::unordered_map<const ir::Node*, size_t> index;
  for (size_t i = 0; i < nodes.size(); ++i) index.emplace(nodes[i], i);
  // The candidate whose int8 output `v` is: its own output, or that of the Relu right after it, which
  // the QDQ writer folds into the output's range.
  auto source = [&](const ir::Value* v) -> std::optional<size_t> {
    const ir::Node* p = v->producer();
    if (p && p->is_op("Relu") && p->input(0) && p->input(0)->producer() && p->input(0)->uses().size() == 1 &&
        !p->input(0)->is_graph_output() && !p->output(0)->is_graph_output())
      p = p->input(0)->producer();
    if (auto it = index.find(p); p && it != index.end()) return it->second;
    return std::nullopt;
  };
  // What leaves candidate `n`: its output, or the output of the Relu folded into it.
  auto result = [](const ir::Node& n) -> const ir::Value* {
    const ir::Value* y = n.output(0);
    if (!y->is_graph_output() && y->uses().size() == 1 && y->uses()[0].node->is_op("Relu") &&
        !y->uses()[0].node->output(0)->is_graph_output())
      return y->uses()[0].node->output(0);
    return y;
  };
  Regions regions(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (const ir::Value* v : nodes[i]->inputs()) {
      if (v == nullptr) continue;
      if (std::optional<size_t> from = source(v)) regions.join(i, *from);
    }
  }
  std::map<size_t, std::vector<size_t>> members;  // root -> node indices in graph order
  for (size_t i = 0; i < nodes.size(); ++i) members[regions.root(i)].push_back(i);

  auto elements = [&](const ir::Value* v) -> std::optional<int64_t> {
    const TensorRange* r = table.find(v->name());
    if (r == nullptr || r->elements <= 0) return std::nullopt;
    return r->elements;
  };
  std::set<const ir::Node*> dropped;
  for (const auto& [root, list] : members) {
    const size_t region_root = root;
    RegionRecord record;
    std::optional<int64_t> multiply_adds = 0;
    std::set<const ir::Value*> borders;
    for (size_t i : list) {
      const ir::Node& n = *nodes[i];
      record.nodes.push_back(rewrite::describe(n));
      for (const ir::Value* v : n.inputs()) {
        if (v == nullptr || v->constant()) continue;
        const std::optional<size_t> from = source(v);
        if (!from || regions.root(*from) != region_root) borders.insert(v);
      }
      const ir::Value* y = result(n);
      bool leaves = y->is_graph_output();
      for (const ir::Use& u : y->uses()) {
        leaves |= !index.count(u.node) || regions.root(index.at(u.node)) != region_root;
      }
      if (leaves) borders.insert(y);
      // A Conv whose output is a graph output keeps it float, and ONNX Runtime then runs it in float.
      if (!is_weighted(n) || !multiply_adds || (n.is_op("Conv") && n.output(0)->is_graph_output())) continue;
      const std::optional<int64_t> depth = reduction_depth(n), outputs = elements(n.output(0));
      if (depth && outputs) *multiply_adds += *depth * *outputs / (n.is_op("Conv") ? 1 : kMatMulSavingsDivisor);
      else multiply_adds.reset();
    }
    for (const ir::Value* v : borders) {
      if (std::optional<int64_t> e = elements(v)) record.converted_values += *e;
      else multiply_adds.reset();  // a border without a count: the balance is unknown
    }
    const bool any_weighted = std::any_of(list.begin(), list.end(), [&](size_t i) { return is_weighted(*nodes[i]); });
    if (!any_weighted) {  // data movement or arithmetic alone: nothing int8 to share data with
      for (size_t i : list) {
        dropped.insert(nodes[i]);
        summary.skipped.emplace_back(rewrite::describe(*nodes[i]), "kept in float: no quantized Conv/MatMul/Gemm next to it");
      }
      continue;
    }
    record.multiply_adds = multiply_adds;
    record.border_tensors = static_cast<int64_t>(borders.size());
    record.cost = kMultiplyAddsPerConvertedValue * record.converted_values +
                  kMultiplyAddsPerInt8Node * (static_cast<int64_t>(list.size()) + record.border_tensors);
    record.kept_float = multiply_adds && *multiply_adds < record.cost;
    if (record.kept_float) {
      const std::string why = fmt::format(
          "kept in float for ONNX Runtime's CPU kernels (--target ort-cpu): its int8 region of {} node(s) saves at most "
          "{:.2g} multiply-adds per sample, less than its {} conversion(s) of {} value(s) and int8 calls cost "
          "({:.2g}; --target portable quantizes it anyway)",
          list.size(), static_cast<double>(*multiply_adds), record.border_tensors, record.converted_values,
          static_cast<double>(record.cost));
      for (size_t i : list) {
        dropped.insert(nodes[i]);
        summary.skipped.emplace_back(rewrite::describe(*nodes[i]), why);
      }
    }
    summary.regions.push_back(std::move(record));
  }
  std::erase_if(nodes, [&](const ir::Node* n) { return dropped.count(n) > 0; });
}

}  // namespace mopt::quant
