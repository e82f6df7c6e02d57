// QOperator form: the DequantizeLinear -> op -> QuantizeLinear patterns of a QDQ graph fused into
// integer operators (ONNX's QLinearConv and QLinearMatMul; MaxPool, Reshape, ... on the integer tensor).
//
//   Before:  xq -> DQ -> Conv(DQ(Wq), DQ(Bq)) -> y -> Q -> yq
//   After:   xq -> QLinearConv(xs, xzp, Wq, Ws, Wzp, ys, yzp, Bq) -> yq
//
//   Before:  xq -> DQ -> MaxPool -> m -> Q(same scale and zero point) -> mq
//   After:   xq -> MaxPool -> mq
//
// A pattern is fused only when it is exact: every float input comes from a DequantizeLinear, the output
// feeds a single QuantizeLinear, activation parameters are per tensor, and for value-moving operators
// the input and output parameters are equal. Gemm has no integer form in ONNX and stays in QDQ form.
#include <fmt/format.h>

#include <set>

#include "exec/array.h"
#include "quant/quantize.h"
#include "rewrite/rewrite.h"

namespace mopt::quant {
using namespace ::mopt::rewrite;  // graph-building helpers shared with the fusion passes
namespace {

namespace d = ir::dtype;

ir::Node* producer_op(const ir::Value* v, const char* op) {
  if (v == nullptr || v->producer() == nullptr || v->producer()->dead()) return nullptr;
  return v->producer()->is_op(op) ? v->producer() : nullptr;
}

// The QuantizeLinear that alone consumes `node`'s output.
ir::Node* sole_quantize(const ir::Node& node) {
  const ir::Value* y = node.output(0);
  if (y == nullptr || y->is_graph_output() || y->uses().size() != 1) return nullptr;
  ir::Node* q = y->uses()[0].node;
  return q->is_op("QuantizeLinear") && y->uses()[0].input_index == 0 && q->input(2) != nullptr ? q : nullptr;
}

bool per_tensor(const ir::Node& qdq) {
  const ir::Tensor* s = qdq.input(1)->constant();
  return s != nullptr && s->numel() == 1;
}

bool same_constant(const ir::Value* a, const ir::Value* b) {
  if (a == b) return true;
  const ir::Tensor* ta = a ? a->constant() : nullptr;
  const ir::Tensor* tb = b ? b->constant() : nullptr;
  if (!ta || !tb || ta->dtype() != tb->dtype() || ta->dims() != tb->dims()) return false;
  const ir::Bytes da = ta->data(), db = tb->data();
  return da.size() == db.size() && std::equal(da.span().begin(), da.span().end(), db.span().begin());
}

// Value-moving operators that run on integer tensors (MaxPool needs opset 12 for int8/uint8).
bool runs_on_integers(const ir::Node& node, int64_t opset) {
  if (!node.is_default_domain() || !moves_values(node.op_type())) return false;
  return !node.is_op("MaxPool") || (opset >= 12 && node.output(1) == nullptr);
}

// The zero point input of a DequantizeLinear, creating a zero one when absent (QLinear ops need it).
ir::Value* zero_point_of(ir::Graph& g, ir::Node& dq) {
  if (dq.input(2)) return dq.input(2);
  exec::Array zero(dq.input(0)->constant() ? dq.input(0)->constant()->dtype() : d::kUint8, {});
  return add_constant(g, dq.input(0)->name() + "_zero_point", zero.to_tensor(""));
}

void retype(ir::Graph& g, ir::Value* v, int32_t dtype) {
  if (!v->has_type() || !v->info().type().has_tensor_type()) return;
  onnx::TypeProto t = v->info().type();
  t.mutable_tensor_type()->set_elem_type(dtype);
  g.set_value_type(v, t);
}

}  // namespace

// True when the QuantizeLinear/DequantizeLinear `n` has an 8-bit zero point (QLinear operators take no other).
bool eight_bit(const ir::Node& n) {
  const ir::Tensor* zp = n.input(2) ? n.input(2)->constant() : nullptr;
  return zp && (zp->dtype() == d::kInt8 || zp->dtype() == d::kUint8);
}

void qdq_to_qoperator(ir::Model& model, QuantizeSummary& summary) {
  ir::Graph& g = model.graph();
  int64_t fused = 0, gemms = 0, wide = 0;
  for (ir::Node* node : g.nodes()) {
    if (node->dead()) continue;
    ir::Node* q = sole_quantize(*node);
    if (q == nullptr) continue;
    if (!eight_bit(*q)) {  // a 16-bit output (tensor-type) stays in QDQ form
      ++wide;
      continue;
    }
    if (node->is_op("Conv") || node->is_op("MatMul")) {
      ir::Node* dqx = producer_op(node->input(0), "DequantizeLinear");
      ir::Node* dqw = producer_op(node->input(1), "DequantizeLinear");
      ir::Node* dqb = node->input(2) ? producer_op(node->input(2), "DequantizeLinear") : nullptr;
      if (!dqx || !dqw || (node->input(2) && !dqb) || !per_tensor(*dqx) || !per_tensor(*q) || dqx->input(2) == nullptr) continue;
      if (!eight_bit(*dqx)) {
        ++wide;
        continue;
      }
      if (node->is_op("MatMul") && !per_tensor(*dqw) && dqw->attribute_int("axis").value_or(1) != 1) continue;
      if (dqb && (dqb->input(0)->constant() == nullptr || dqb->input(0)->constant()->dtype() != d::kInt32)) continue;
      std::vector<ir::Value*> in = {dqx->input(0), dqx->input(1), dqx->input(2), dqw->input(0), dqw->input(1),
                                    zero_point_of(g, *dqw), q->input(1), q->input(2)};
      if (dqb) in.push_back(dqb->input(0));
      const bool conv = node->is_op("Conv");
      ir::Node* fused_node = g.create_node(conv ? "QLinearConv" : "QLinearMatMul", in, 1, node, "", node->output(0)->name() + "_quantized");
      if (conv) copy_attributes(*node, *fused_node);
      fused_node->mutable_proto().set_name(model.fresh_name(node->name().empty() ? fused_node->op_type() : node->name() + "_quant"));
      if (!g.replace_all_uses(q->output(0), fused_node->output(0))) {
        g.erase(fused_node);
        continue;
      }
      g.erase(q);
      g.erase(node);
      ++fused;
    } else if (node->is_op("Gemm")) {
      ++gemms;
    } else if (runs_on_integers(*node, model.opset())) {
      ir::Node* dq = producer_op(node->input(0), "DequantizeLinear");
      if (!dq || !same_constant(dq->input(1), q->input(1)) || !same_constant(dq->input(2), q->input(2))) continue;
      ir::Value* y = node->output(0);
      node->set_input(0, dq->input(0));
      if (!g.replace_all_uses(q->output(0), y)) {
        node->set_input(0, dq->output(0));
        continue;
      }
      retype(g, y, q->input(2)->constant()->dtype());
      g.erase(q);
      ++fused;
    } else {
      continue;
    }
  }
  // DequantizeLinear nodes (and their constants) nothing reads any more.
  std::vector<ir::Value*> unused;
  for (ir::Node* node : g.nodes()) {
    if (!node->is_op("DequantizeLinear") || node->output(0)->has_uses() || node->output(0)->is_graph_output()) continue;
    for (ir::Value* v : node->inputs()) if (v) unused.push_back(v);
    g.erase(node);
  }
  remove_unused_weights(g, unused);
  summary.notes.push_back(fmt::format("QOperator: {} pattern(s) fused into integer operators", fused));
  if (gemms) summary.notes.push_back(fmt::format("QOperator: {} Gemm node(s) stay in QDQ form (ONNX has no integer Gemm)", gemms));
  if (wide) summary.notes.push_back(fmt::format("QOperator: {} node(s) with 16-bit activations stay in QDQ form (QLinear operators are 8-bit)", wide));
}

}  // namespace mopt::quant
