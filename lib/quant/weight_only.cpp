// Weight-only block quantization of MatMul weights (transformer-style models), written as ONNX
// Runtime's com.microsoft MatMulNBits: activations stay float, each block of `block_size` weights along
// K gets its own scale (and zero point when asymmetric).
//
//   Before:  x -> MatMul(W [K, N] float) -> y
//   After:   x -> MatMulNBits(B [N, K/bs, bs*bits/8] uint8, scales [N*K/bs], zero_points?) -> y
//
// MatMulNBits over ONNX's blocked DequantizeLinear (INT4, opset 21): it needs no opset upgrade of the
// rest of the model (opset 21 changed many operators) and ONNX Runtime runs it as one fused kernel.
// Codes are packed low bits first along K; K is padded with zeros to a whole block, and a K smaller
// than the block size gets the smallest power-of-two block (>= 16) that covers it. Symmetric blocks
// (the default) use codes [-(2^(b-1)-1), 2^(b-1)-1] stored offset by 2^(b-1), the operator's default
// zero point, so no zero point tensor is written.
#include <fmt/format.h>

#include <cmath>

#include "quant/params.h"
#include "quant/quantize.h"
#include "rewrite/rewrite.h"
#include "util/error.h"

namespace mopt::quant {
using namespace ::mopt::rewrite;  // graph-building helpers shared with the fusion passes

void quantize_weight_only(ir::Model& model, const QuantizeConfig& config, const std::vector<ir::Node*>& nodes,
                          QuantizeSummary& summary) {
  if (nodes.empty()) return;
  ir::Graph& g = model.graph();
  ensure_opset_import(model, "com.microsoft", 1);
  const int bits = config.bits;
  const int64_t per_byte = 8 / bits, offset = int64_t{1} << (bits - 1);
  const int64_t qmax_unsigned = (int64_t{1} << bits) - 1;
  const bool symmetric = config.symmetric_weights;
  for (ir::Node* node : nodes) {
    ir::Value* w = node->input(1);
    const std::vector<int64_t> dims = w->constant()->dims();
    const int64_t k = dims[0], n = dims[1];
    // A block never exceeds K rounded up to a power of two (>= 16, the operator's minimum), so a small
    // K is not padded to a whole default block.
    int64_t bs = 16;
    while (bs < k && bs < config.block_size) bs *= 2;
    bs = std::min(bs, config.block_size);
    const int64_t blocks = (k + bs - 1) / bs, blob = bs * bits / 8;
    const int64_t zp_row = (blocks + per_byte - 1) / per_byte;
    exec::Array holder;
    const std::span<const float> values = float_span(*w->constant(), holder);
    std::vector<uint8_t> packed(static_cast<size_t>(n * blocks * blob), 0);
    std::vector<uint8_t> zero_points(symmetric ? 0 : static_cast<size_t>(n * zp_row), 0);
    std::vector<float> scales(static_cast<size_t>(n * blocks));
    double rmin = 0, rmax = 0;
    // Block by block along K, each pass reading whole rows of W (row-major [K, N]): a column-by-column
    // walk would touch a new cache line at every value. Codes of a block go to `codes` [bs, N] first
    // and are packed per column from there.
    std::vector<double> lo(static_cast<size_t>(n)), hi(static_cast<size_t>(n));
    std::vector<float> block_scale(static_cast<size_t>(n));
    std::vector<int64_t> block_zp(static_cast<size_t>(n));
    std::vector<uint8_t> codes(static_cast<size_t>(bs * n));
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t k0 = b * bs, k1 = std::min(k, k0 + bs);
      std::fill(lo.begin(), lo.end(), 0.0);
      std::fill(hi.begin(), hi.end(), 0.0);
      for (int64_t i = k0; i < k1; ++i) {
        const float* row = values.data() + i * n;
        for (size_t col = 0; col < static_cast<size_t>(n); ++col) {
          const double v = row[col];
          lo[col] = std::min(lo[col], v);
          hi[col] = std::max(hi[col], v);
        }
      }
      for (int64_t col = 0; col < n; ++col) {
        const double l = lo[static_cast<size_t>(col)], h = hi[static_cast<size_t>(col)];
        rmin = std::min(rmin, l);
        rmax = std::max(rmax, h);
        double scale;
        int64_t zp;
        if (symmetric) {
          scale = std::max(std::fabs(l), std::fabs(h)) / static_cast<double>(offset - 1);
          zp = offset;
        } else {
          scale = (h - l) / static_cast<double>(qmax_unsigned);
          zp = scale > 0 ? std::clamp(static_cast<int64_t>(std::nearbyint(-l / scale)), int64_t{0}, qmax_unsigned) : 0;
        }
        if (!(scale > 0)) scale = 1;
        block_scale[static_cast<size_t>(col)] = static_cast<float>(scale);
        block_zp[static_cast<size_t>(col)] = zp;
        scales[static_cast<size_t>(col * blocks + b)] = static_cast<float>(scale);
        if (!symmetric) zero_points[static_cast<size_t>(col * zp_row + b / per_byte)] |= static_cast<uint8_t>(zp << ((b % per_byte) * bits));
      }
      for (int64_t i = k0; i < k1; ++i) {
        const float* row = values.data() + i * n;
        uint8_t* out = codes.data() + (i - k0) * n;
        for (size_t col = 0; col < static_cast<size_t>(n); ++col) {
          // Bounded before the integer conversion (an infinite weight makes an infinite scale, and
          // inf / inf is NaN); a NaN weight gets the code of zero, as in the int8 paths (params.cpp).
          float q = row[col] / block_scale[col];
          q = q == q ? std::clamp(q, -4194304.0f, 4194304.0f) : 0.0f;
          out[col] = static_cast<uint8_t>(std::clamp(static_cast<int64_t>(std::nearbyint(q)) + block_zp[col], int64_t{0}, qmax_unsigned));
        }
      }
      for (int64_t col = 0; col < n; ++col) {
        uint8_t* dst = packed.data() + (col * blocks + b) * blob;
        for (int64_t within = 0; within < k1 - k0; ++within)
          dst[within / per_byte] |= static_cast<uint8_t>(codes[static_cast<size_t>(within * n + col)] << ((within % per_byte) * bits));
      }
      // Padding beyond K keeps code 0; its A values are absent, so it contributes nothing.
    }
    const std::string base = w->name();
    std::vector<ir::Value*> in = {node->input(0), add_constant(g, base + "_packed", make_bytes_tensor("", {n, blocks, blob}, std::move(packed))),
                                  add_constant(g, base + "_scales", make_float_tensor("", {n * blocks}, scales))};
    if (!symmetric) in.push_back(add_constant(g, base + "_zero_points", make_bytes_tensor("", {n * zp_row}, zero_points)));
    ir::Node* mm = g.create_node("MatMulNBits", in, 1, node, "com.microsoft", node->output(0)->name() + "_nbits");
    mm->mutable_proto().set_name(model.fresh_name(node->name().empty() ? "MatMulNBits" : node->name() + "_nbits"));
    set_int_attr(*mm, "K", k);
    set_int_attr(*mm, "N", n);
    set_int_attr(*mm, "bits", bits);
    set_int_attr(*mm, "block_size", bs);
    if (config.accuracy_level) set_int_attr(*mm, "accuracy_level", config.accuracy_level);
    ir::Value* y = node->output(0);
    const std::string y_name = y->name();
    if (!g.replace_all_uses(y, mm->output(0))) fail("quantize: could not rewire the output of '{}'", node->name());
    g.erase(node);
    summary.layers.push_back(LayerRecord::of(*node, y_name, mm->output(0)->name()));
    std::vector<int32_t> zps;
    if (!symmetric) {
      for (int64_t col = 0; col < n; ++col)
        for (int64_t b = 0; b < blocks; ++b)
          zps.push_back((zero_points[static_cast<size_t>(col * zp_row + b / per_byte)] >> ((b % per_byte) * bits)) & static_cast<int>(qmax_unsigned));
    } else {
      zps = {static_cast<int32_t>(offset)};
    }
    summary.tensors.push_back({w->name(), "weight", fmt::format("uint{} (MatMulNBits)", bits), symmetric ? "minmax, symmetric blocks" : "minmax per block",
                               scales, zps, 0, bs, rmin, rmax, rmin, rmax});
    remove_unused_weights(g, {w});  // now, not after the loop: its mapped pages go before the next weight is read
  }
}

}  // namespace mopt::quant
