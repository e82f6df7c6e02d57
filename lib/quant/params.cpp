// Quantization arithmetic; see params.h.
#include "quant/params.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "exec/array.h"
#include "util/error.h"

namespace mopt::quant {

namespace d = ir::dtype;

IntRange int_range(int32_t qtype, bool symmetric) {
  switch (qtype) {
    case d::kInt8: return {symmetric ? -127 : -128, 127};
    case d::kUint8: return {0, 255};
    case d::kInt4: return {symmetric ? -7 : -8, 7};
    case d::kUint4: return {0, 15};
    default: fail("not supported: quantizing to {}", d::name(qtype));
  }
}

QuantParams compute_params(double rmin, double rmax, int32_t qtype, bool symmetric) {
  const IntRange q = int_range(qtype, symmetric);
  rmin = std::min(rmin, 0.0);
  rmax = std::max(rmax, 0.0);
  if (symmetric) {
    const double absmax = std::max(std::fabs(rmin), std::fabs(rmax));
    rmin = -absmax;
    rmax = absmax;
  }
  QuantParams p;
  const double scale = (rmax - rmin) / static_cast<double>(q.hi - q.lo);
  // An all-zero range: any scale represents it; 1 avoids dividing by zero at run time.
  const bool degenerate = !(scale > static_cast<double>(std::numeric_limits<float>::min())) || !std::isfinite(scale);
  p.scale = degenerate ? 1.0f : static_cast<float>(scale);
  if (symmetric) {
    p.zero_point = q.lo < 0 ? 0 : (q.lo + q.hi + 1) / 2;
  } else {
    p.zero_point = static_cast<int32_t>(std::clamp(std::nearbyint(q.lo - rmin / static_cast<double>(p.scale)),
                                                   static_cast<double>(q.lo), static_cast<double>(q.hi)));
  }
  return p;
}

int32_t quantize_value(float x, const QuantParams& p, IntRange range) {
  const float q = std::nearbyint(x / p.scale);
  const double v = static_cast<double>(q) + p.zero_point;
  return static_cast<int32_t>(std::clamp(v, static_cast<double>(range.lo), static_cast<double>(range.hi)));
}

QuantizedWeight quantize_weight(const std::vector<float>& values, const std::vector<int64_t>& dims, int32_t qtype,
                                bool symmetric, std::optional<int64_t> axis) {
  QuantizedWeight w;
  w.axis = axis;
  const IntRange range = int_range(qtype, symmetric);
  int64_t channels = 1, inner = 1;
  if (axis) {
    channels = dims.at(static_cast<size_t>(*axis));
    for (size_t i = static_cast<size_t>(*axis) + 1; i < dims.size(); ++i) inner *= dims[i];
  }
  std::vector<double> lo(static_cast<size_t>(channels), 0.0), hi(static_cast<size_t>(channels), 0.0);
  for (size_t i = 0; i < values.size(); ++i) {
    const size_t c = static_cast<size_t>((static_cast<int64_t>(i) / inner) % channels);
    lo[c] = std::min(lo[c], static_cast<double>(values[i]));
    hi[c] = std::max(hi[c], static_cast<double>(values[i]));
  }
  for (int64_t c = 0; c < channels; ++c) {
    w.params.push_back(compute_params(lo[static_cast<size_t>(c)], hi[static_cast<size_t>(c)], qtype, symmetric));
  }
  w.rmin = *std::min_element(lo.begin(), lo.end());
  w.rmax = *std::max_element(hi.begin(), hi.end());
  w.values.resize(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const size_t c = static_cast<size_t>((static_cast<int64_t>(i) / inner) % channels);
    w.values[i] = quantize_value(values[i], w.params[c], range);
  }
  return w;
}

std::vector<float> float_values(const ir::Tensor& tensor) {
  exec::Array a = exec::Array::from_tensor(tensor);
  if (a.dtype() == d::kFloat) return {a.data<float>(), a.data<float>() + a.numel()};
  if (a.dtype() != d::kDouble && a.dtype() != d::kFloat16) fail("tensor '{}' is {}, not float", tensor.name(), d::name(a.dtype()));
  exec::Array f = exec::cast(a, d::kFloat);
  return {f.data<float>(), f.data<float>() + f.numel()};
}

ir::Tensor make_tensor(const std::string& name, int32_t dtype, const std::vector<int64_t>& dims,
                       const std::vector<int32_t>& values) {
  exec::Array a(d::kInt32, dims);
  std::copy(values.begin(), values.end(), a.data<int32_t>());
  return (dtype == d::kInt32 ? a : exec::cast(a, dtype)).to_tensor(name);
}

ir::Tensor make_float_tensor(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& values) {
  exec::Array a(d::kFloat, dims);
  std::copy(values.begin(), values.end(), a.data<float>());
  return a.to_tensor(name);
}

ir::Tensor make_bytes_tensor(const std::string& name, const std::vector<int64_t>& dims, std::vector<uint8_t> bytes) {
  onnx::TensorProto shell;
  shell.set_name(name);
  shell.set_data_type(d::kUint8);
  for (int64_t v : dims) shell.add_dims(v);
  ir::Tensor t(std::move(shell));
  std::vector<std::byte> raw(bytes.size());
  std::memcpy(raw.data(), bytes.data(), bytes.size());
  t.set_raw(ir::Bytes::take(std::move(raw)));
  return t;
}

}  // namespace mopt::quant
