// Compile-time dispatch on an ONNX dtype code: visit(dtype, f) calls f(T{}) with the C++ element type.
// float16 is visited as `half` (raw bits); kernels that compute in float let the executor convert it.
#pragma once
#include <cstdint>
#include <type_traits>

#include "exec/array.h"
#include "util/error.h"

namespace mopt::exec {

struct half {
  uint16_t bits;
};

template <typename T>
constexpr int32_t dtype_of() {
  namespace d = ir::dtype;
  if constexpr (std::is_same_v<T, float>) return d::kFloat;
  else if constexpr (std::is_same_v<T, double>) return d::kDouble;
  else if constexpr (std::is_same_v<T, half>) return d::kFloat16;
  else if constexpr (std::is_same_v<T, bool>) return d::kBool;
  else if constexpr (std::is_same_v<T, int8_t>) return d::kInt8;
  else if constexpr (std::is_same_v<T, uint8_t>) return d::kUint8;
  else if constexpr (std::is_same_v<T, int16_t>) return d::kInt16;
  else if constexpr (std::is_same_v<T, uint16_t>) return d::kUint16;
  else if constexpr (std::is_same_v<T, int32_t>) return d::kInt32;
  else if constexpr (std::is_same_v<T, uint32_t>) return d::kUint32;
  else if constexpr (std::is_same_v<T, int64_t>) return d::kInt64;
  else if constexpr (std::is_same_v<T, uint64_t>) return d::kUint64;
  else static_assert(!sizeof(T), "unsupported element type");
}

// Which dtypes a kernel accepts.
enum TypeSet : unsigned {
  kFloats = 1,      // float, double (float16 is computed as float by the executor)
  kSignedInts = 2,  // int8, int16, int32, int64
  kUnsignedInts = 4,
  kBools = 8,
  kHalf = 16,  // float16 visited as `half` (only for kernels that move bits, never compute)
  kInts = kSignedInts | kUnsignedInts,
  kNumbers = kFloats | kInts,
  kAll = kNumbers | kBools | kHalf,
};

template <unsigned accepted, typename F>
decltype(auto) visit(int32_t dtype, const char* what, F&& f) {
  namespace d = ir::dtype;
  switch (dtype) {
    case d::kFloat: if constexpr ((accepted & kFloats) != 0) return f(float{}); break;
    case d::kDouble: if constexpr ((accepted & kFloats) != 0) return f(double{}); break;
    case d::kFloat16: if constexpr ((accepted & kHalf) != 0) return f(half{}); break;
    case d::kBool: if constexpr ((accepted & kBools) != 0) return f(bool{}); break;
    case d::kInt8: if constexpr ((accepted & kSignedInts) != 0) return f(int8_t{}); break;
    case d::kInt16: if constexpr ((accepted & kSignedInts) != 0) return f(int16_t{}); break;
    case d::kInt32: if constexpr ((accepted & kSignedInts) != 0) return f(int32_t{}); break;
    case d::kInt64: if constexpr ((accepted & kSignedInts) != 0) return f(int64_t{}); break;
    case d::kUint8: if constexpr ((accepted & kUnsignedInts) != 0) return f(uint8_t{}); break;
    case d::kUint16: if constexpr ((accepted & kUnsignedInts) != 0) return f(uint16_t{}); break;
    case d::kUint32: if constexpr ((accepted & kUnsignedInts) != 0) return f(uint32_t{}); break;
    case d::kUint64: if constexpr ((accepted & kUnsignedInts) != 0) return f(uint64_t{}); break;
    default: break;
  }
  fail("not supported: {} on {} tensors", what, ir::dtype::name(dtype));
}

}  // namespace mopt::exec
