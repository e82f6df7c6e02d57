// Quantization arithmetic; see params.h.
#include "quant/params.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>

#include "exec/array.h"
#include "exec/parallel.h"
#include "util/error.h"
#include "util/file.h"

namespace mopt::quant {

namespace d = ir::dtype;

IntRange int_range(int32_t qtype, bool symmetric) {
  switch (qtype) {
    case d::kInt8: return {symmetric ? -127 : -128, 127};
    case d::kUint8: return {0, 255};
    case d::kInt4: return {symmetric ? -7 : -8, 7};
    case d::kUint4: return {0, 15};
    case d::kInt16: return {symmetric ? -32767 : -32768, 32767};
    case d::kUint16: return {0, 65535};
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

QuantizedWeight quantize_weight(std::span<const float> values, const std::vector<int64_t>& dims, int32_t qtype,
                                bool symmetric, std::optional<int64_t> axis) {
  if (qtype != d::kInt8 && qtype != d::kUint8) fail("not supported: weights quantized to {}", d::name(qtype));
  QuantizedWeight w;
  w.axis = axis;
  const IntRange range = int_range(qtype, symmetric);
  // values = [outer, channels, inner]
  int64_t channels = 1, inner = static_cast<int64_t>(values.size());
  if (axis) {
    channels = dims.at(static_cast<size_t>(*axis));
    inner = 1;
    for (size_t i = static_cast<size_t>(*axis) + 1; i < dims.size(); ++i) inner *= dims[i];
  }
  const int64_t outer = channels * inner == 0 ? 0 : static_cast<int64_t>(values.size()) / (channels * inner);
  const int64_t total = outer * channels * inner;
  // Both passes run over element ranges spread across the threads; each range walks the rows (o, c) it
  // covers. Minima and maxima merge in any order to the same values, so nothing depends on the split.
  auto for_rows = [&](int64_t begin, int64_t end, const auto& fn) {  // fn(channel, first, count)
    for (int64_t at = begin; at < end;) {
      const int64_t row = at / inner, count = std::min(end, (row + 1) * inner) - at;
      fn(row % channels, at, count);
      at += count;
    }
  };
  std::vector<float> lo(static_cast<size_t>(channels), 0.0f), hi(static_cast<size_t>(channels), 0.0f);
  std::mutex merge;
  exec::parallel_for(total, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> part_lo(static_cast<size_t>(channels), 0.0f), part_hi(static_cast<size_t>(channels), 0.0f);
    for_rows(begin, end, [&](int64_t c, int64_t first, int64_t count) {
      const float* v = values.data() + first;
      // Eight independent lanes so the compiler can vectorize the reduction.
      float l8[8], h8[8];
      std::fill(l8, l8 + 8, part_lo[static_cast<size_t>(c)]);
      std::fill(h8, h8 + 8, part_hi[static_cast<size_t>(c)]);
      int64_t i = 0;
      for (; i + 8 <= count; i += 8) {
        for (int k = 0; k < 8; ++k) {
          l8[k] = v[i + k] < l8[k] ? v[i + k] : l8[k];
          h8[k] = v[i + k] > h8[k] ? v[i + k] : h8[k];
        }
      }
      for (; i < count; ++i) {
        l8[0] = std::min(l8[0], v[i]);
        h8[0] = std::max(h8[0], v[i]);
      }
      part_lo[static_cast<size_t>(c)] = *std::min_element(l8, l8 + 8);
      part_hi[static_cast<size_t>(c)] = *std::max_element(h8, h8 + 8);
    });
    const std::lock_guard<std::mutex> lock(merge);
    for (size_t c = 0; c < lo.size(); ++c) {
      lo[c] = std::min(lo[c], part_lo[c]);
      hi[c] = std::max(hi[c], part_hi[c]);
    }
  });
  for (int64_t c = 0; c < channels; ++c) {
    w.params.push_back(compute_params(lo[static_cast<size_t>(c)], hi[static_cast<size_t>(c)], qtype, symmetric));
  }
  w.rmin = channels ? *std::min_element(lo.begin(), lo.end()) : 0.0;
  w.rmax = channels ? *std::max_element(hi.begin(), hi.end()) : 0.0;
  // Written in full below; not zero-filled first (a fresh buffer's pages, huge ones for big weights).
  w.data = exec::Array::uninitialized_lasting(qtype, dims);
  const float qlo = static_cast<float>(range.lo), qhi = static_cast<float>(range.hi);
  exec::parallel_for(total, 2, [&](int64_t begin, int64_t end) {
    for_rows(begin, end, [&](int64_t c, int64_t first, int64_t count) {
      const QuantParams& p = w.params[static_cast<size_t>(c)];
      const float zp = static_cast<float>(p.zero_point);
      const float* v = values.data() + first;
      std::byte* out = w.data.bytes() + first;
      // Same arithmetic as quantize_value: round half to even of x / scale (bounded to 2^22; larger values
      // saturate anyway), plus the zero point.
      for (int64_t i = 0; i < count; ++i) {
        float q = std::clamp(v[i] / p.scale, -4194304.0f, 4194304.0f);
        q = round_half_even(q) + zp;
        q = q < qlo ? qlo : (q > qhi ? qhi : q);
        q = q == q ? q : zp;  // a NaN weight becomes 0
        out[i] = static_cast<std::byte>(static_cast<int32_t>(q) & 0xff);
      }
    });
  });
  return w;
}

std::span<const float> float_span(const ir::Tensor& tensor, exec::Array& holder) {
  // A float weight in the mapped model is read from its file into memory of its own: it is read once, to
  // be replaced, and faulting it in through the map would touch every page a second time.
  if (tensor.dtype() == d::kFloat && tensor.has_raw()) {
    const std::span<const std::byte> raw = tensor.raw().span();
    if (const auto file = MappedFile::containing(raw); file && raw.size() == d::storage_bytes(d::kFloat, static_cast<uint64_t>(tensor.numel()))) {
      holder = exec::Array::uninitialized(d::kFloat, tensor.dims());
      file->read(raw, {holder.bytes(), raw.size()});
      return {holder.data<float>(), static_cast<size_t>(holder.numel())};
    }
  }
  holder = exec::Array::from_tensor(tensor);
  if (holder.dtype() != d::kFloat) {
    if (holder.dtype() != d::kDouble && holder.dtype() != d::kFloat16) fail("tensor '{}' is {}, not float", tensor.name(), d::name(holder.dtype()));
    holder = exec::cast(holder, d::kFloat);
  }
  return {holder.data<float>(), static_cast<size_t>(holder.numel())};
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

ir::Tensor make_raw_tensor(const std::string& name, int32_t dtype, const std::vector<int64_t>& dims, std::vector<std::byte> raw) {
  onnx::TensorProto shell;
  shell.set_name(name);
  shell.set_data_type(dtype);
  for (int64_t v : dims) shell.add_dims(v);
  ir::Tensor t(std::move(shell));
  t.set_raw(ir::Bytes::take(std::move(raw)));
  return t;
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
