// Tensor payload handling: dtype tables, element counts and conversion of typed data fields to raw.
#include "ir/tensor.h"

#include <xxhash.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "util/error.h"

namespace mopt::ir {

Bytes Bytes::copy_of(std::span<const std::byte> data) {
  return take(std::vector<std::byte>(data.begin(), data.end()));
}

Bytes Bytes::take(std::string&& data) {
  auto owner = std::make_shared<std::string>(std::move(data));
  std::span<const std::byte> view(reinterpret_cast<const std::byte*>(owner->data()), owner->size());
  return Bytes(std::move(owner), view);
}

Bytes Bytes::take(std::vector<std::byte>&& data) {
  auto owner = std::make_shared<std::vector<std::byte>>(std::move(data));
  std::span<const std::byte> view(owner->data(), owner->size());
  return Bytes(std::move(owner), view);
}

Bytes Bytes::produced(size_t size, ByteProducer produce) {
  Bytes b;
  b.produced_ = std::make_shared<Produced>();
  b.produced_->size = size;
  b.produced_->produce = std::move(produce);
  return b;
}

void Bytes::Produced::run(const ByteSink& sink) const {
  size_t done = 0;
  produce([&](std::span<const std::byte> block) {
    if (block.size() > size - done) throw std::logic_error("a produced payload is longer than its size");
    done += block.size();
    if (!block.empty()) sink(block);
  });
  if (done != size) throw std::logic_error("a produced payload is shorter than its size");
}

std::span<const std::byte> Bytes::Produced::build() {
  std::call_once(once, [&] {
    storage.reset(new std::max_align_t[(size + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t)]);
    auto* out = reinterpret_cast<std::byte*>(storage.get());
    size_t done = 0;
    run([&](std::span<const std::byte> block) {
      std::memcpy(out + done, block.data(), block.size());
      done += block.size();
    });
    built.store(true, std::memory_order_release);
  });
  return {reinterpret_cast<const std::byte*>(storage.get()), size};
}

void Bytes::stream(const ByteSink& sink) const {
  if (unbuilt()) return produced_->run(sink);
  if (size() > 0) sink(span());
}

namespace dtype {

std::string name(int32_t code) {
  static const char* const kNames[] = {"undefined", "float",   "uint8",     "int8",      "uint16",
                                       "int16",     "int32",   "int64",     "string",    "bool",
                                       "float16",   "double",  "uint32",    "uint64",    "complex64",
                                       "complex128", "bfloat16", "float8e4m3fn", "float8e4m3fnuz", "float8e5m2",
                                       "float8e5m2fnuz", "uint4", "int4", "float4e2m1"};
  if (code >= 0 && code < static_cast<int32_t>(std::size(kNames))) return kNames[code];
  return fmt::format("dtype({})", code);
}

int bits(int32_t code) {
  switch (code) {
    case kBool: case kUint8: case kInt8: case kFloat8E4M3FN: case kFloat8E4M3FNUZ: case kFloat8E5M2:
    case kFloat8E5M2FNUZ:
      return 8;
    case kUint16: case kInt16: case kFloat16: case kBfloat16:
      return 16;
    case kFloat: case kInt32: case kUint32:
      return 32;
    case kInt64: case kDouble: case kUint64: case kComplex64:
      return 64;
    case kComplex128:
      return 128;
    case kUint4: case kInt4: case kFloat4E2M1:
      return 4;
    default:
      return 0;
  }
}

uint64_t storage_bytes(int32_t code, uint64_t count) {
  return (count * static_cast<uint64_t>(bits(code)) + 7) / 8;
}

}  // namespace dtype

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : proto_.dims()) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

uint64_t Tensor::nbytes() const {
  if (has_raw_) return raw_.size();
  if (dtype() == dtype::kString) {
    uint64_t total = 0;
    for (const auto& s : proto_.string_data()) total += s.size();
    return total;
  }
  int64_t n = numel();
  return n < 0 ? 0 : dtype::storage_bytes(dtype(), static_cast<uint64_t>(n));
}

void Tensor::set_raw(Bytes bytes) {
  proto_.clear_float_data();
  proto_.clear_int32_data();
  proto_.clear_string_data();
  proto_.clear_int64_data();
  proto_.clear_double_data();
  proto_.clear_uint64_data();
  proto_.clear_raw_data();
  proto_.clear_external_data();
  proto_.clear_data_location();
  raw_ = std::move(bytes);
  has_raw_ = true;
  hash_.reset();
}

uint64_t Tensor::content_hash() const {
  if (!hash_) {
    const Bytes bytes = data();
    hash_ = XXH3_64bits(bytes.data(), bytes.size());
  }
  return *hash_;
}

namespace {

template <typename To, typename Field>
Bytes pack(const Field& field) {
  std::vector<std::byte> out(field.size() * sizeof(To));
  for (int i = 0; i < field.size(); ++i) {
    To v = static_cast<To>(field.Get(i));
    std::memcpy(out.data() + static_cast<size_t>(i) * sizeof(To), &v, sizeof(To));
  }
  return Bytes::take(std::move(out));
}

}  // namespace

Bytes Tensor::data() const {
  if (has_raw_) return raw_;
  // Typed fields, as ONNX stores them: small ints, bool and 16-bit floats widened into int32_data;
  // uint32/uint64 in uint64_data; complex numbers as pairs.
  switch (dtype()) {
    case dtype::kFloat: case dtype::kComplex64: return pack<float>(proto_.float_data());
    case dtype::kDouble: case dtype::kComplex128: return pack<double>(proto_.double_data());
    case dtype::kInt64: return pack<int64_t>(proto_.int64_data());
    case dtype::kInt32: return pack<int32_t>(proto_.int32_data());
    case dtype::kInt16: return pack<int16_t>(proto_.int32_data());
    case dtype::kUint16: case dtype::kFloat16: case dtype::kBfloat16: return pack<uint16_t>(proto_.int32_data());
    case dtype::kInt8: return pack<int8_t>(proto_.int32_data());
    case dtype::kUint8: case dtype::kBool: case dtype::kFloat8E4M3FN: case dtype::kFloat8E4M3FNUZ:
    case dtype::kFloat8E5M2: case dtype::kFloat8E5M2FNUZ:
      return pack<uint8_t>(proto_.int32_data());
    case dtype::kUint4: case dtype::kInt4: return pack<uint8_t>(proto_.int32_data());  // one packed byte per entry
    case dtype::kUint32: return pack<uint32_t>(proto_.uint64_data());
    case dtype::kUint64: return pack<uint64_t>(proto_.uint64_data());
    default:
      fail("tensor '{}': cannot read {} data stored in typed fields", name(), dtype::name(dtype()));
  }
}

Bytes float32_payload(const Tensor& tensor) {
  Bytes bytes = tensor.data();
  const uint64_t needed = static_cast<uint64_t>(std::max<int64_t>(tensor.numel(), 0)) * sizeof(float);
  if (bytes.size() != needed) fail("tensor '{}' holds {} bytes but its shape needs {}", tensor.name(), bytes.size(), needed);
  return bytes;
}

}  // namespace mopt::ir
