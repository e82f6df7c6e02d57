// Weight-only block quantization of MatMul weights (transformer-style models): activations stay float,
// each block of `block_size` weights along K gets its own scale (and zero point when asymmetric). Two
// forms of the same codes:
//
//   Before:  x -> MatMul(W [K, N] float) -> y
//   qoperator (default), ONNX Runtime's com.microsoft MatMulNBits; no opset upgrade:
//            x -> MatMulNBits(B [N, K/bs, bs*bits/8] uint8, scales [N*K/bs], zero_points?) -> y
//   qdq, ONNX's blocked DequantizeLinear (opset 21), for any runtime; ONNX Runtime fuses it back into
//   MatMulNBits:
//            x -> MatMul(DequantizeLinear(Wq [K, N] int4|uint4|int8|uint8, scale [K/bs, N], zp?, axis=0, block_size=bs)) -> y
//
// MatMulNBits codes are packed low bits first along K, K padded with zeros to a whole block; the QDQ
// weight keeps W's shape and element order (two 4-bit values per byte, the first in the low nibble),
// its last block possibly shorter. A K smaller than the block size gets the smallest power-of-two block
// (>= 16) that covers it. Symmetric blocks (the default) use codes [-(2^(b-1)-1), 2^(b-1)-1]: stored
// offset by 2^(b-1) in MatMulNBits (the operator's default zero point), as signed values without a zero
// point in the QDQ form.
#include <fmt/format.h>

#include <cmath>
#include <span>

#include "exec/parallel.h"
#include "quant/params.h"
#include "quant/quantize.h"
#include "rewrite/rewrite.h"
#include "util/error.h"

namespace mopt::quant {
using namespace ::mopt::rewrite;  // graph-building helpers shared with the fusion passes
namespace {

namespace d = ir::dtype;

// A weight W [K, N] quantized in blocks of rows along K: unsigned codes in [0, 2^bits - 1] in W's shape and
// order, and each block's scale and zero point per column (2^(bits-1) when symmetric).
struct BlockCodes {
  exec::Array codes;                // uint8 [K, N]
  std::vector<float> scale;         // [blocks, N]
  std::vector<int64_t> zero_point;  // [blocks, N]
  std::pair<double, double> range;  // of W's values
};

struct BlockShape {
  int64_t size, count;
};

// A block never exceeds K rounded up to a power of two (>= 16, MatMulNBits' minimum), so a small K is not
// padded to a whole default block.
BlockShape block_shape(int64_t k, int64_t block_size) {
  int64_t bs = 16;
  while (bs < k && bs < block_size) bs *= 2;
  bs = std::min(bs, block_size);
  return {bs, (k + bs - 1) / bs};
}

// Rounding error of a block quantization: sums of squares over every weight.
struct BlockError {
  double weights = 0, full_range = 0, chosen = 0;  // sum w^2; sum (w - w_q)^2 with full-range scales, and as written
};

// Range shrink factors tried by the mse search: 1, 0.975, ..., 0.525 of each block's range.
constexpr int kSearchSteps = 20;
constexpr double kSearchStep = 0.025;

// Quantizes W [K, N] block by block along K. The columns are independent: threads take disjoint column
// ranges (one parallel region per weight) and walk whole rows of their range (row-major: a column-by-column
// walk would touch a new cache line at every value). With `search`, each block's range is shrunk by the
// factor (1, 0.975, ..., 0.525) whose codes give the least squared error on the block's own weights
// (outliers clipped when that costs less than coarse steps for the rest); otherwise the full range is
// used. Sums are kept per block and column and added up in that order, so nothing depends on the thread
// count.
BlockCodes quantize_blocks(std::span<const float> values, int64_t k, int64_t n, BlockShape shape, int bits, bool symmetric,
                           bool search, BlockError& error) {
  const int64_t offset = int64_t{1} << (bits - 1), qmax_unsigned = (int64_t{1} << bits) - 1;
  const size_t cols = static_cast<size_t>(n), per_block = static_cast<size_t>(shape.count) * cols;
  BlockCodes out{exec::Array::uninitialized(d::kUint8, {k, n}), std::vector<float>(per_block), std::vector<int64_t>(per_block), {0, 0}};
  // Per column, of the block being quantized (threads own disjoint columns).
  std::vector<float> lo(cols), hi(cols), col_min(cols, 0.0f), col_max(cols, 0.0f), lowest(cols), highest(cols), zero_point(cols);
  // Per block and column: sum w^2, the full range's squared error, the chosen one's.
  std::vector<double> weight_sq(search ? per_block : 0), full_err(search ? per_block : 0), best_err(search ? per_block : 0);
  std::vector<double> err(search ? cols : 0);
  std::vector<float> trial_scale(search ? cols : 0), inverse(search ? cols : 0);
  std::vector<int64_t> trial_zp(search ? cols : 0);
  // Scale and zero point of column `col` with its range shrunk by `factor`.
  auto params = [&](size_t col, double factor, float& scale_out, int64_t& zp_out) {
    const double l = static_cast<double>(lo[col]) * factor, h = static_cast<double>(hi[col]) * factor;
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
    scale_out = static_cast<float>(scale);
    zp_out = zp;
  };
  // Block `b` (rows [k0, k1)), columns [c0, c1): each shrink factor's squared error; the best wins.
  auto search_columns = [&](int64_t b, int64_t k0, int64_t k1, size_t c0, size_t c1) {
    float* block_scale = out.scale.data() + b * n;
    int64_t* block_zp = out.zero_point.data() + b * n;
    double* full = full_err.data() + b * n;
    double* best = best_err.data() + b * n;
    for (int step = 0; step < kSearchSteps; ++step) {
      for (size_t col = c0; col < c1; ++col) {
        params(col, 1.0 - kSearchStep * step, trial_scale[col], trial_zp[col]);
        inverse[col] = 1.0f / trial_scale[col];
        lowest[col] = static_cast<float>(-trial_zp[col]);
        highest[col] = static_cast<float>(qmax_unsigned - trial_zp[col]);
        err[col] = 0;
      }
      // The error estimate multiplies by 1/scale where the codes written divide: the search only ranks
      // factors, and this loop vectorizes.
      for (int64_t i = k0; i < k1; ++i) {
        const float* row = values.data() + i * n;
        for (size_t col = c0; col < c1; ++col) {
          const float w = std::isfinite(row[col]) ? row[col] : 0.0f;
          const float q = round_half_even(std::clamp(w * inverse[col], lowest[col], highest[col]));  // within the code range
          const float d = w - q * trial_scale[col];
          err[col] += static_cast<double>(d) * d;
        }
      }
      for (size_t col = c0; col < c1; ++col) {
        if (step == 0) full[col] = best[col] = err[col];
        if (step == 0 || err[col] < best[col]) {  // strictly better: ties keep the wider range
          best[col] = err[col];
          block_scale[col] = trial_scale[col];
          block_zp[col] = trial_zp[col];
        }
      }
    }
  };
  // Block `b` (rows [k0, k1)), columns [c0, c1): range, parameters, search, codes.
  auto quantize_block = [&](int64_t b, int64_t k0, int64_t k1, size_t c0, size_t c1) {
    float* block_scale = out.scale.data() + b * n;
    int64_t* block_zp = out.zero_point.data() + b * n;
    std::fill(lo.begin() + c0, lo.begin() + c1, 0.0f);
    std::fill(hi.begin() + c0, hi.begin() + c1, 0.0f);
    for (int64_t i = k0; i < k1; ++i) {
      const float* row = values.data() + i * n;
      for (size_t col = c0; col < c1; ++col) {
        lo[col] = row[col] < lo[col] ? row[col] : lo[col];  // a NaN weight leaves the range as it is
        hi[col] = hi[col] < row[col] ? row[col] : hi[col];
      }
    }
    for (size_t col = c0; col < c1; ++col) {
      col_min[col] = std::min(col_min[col], lo[col]);
      col_max[col] = std::max(col_max[col], hi[col]);
      params(col, 1.0, block_scale[col], block_zp[col]);
    }
    if (search) {
      double* sq = weight_sq.data() + b * n;
      for (int64_t i = k0; i < k1; ++i) {
        const float* row = values.data() + i * n;
        for (size_t col = c0; col < c1; ++col) {
          const double v = std::isfinite(row[col]) ? row[col] : 0.0f;
          sq[col] += v * v;
        }
      }
      search_columns(b, k0, k1, c0, c1);
    }
    for (size_t col = c0; col < c1; ++col) {
      lowest[col] = static_cast<float>(-block_zp[col]);
      highest[col] = static_cast<float>(qmax_unsigned - block_zp[col]);
      zero_point[col] = static_cast<float>(block_zp[col]);
    }
    // code = clamp(round(w / scale), -zp, 2^bits - 1 - zp) + zp, rounding half to even; clamping before the
    // rounding gives the same integers, keeps round_half_even exact (below 2^22) and bounds an infinite
    // w / scale. A NaN weight gets the code of zero, as in the int8 paths (params.cpp). Branch-free, so it
    // vectorizes.
    for (int64_t i = k0; i < k1; ++i) {
      const float* row = values.data() + i * n;
      uint8_t* codes = out.codes.data<uint8_t>() + i * n;
      for (size_t col = c0; col < c1; ++col) {
        float q = row[col] / block_scale[col];
        q = q == q ? q : 0.0f;
        q = q < lowest[col] ? lowest[col] : q;
        q = q > highest[col] ? highest[col] : q;
        codes[col] = static_cast<uint8_t>(static_cast<int32_t>(round_half_even(q) + zero_point[col]));
      }
    }
  };
  exec::parallel_for(n, k * (search ? kSearchSteps + 4 : 3), [&](int64_t c0, int64_t c1) {
    for (int64_t b = 0; b < shape.count; ++b)
      quantize_block(b, b * shape.size, std::min(k, (b + 1) * shape.size), static_cast<size_t>(c0), static_cast<size_t>(c1));
  });
  for (size_t col = 0; col < cols; ++col) {
    out.range.first = std::min(out.range.first, static_cast<double>(col_min[col]));
    out.range.second = std::max(out.range.second, static_cast<double>(col_max[col]));
  }
  for (size_t i = 0; i < weight_sq.size(); ++i) {
    error.weights += weight_sq[i];
    error.full_range += full_err[i];
    error.chosen += best_err[i];
  }
  return out;
}

// The summary's zero points: per block in the tensor's order, or the one symmetric offset.
struct Written {
  ir::Node* node;
  std::vector<float> scales;
  std::vector<int32_t> zero_points;
  std::string dtype;
};

Written write_matmul_nbits(ir::Model& model, const QuantizeConfig& config, ir::Node& node, int64_t k, int64_t n, BlockShape shape,
                           const BlockCodes& q) {
  ir::Graph& g = model.graph();
  const int bits = config.bits;
  const bool symmetric = config.symmetric_weights;
  const int64_t per_byte = 8 / bits, blob = shape.size * bits / 8, zp_row = (shape.count + per_byte - 1) / per_byte;
  // Every byte is written below (a lasting array: backed by huge pages, far cheaper to fault in).
  exec::Array packed = exec::Array::uninitialized_lasting(d::kUint8, {n, shape.count, blob});
  std::vector<uint8_t> zero_points(symmetric ? 0 : static_cast<size_t>(n * zp_row), 0);
  std::vector<float> scales(static_cast<size_t>(n * shape.count));  // [N, blocks]
  std::vector<int32_t> zps(symmetric ? 1 : static_cast<size_t>(n * shape.count), static_cast<int32_t>(int64_t{1} << (bits - 1)));
  // Column by column, in tiles of 64 columns block by block: a block's rows of the tile stay in cache while
  // each column's codes are read down them.
  exec::parallel_for(n, k, [&](int64_t c0, int64_t c1) {
    for (int64_t tile = c0; tile < c1; tile += 64) {
      for (int64_t b = 0; b < shape.count; ++b) {
        const int64_t k0 = b * shape.size, rows = std::min(k, k0 + shape.size) - k0;
        for (int64_t col = tile; col < std::min(c1, tile + 64); ++col) {
          const size_t at = static_cast<size_t>(b * n + col);
          scales[static_cast<size_t>(col * shape.count + b)] = q.scale[at];
          if (!symmetric) {
            zps[static_cast<size_t>(col * shape.count + b)] = static_cast<int32_t>(q.zero_point[at]);
            zero_points[static_cast<size_t>(col * zp_row + b / per_byte)] |= static_cast<uint8_t>(q.zero_point[at] << ((b % per_byte) * bits));
          }
          const uint8_t* codes = q.codes.data<uint8_t>() + k0 * n + col;
          uint8_t* dst = packed.data<uint8_t>() + (col * shape.count + b) * blob;
          // Padding beyond K gets code 0; its A values are absent, so it contributes nothing.
          auto code = [&](int64_t within) -> unsigned { return within < rows ? codes[within * n] : 0u; };
          if (bits == 4) {
            for (int64_t p = 0; p < blob; ++p) dst[p] = static_cast<uint8_t>(code(2 * p) | code(2 * p + 1) << 4);
          } else {
            for (int64_t within = 0; within < blob; ++within) dst[within] = static_cast<uint8_t>(code(within));
          }
        }
      }
    }
  });
  const std::string base = node.input(1)->name();
  std::vector<ir::Value*> in = {node.input(0), add_constant(g, base + "_packed", std::move(packed)),
                                add_constant(g, base + "_scales", make_float_tensor("", {n * shape.count}, scales))};
  if (!symmetric) in.push_back(add_constant(g, base + "_zero_points", make_bytes_tensor("", {n * zp_row}, zero_points)));
  ir::Node* mm = g.create_node("MatMulNBits", in, 1, &node, "com.microsoft", node.output(0)->name() + "_nbits");
  mm->mutable_proto().set_name(model.fresh_name(node.name().empty() ? "MatMulNBits" : node.name() + "_nbits"));
  set_int_attr(*mm, "K", k);
  set_int_attr(*mm, "N", n);
  set_int_attr(*mm, "bits", bits);
  set_int_attr(*mm, "block_size", shape.size);
  if (config.accuracy_level) set_int_attr(*mm, "accuracy_level", config.accuracy_level);
  return {mm, std::move(scales), std::move(zps), fmt::format("uint{} (MatMulNBits)", bits)};
}

// Codes of `bits` bits packed in element order, the first of each pair in the low nibble (ONNX's int4).
void put_code(std::vector<std::byte>& packed, int64_t i, unsigned code, int bits) {
  if (bits == 8) {
    packed[static_cast<size_t>(i)] = static_cast<std::byte>(code);
  } else {
    packed[static_cast<size_t>(i / 2)] |= static_cast<std::byte>((code & 0xFu) << ((i & 1) * 4));
  }
}

Written write_blocked_dequantize(ir::Model& model, const QuantizeConfig& config, ir::Node& node, int64_t k, int64_t n,
                                 BlockShape shape, const BlockCodes& q) {
  ir::Graph& g = model.graph();
  const int bits = config.bits;
  const bool symmetric = config.symmetric_weights;
  const int64_t offset = int64_t{1} << (bits - 1);
  const int32_t qtype = bits == 4 ? (symmetric ? d::kInt4 : d::kUint4) : (symmetric ? d::kInt8 : d::kUint8);
  std::vector<std::byte> codes(d::storage_bytes(qtype, static_cast<uint64_t>(k * n)));
  std::vector<std::byte> zero_points(symmetric ? 0 : d::storage_bytes(qtype, static_cast<uint64_t>(shape.count * n)));
  const std::vector<float>& scales = q.scale;  // [blocks, N]
  std::vector<int32_t> zps(symmetric ? 1 : static_cast<size_t>(shape.count * n), 0);
  if (!symmetric) {
    for (int64_t i = 0; i < shape.count * n; ++i) {
      zps[static_cast<size_t>(i)] = static_cast<int32_t>(q.zero_point[static_cast<size_t>(i)]);
      put_code(zero_points, i, static_cast<unsigned>(q.zero_point[static_cast<size_t>(i)]), bits);
    }
  }
  // Symmetric codes become the signed values they stand for (code - offset), two's complement.
  const unsigned shift = symmetric ? static_cast<unsigned>(offset) : 0u;
  const uint8_t* unsigned_codes = q.codes.data<uint8_t>();
  for (int64_t i = 0; i < k * n; ++i) put_code(codes, i, static_cast<unsigned>(unsigned_codes[i]) - shift, bits);
  const std::string base = node.input(1)->name();
  std::vector<ir::Value*> in = {add_constant(g, base + "_quantized", make_raw_tensor("", qtype, {k, n}, std::move(codes))),
                                add_constant(g, base + "_scale", make_float_tensor("", {shape.count, n}, scales))};
  if (!symmetric) in.push_back(add_constant(g, base + "_zero_point", make_raw_tensor("", qtype, {shape.count, n}, std::move(zero_points))));
  ir::Node* dq = g.create_node("DequantizeLinear", in, 1, &node, "", base + "_dequantized");
  dq->mutable_proto().set_name(model.fresh_name(base + "_DequantizeLinear"));
  set_int_attr(*dq, "axis", 0);
  set_int_attr(*dq, "block_size", shape.size);
  node.set_input(1, dq->output(0));
  return {&node, scales, std::move(zps), fmt::format("{} (blocked DequantizeLinear)", d::name(qtype))};
}

}  // namespace

void quantize_weight_only(ir::Model& model, const QuantizeConfig& config, const std::vector<ir::Node*>& nodes,
                          QuantizeSummary& summary) {
  if (nodes.empty()) return;
  ir::Graph& g = model.graph();
  const bool qdq = config.output_format() == Format::QDQ;
  if (qdq && model.opset() < 21)
    usage_error("weight-only quantization with format=qdq writes blocked DequantizeLinear (opset 21); the model imports "
                "opset {}: convert it first (mopt quantize upgrades it automatically)", model.opset());
  if (!qdq) ensure_opset_import(model, "com.microsoft", 1);
  BlockError total;
  for (ir::Node* node : nodes) {
    ir::Value* w = node->input(1);
    const std::vector<int64_t> dims = w->constant()->dims();
    const int64_t k = dims[0], n = dims[1];
    const BlockShape shape = block_shape(k, config.block_size);
    exec::Array holder;
    const std::span<const float> values = float_span(*w->constant(), holder);
    BlockError error;
    const BlockCodes codes = quantize_blocks(values, k, n, shape, config.bits, config.symmetric_weights, config.block_search, error);
    const std::pair<double, double> range = codes.range;
    const std::string y_name = node->output(0)->name();
    Written written = qdq ? write_blocked_dequantize(model, config, *node, k, n, shape, codes)
                          : write_matmul_nbits(model, config, *node, k, n, shape, codes);
    if (written.node != node) {
      if (!g.replace_all_uses(node->output(0), written.node->output(0))) fail("quantize: could not rewire the output of '{}'", node->name());
      g.erase(node);
    }
    summary.layers.push_back(LayerRecord::of(*node, y_name, written.node->output(0)->name()));
    total.weights += error.weights;
    total.full_range += error.full_range;
    total.chosen += error.chosen;
    const char* method = config.block_search ? (config.symmetric_weights ? "mse-searched range, symmetric blocks" : "mse-searched range per block")
                                             : (config.symmetric_weights ? "minmax, symmetric blocks" : "minmax per block");
    summary.tensors.push_back({w->name(), "weight", written.dtype, method,
                               std::move(written.scales), std::move(written.zero_points), 0, shape.size,
                               range.first, range.second, range.first, range.second});
    holder = exec::Array();
    remove_unused_weights(g, {w});  // now, not after the loop: its mapped pages go before the next weight is read
  }
  if (qdq && !summary.layers.empty()) {
    summary.notes.push_back("ONNX Runtime fuses each blocked DequantizeLinear -> MatMul into MatMulNBits with accuracy_level 4 "
                            "(int8 activations) unless its session option session.qdq_matmulnbits_accuracy_level says otherwise; "
                            "on digits_vit that ran 1.41x float's latency where the default MatMulNBits form ran 0.94x "
                            "(bench/quant.txt): for ONNX Runtime, format=qoperator is the faster form");
  }
  if (config.block_search && total.weights > 0) {
    summary.notes.push_back(fmt::format("block-search=mse: rounding error of the MatMul weights (relative L2) {:.4f} with each block's "
                                        "full range, {:.4f} with the searched ranges", std::sqrt(total.full_range / total.weights),
                                        std::sqrt(total.chosen / total.weights)));
    summary.weight_error = {std::sqrt(total.full_range / total.weights), std::sqrt(total.chosen / total.weights)};
  }
}

}  // namespace mopt::quant
