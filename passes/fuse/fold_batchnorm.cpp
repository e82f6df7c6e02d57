// fold-batchnorm: folds an inference BatchNormalization into the Conv, ConvTranspose or Gemm before it.
//
//   Before:  x -> Conv(W, b) -> t -> BatchNormalization(scale, B, mean, var, eps) -> y
//   After:   x -> Conv(W', b') -> y
//
//   BN(t) = (t - mean) * s + B  with  s = scale / sqrt(var + eps), per channel c (axis 1), so
//     W'[c, ...] = W[c, ...] * s[c]        (ConvTranspose: every weight feeding output channel c)
//     b'[c]      = (b[c] - mean[c]) * s[c] + B[c]
//   For Gemm (Y = alpha * A * B + beta * C, channel = column m):
//     B'[:, m] = B[:, m] * s[m]  (row m with transB),  C'[m] = (beta * C[m] - mean[m]) * s[m] + B[m], beta' = 1
//
// Conditions, checked before anything changes: the producer's output feeds only this BN and is not a
// graph output; weights and BN parameters are float32 constants; BN is in inference mode (no
// training_mode, its mean/var outputs unused; opset >= 7, spatial=1); Gemm's C is a constant that is
// per-column ([M], [1, M] or a scalar). The arithmetic is done in double and rounded once to float.
#include <fmt/format.h>

#include <cmath>

#include "pass/rule.h"
#include "rewrite/conv.h"
#include "rewrite/rewrite.h"
#include "rewrite/weight_layout.h"

namespace mopt::passes {
namespace {

using rewrite::constant_array;

// The per-channel scale s and shift (B - mean * s) of an inference BN, or nullopt with *why set.
struct Affine {
  std::vector<double> scale, shift;
};

std::optional<Affine> batchnorm_affine(const ir::Node& bn, const char** why) {
  const int64_t opset = bn.owner()->model()->opset();
  if (opset < 7) {
    *why = "opset < 7 BatchNormalization (is_test/consumed_inputs) is not handled";
    return std::nullopt;
  }
  if (opset < 9 && rewrite::attr_int(bn, "spatial", 1) != 1) {
    *why = "spatial=0 BatchNormalization is not handled";
    return std::nullopt;
  }
  if (rewrite::attr_int(bn, "training_mode", 0) != 0) {
    *why = "training_mode is set";
    return std::nullopt;
  }
  for (size_t o = 1; o < bn.outputs().size(); ++o) {
    const ir::Value* v = bn.output(o);
    if (v && (v->has_uses() || v->is_graph_output())) {
      *why = "its running mean/variance outputs are used";
      return std::nullopt;
    }
  }
  std::vector<std::vector<float>> params;
  for (size_t i = 1; i <= 4; ++i) {
    std::optional<exec::Array> a = constant_array(bn.input(i));
    if (!a || a->dtype() != ir::dtype::kFloat || a->rank() != 1) {
      *why = "its scale, bias, mean and variance are not 1-D float32 constants";
      return std::nullopt;
    }
    params.emplace_back(a->data<float>(), a->data<float>() + a->numel());
  }
  const size_t channels = params[0].size();
  for (const auto& p : params) {
    if (p.size() != channels) {
      *why = "its parameters have different lengths";
      return std::nullopt;
    }
  }
  const double eps = bn.attribute_float("epsilon").value_or(1e-5f);
  Affine a;
  for (size_t c = 0; c < channels; ++c) {
    const double s = params[0][c] / std::sqrt(static_cast<double>(params[3][c]) + eps);
    a.scale.push_back(s);
    a.shift.push_back(params[1][c] - params[2][c] * s);
  }
  return a;
}

// What folding computed: the producer's new weight and bias.
struct BatchNormFold {
  ir::Node* producer;
  exec::Array weight;
  std::vector<float> bias;
};

class FoldBatchNormRule : public pass::RewriteRule<BatchNormFold> {
 public:
  std::vector<std::string> anchors() const override { return {"BatchNormalization"}; }
  std::string counter(const BatchNormFold& f) const override {
    return f.producer->is_op("Gemm") ? "batchnorm-folded-into-gemm" : "batchnorm-folded-into-conv";
  }

  pass::Matched<BatchNormFold> match(const ir::Node& bn) const override {
    ir::Node* producer = bn.input(0) ? bn.input(0)->producer() : nullptr;
    if (producer == nullptr || producer->owner() != bn.owner()) return pass::no_match();
    if (!rewrite::has_single_use(*bn.input(0))) return pass::refuse("the producer's output has other readers");
    std::optional<BatchNormFold> fold;
    const char* why = nullptr;
    if (producer->is_op("Conv") || producer->is_op("ConvTranspose")) fold = into_conv(*producer, bn, &why);
    else if (producer->is_op("Gemm")) fold = into_gemm(*producer, bn, &why);
    else why = "not after a Conv, ConvTranspose or Gemm";
    if (!fold) return pass::refuse(why);
    if (!bn.owner()->can_replace_all_uses(bn.output(0), producer->output(0)))
      return pass::refuse("its output is a graph output that cannot be renamed");
    return std::move(*fold);
  }

  void apply(ir::Graph& graph, ir::Node& bn, const BatchNormFold& f) const override {
    rewrite::take_over(graph, bn.output(0), f.producer->output(0));
    rewrite::set_weight_and_bias(graph, *f.producer, &f.weight, f.bias);
    if (f.producer->is_op("Gemm")) rewrite::set_float_attr(*f.producer, "beta", 1.0f);
    graph.erase(&bn);
  }

 private:
  static std::optional<BatchNormFold> into_conv(ir::Node& conv, const ir::Node& bn, const char** why) {
    std::optional<rewrite::ConvWeights> w = rewrite::conv_weights(conv, why);
    if (!w) return std::nullopt;
    std::optional<Affine> a = batchnorm_affine(bn, why);
    if (!a) return std::nullopt;
    if (static_cast<int64_t>(a->scale.size()) != w->out_channels) {
      *why = "its channel count differs from the producer's";
      return std::nullopt;
    }
    std::vector<float> scale(a->scale.begin(), a->scale.end()), bias(w->bias.size());
    for (size_t c = 0; c < bias.size(); ++c) bias[c] = static_cast<float>(w->bias[c] * a->scale[c] + a->shift[c]);
    return BatchNormFold{&conv, rewrite::scale_output_channels(*w, scale), std::move(bias)};
  }

  static std::optional<BatchNormFold> into_gemm(ir::Node& gemm, const ir::Node& bn, const char** why) {
    auto refuse = [&](const char* reason) {
      *why = reason;
      return std::nullopt;
    };
    std::optional<exec::Array> b = constant_array(gemm.input(1));
    if (!b || b->dtype() != ir::dtype::kFloat || b->rank() != 2) return refuse("Gemm's B is not a 2-D float32 constant");
    const bool trans_b = rewrite::attr_int(gemm, "transB", 0) != 0;
    const int64_t m = b->dim(static_cast<int64_t>(rewrite::weight_layout(gemm, 2)->output_axis));
    std::vector<double> c(static_cast<size_t>(m), 0.0);
    if (gemm.input(2)) {
      std::optional<exec::Array> ca = constant_array(gemm.input(2));
      if (!ca || ca->dtype() != ir::dtype::kFloat) return refuse("Gemm's C is not a float32 constant");
      const bool per_column = ca->numel() == m && (ca->rank() == 1 || (ca->rank() == 2 && ca->dim(0) == 1));
      if (ca->numel() != 1 && !per_column) return refuse("Gemm's C is not per-column");
      const double beta = gemm.attribute_float("beta").value_or(1.0f);
      for (int64_t j = 0; j < m; ++j) c[static_cast<size_t>(j)] = beta * ca->data<float>()[ca->numel() == 1 ? 0 : j];
    }
    std::optional<Affine> a = batchnorm_affine(bn, why);
    if (!a) return std::nullopt;
    if (static_cast<int64_t>(a->scale.size()) != m) return refuse("its channel count differs from Gemm's columns");
    exec::Array scaled = exec::Array::uninitialized(ir::dtype::kFloat, b->shape());
    const float* src = b->data<float>();
    float* dst = scaled.data<float>();
    for (int64_t r = 0; r < b->dim(0); ++r) {
      for (int64_t col = 0; col < b->dim(1); ++col) {
        const int64_t channel = trans_b ? r : col;
        dst[r * b->dim(1) + col] = static_cast<float>(src[r * b->dim(1) + col] * a->scale[static_cast<size_t>(channel)]);
      }
    }
    std::vector<float> bias(static_cast<size_t>(m));
    for (size_t j = 0; j < bias.size(); ++j) bias[j] = static_cast<float>(c[j] * a->scale[j] + a->shift[j]);
    return BatchNormFold{&gemm, std::move(scaled), std::move(bias)};
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& FoldBatchNormOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createFoldBatchNorm(const pass::Options&) { return pass::make_rule_pass<FoldBatchNormRule>(); }

}  // namespace mopt::passes
