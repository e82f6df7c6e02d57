// Dynamic quantization: weights int8 at rest, activations quantized per run (ONNX Runtime's
// quantize_dynamic form, standard ONNX operators only).
//
//   Before:  x -> MatMul(W) -> y
//   After:   x -> DynamicQuantizeLinear -> (xq, xs, xzp)          (one per activation, shared)
//            MatMulInteger(xq, Wq, xzp[, Wzp]) -> Cast(float) -> Mul(xs * Ws) -> y
//
// Gemm (transA=0) becomes the same with B transposed when transB=1, alpha folded into the weight scale
// and beta * C added after. Weight scales are per tensor or per output column (--per-channel).
#include <fmt/format.h>

#include <map>

#include "quant/params.h"
#include "quant/quantize.h"
#include "rewrite/rewrite.h"
#include "util/error.h"

namespace mopt::quant {
using namespace ::mopt::rewrite;  // graph-building helpers shared with the fusion passes
namespace {

namespace d = ir::dtype;

struct DynamicInput {
  ir::Value* q;
  ir::Value* scale;
  ir::Value* zero_point;
};

}  // namespace

void quantize_dynamic(ir::Model& model, const QuantizeConfig& config, const std::vector<ir::Node*>& nodes,
                      QuantizeSummary& summary) {
  if (nodes.empty()) return;
  if (model.opset() < 11)
    usage_error("dynamic quantization writes DynamicQuantizeLinear (opset 11); the model imports opset {}: convert it first "
                "(mopt quantize upgrades it automatically)", model.opset());
  ir::Graph& g = model.graph();
  std::map<ir::Value*, DynamicInput> inputs;
  std::vector<ir::Value*> input_order;  // for a deterministic summary
  for (ir::Node* node : nodes) {
    std::vector<ir::Value*> replaced;
    const bool gemm = node->is_op("Gemm");
    ir::Value* x = node->input(0);
    ir::Value* w = node->input(1);
    const ir::Tensor& wt = *w->constant();
    std::vector<int64_t> dims = wt.dims();
    exec::Array holder;
    std::span<const float> values = float_span(wt, holder);
    std::vector<float> transposed;
    float alpha = 1, beta = 1;
    if (gemm) {
      alpha = node->attribute_float("alpha").value_or(1.0f);
      beta = node->attribute_float("beta").value_or(1.0f);
      if (node->attribute_int("transB").value_or(0) != 0) {  // store as [K, N]
        transposed.resize(values.size());
        for (int64_t n = 0; n < dims[0]; ++n)
          for (int64_t k = 0; k < dims[1]; ++k) transposed[static_cast<size_t>(k * dims[0] + n)] = values[static_cast<size_t>(n * dims[1] + k)];
        values = transposed;
        std::swap(dims[0], dims[1]);
      }
    }
    const std::optional<int64_t> axis = config.per_channel ? std::optional<int64_t>(1) : std::nullopt;
    QuantizedWeight qw = quantize_weight(values, dims, config.weight_type, config.symmetric_weights, axis);

    auto [it, fresh] = inputs.try_emplace(x);
    if (fresh) {
      ir::Node* dql = g.create_node("DynamicQuantizeLinear", {x}, 3, node, "", x->name() + "_quantized");
      it->second = {dql->output(0), dql->output(1), dql->output(2)};
      input_order.push_back(x);
    }
    const DynamicInput& xq = it->second;
    const std::string base = w->name();
    ir::Value* wq = add_constant(g, base + "_quantized", std::move(qw.data));
    std::vector<float> scales;
    std::vector<int32_t> zps;
    bool zero_zp = true;
    for (const QuantParams& p : qw.params) {
      scales.push_back(p.scale * alpha);
      zps.push_back(p.zero_point);
      zero_zp &= p.zero_point == 0;
    }
    const std::vector<int64_t> param_dims = axis ? std::vector<int64_t>{dims[1]} : std::vector<int64_t>{};
    std::vector<ir::Value*> mm_inputs = {xq.q, wq, xq.zero_point};
    if (!zero_zp) mm_inputs.push_back(add_constant(g, base + "_zero_point", make_tensor("", config.weight_type, param_dims, zps)));
    ir::Value* ws = add_constant(g, base + "_scale", make_float_tensor("", param_dims, scales));
    const std::string hint = node->output(0)->name();
    ir::Node* mm = g.create_node("MatMulInteger", mm_inputs, 1, node, "", hint + "_int32");
    ir::Node* cast = g.create_node("Cast", {mm->output(0)}, 1, node, "", hint + "_float");
    set_int_attr(*cast, "to", d::kFloat);
    ir::Node* scale = g.create_node("Mul", {xq.scale, ws}, 1, node, "", hint + "_scale");
    ir::Node* mul = g.create_node("Mul", {cast->output(0), scale->output(0)}, 1, node, "", hint + "_dequantized");
    ir::Value* result = mul->output(0);
    if (gemm && node->input(2)) {
      ir::Value* c = node->input(2);
      if (beta != 1.0f) {
        exec::Array c_holder;
        const std::span<const float> c_values = float_span(*c->constant(), c_holder);
        std::vector<float> cv(c_values.begin(), c_values.end());
        for (float& v : cv) v *= beta;
        c = add_constant(g, c->name() + "_scaled", make_float_tensor("", c->constant()->dims(), cv));
        replaced.push_back(node->input(2));
      }
      ir::Node* add = g.create_node("Add", {result, c}, 1, node, "", hint + "_biased");
      result = add->output(0);
    }
    ir::Value* y = node->output(0);
    const std::string y_name = y->name();
    if (!g.replace_all_uses(y, result)) fail("quantize: could not rewire the output of '{}'", node->name());
    g.erase(node);
    replaced.push_back(w);
    summary.layers.push_back(LayerRecord::of(*node, y_name, result->name()));
    TensorRecord rec{w->name(), "weight", d::name(config.weight_type), "minmax", scales, zps, axis ? 1 : -1, 0,
                     qw.rmin, qw.rmax, qw.rmin, qw.rmax};
    summary.tensors.push_back(std::move(rec));
    // Now, not after the loop: an unused old weight's mapped pages go before the next one is read.
    remove_unused_weights(g, replaced);
  }
  for (const ir::Value* x : input_order) {
    summary.tensors.push_back({x->name(), "activation", "uint8", "dynamic", {}, {}, -1, 0, 0, 0, 0, 0});
  }
}

}  // namespace mopt::quant
