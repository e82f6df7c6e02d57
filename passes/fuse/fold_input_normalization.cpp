// fold-input-normalization: folds the per-channel normalization of an image input into the first Conv.
//
//   Before:  x -> Sub(x, mean) -> Div(., std) -> Conv(W, b) -> y          mean, std: per channel
//   After:   x -> Conv(W', b') -> y
//
//   Conv((x - m) / s, W)[o] = sum_{c,k} W[o,c,k] * (x[c,k] - m[c]) / s[c]
//     W'[o,c,k] = W[o,c,k] / s[c]        b'[o] = b[o] - sum_{c,k} W'[o,c,k] * m[c]
//   (Mul by 1/s instead of Div by s is the same with W' = W * r.) Either of Sub and Div may be absent.
//
// Exact only without padding: padded zeros are zeros of the normalized input, which are m, not 0, in
// the raw one. So the Conv must have all-zero pads (auto_pad NOTSET or VALID) and group 1, and every
// intermediate must feed only the next node. x must be a graph input: that is where normalization is
// the model's preprocessing, not a learned layer.
#include "pass/pass.h"
#include "rewrite/conv.h"
#include "rewrite/rewrite.h"

namespace mopt::passes {
namespace {

class FoldInputNormalizationPass : public pass::GraphPass {
 protected:
  bool run_on_graph(ir::Graph& graph, pass::PassContext& ctx) override {
    bool changed = false;
    for (ir::Node* conv : graph.nodes()) {
      if (conv->dead() || !conv->is_op("Conv") || conv->input(0) == nullptr) continue;
      // Walk back from the Conv over at most one Div/Mul and one Sub to a graph input.
      ir::Node* scale = nullptr;
      ir::Node* shift = nullptr;
      ir::Value* v = conv->input(0);
      ir::Node* p = v->producer();
      if (p && p->owner() == &graph && (p->is_op("Div") || p->is_op("Mul")) && p->input(0) && rewrite::has_single_use(*v)) {
        scale = p;
        v = p->input(0);
        p = v->producer();
      }
      if (p && p->owner() == &graph && p->is_op("Sub") && p->input(0) && rewrite::has_single_use(*v)) {
        shift = p;
        v = p->input(0);
      }
      if ((!scale && !shift) || !v->is_graph_input() || v->initializer()) continue;
      if (const char* why = fold(graph, *conv, scale, shift, v)) {
        ctx.explain_skip(*conv, why);
        continue;
      }
      ctx.count("input-normalizations-folded");
      changed = true;
    }
    return changed;
  }

 private:
  static const char* fold(ir::Graph& graph, ir::Node& conv, ir::Node* scale, ir::Node* shift, ir::Value* input) {
    const char* why = nullptr;
    std::optional<rewrite::ConvWeights> w = rewrite::conv_weights(conv, &why);
    if (!w) return why;
    if (w->group != 1) return "grouped Conv is not handled";
    const std::string auto_pad = rewrite::attr_string(conv, "auto_pad", "NOTSET");
    if (auto_pad != "NOTSET" && auto_pad != "VALID") return "the Conv pads with auto_pad (padding is not exact)";
    for (int64_t pad : rewrite::attr_ints(conv, "pads")) {
      if (pad != 0) return "the Conv pads its input (padded zeros would mean the mean, not 0)";
    }
    const int64_t channels = w->weight.dim(1);
    std::vector<float> mean(static_cast<size_t>(channels), 0.0f), inv_std(static_cast<size_t>(channels), 1.0f);
    if (shift) {
      std::optional<std::vector<float>> m = rewrite::per_channel_constant(shift->input(1), channels, w->output_rank);
      if (!m) return "the subtracted mean is not a per-channel float32 constant";
      mean = *m;
    }
    if (scale) {
      std::optional<std::vector<float>> s = rewrite::per_channel_constant(scale->input(1), channels, w->output_rank);
      if (!s) return "the scale is not a per-channel float32 constant";
      for (size_t c = 0; c < s->size(); ++c) {
        if (scale->is_op("Div") && (*s)[c] == 0.0f) return "division by a zero std";
        inv_std[c] = scale->is_op("Div") ? 1.0f / (*s)[c] : (*s)[c];
      }
    }
    // W' = W * inv_std[c]; b' = b - sum W' * mean[c], accumulated in double.
    const exec::Array& src = w->weight;
    exec::Array weight = exec::Array::uninitialized(ir::dtype::kFloat, src.shape());
    const int64_t out = src.dim(0), inner = src.numel() / (out * channels);
    std::vector<float> bias = w->bias;
    for (int64_t o = 0; o < out; ++o) {
      double shift_sum = 0;
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t base = (o * channels + c) * inner;
        for (int64_t k = 0; k < inner; ++k) {
          const float scaled = src.data<float>()[base + k] * inv_std[static_cast<size_t>(c)];
          weight.data<float>()[base + k] = scaled;
          shift_sum += static_cast<double>(scaled) * mean[static_cast<size_t>(c)];
        }
      }
      bias[static_cast<size_t>(o)] = static_cast<float>(bias[static_cast<size_t>(o)] - shift_sum);
    }
    conv.set_input(0, input);
    rewrite::set_weight_and_bias(graph, conv, &weight, bias);
    std::vector<ir::Value*> constants;
    for (ir::Node* n : {scale, shift}) {
      if (n == nullptr) continue;
      constants.push_back(n->input(1));
    }
    if (scale) graph.erase(scale);
    if (shift) graph.erase(shift);
    rewrite::remove_unused_weights(graph, constants);
    return nullptr;
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& FoldInputNormalizationOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createFoldInputNormalization(const pass::Options&) {
  return std::make_unique<FoldInputNormalizationPass>();
}

}  // namespace mopt::passes
