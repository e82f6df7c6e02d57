// Quantization arithmetic shared by every quantization mode: the integer range of a quantized type,
// scale and zero point from a real range (ONNX Runtime's convention), quantizing weight tensors per
// tensor or per channel, int32 biases, and building the small tensors (scales, zero points) a rewrite
// adds to the graph.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "exec/array.h"
#include "ir/tensor.h"

namespace mopt::quant {

// x rounded half to even, for |x| <= 2^22: adding and subtracting 1.5 * 2^23 in float rounds in the
// sum (the default rounding mode), as nearbyint does, but in loops that vectorize.
inline float round_half_even(float x) {
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23
  return (x + kShift) - kShift;
}

// Integer range of `qtype` (int8, uint8, int16, uint16, int4, uint4). Symmetric signed types drop the lowest value
// (int8 -> [-127, 127]) so that zero sits in the middle and scales are the same for +x and -x.
struct IntRange {
  int32_t lo, hi;
};
IntRange int_range(int32_t qtype, bool symmetric);

struct QuantParams {
  float scale = 1;
  int32_t zero_point = 0;
};

// Scale and zero point covering [rmin, rmax] (widened to include 0 so that 0 is exact). Symmetric
// ranges use max(|rmin|, |rmax|) on both sides. A degenerate range gives scale 1, zero point 0 (or the
// midpoint for symmetric unsigned types).
QuantParams compute_params(double rmin, double rmax, int32_t qtype, bool symmetric);

// round-half-to-even(x / scale) + zero point, saturated to [lo, hi]; the division is done in float as
// ONNX Runtime's QuantizeLinear does.
int32_t quantize_value(float x, const QuantParams& p, IntRange range);

// A weight quantized per tensor (axis empty) or per channel along `axis`, to an 8-bit type.
struct QuantizedWeight {
  exec::Array data;                 // int8/uint8 values in the original element order and shape
  std::vector<QuantParams> params;  // one per channel (or one)
  std::optional<int64_t> axis;
  double rmin = 0, rmax = 0;  // range of the float values
  int32_t value(size_t i, int32_t qtype) const {  // element i as an integer
    return qtype == ir::dtype::kInt8 ? data.data<int8_t>()[i] : data.data<uint8_t>()[i];
  }
};
// Two passes over the values (ranges, then quantization), no other copy: fast on GB-sized models.
QuantizedWeight quantize_weight(std::span<const float> values, const std::vector<int64_t>& dims, int32_t qtype,
                                bool symmetric, std::optional<int64_t> axis);

// A float32 view of a float tensor: borrowed when it is float32 and aligned, converted otherwise
// (float64, float16; other dtypes: mopt::Error). Keep the returned Array alive while using the span.
std::span<const float> float_span(const ir::Tensor& tensor, exec::Array& holder);

// A tensor named `name` of `dtype` holding `values` (converted to the dtype, which must be an 8-, 16- or
// 32-bit integer type or float).
ir::Tensor make_tensor(const std::string& name, int32_t dtype, const std::vector<int64_t>& dims,
                       const std::vector<int32_t>& values);
ir::Tensor make_float_tensor(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& values);
ir::Tensor make_bytes_tensor(const std::string& name, const std::vector<int64_t>& dims, std::vector<uint8_t> bytes);
// A tensor of `dtype` that takes `raw` (little-endian values) without copying it.
ir::Tensor make_raw_tensor(const std::string& name, int32_t dtype, const std::vector<int64_t>& dims, std::vector<std::byte> raw);

}  // namespace mopt::quant
