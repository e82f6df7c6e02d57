// Array storage, dtype conversion (Cast semantics) and half-precision helpers.
#include "exec/array.h"

#include <atomic>

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <stdexcept>

#include <sys/mman.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "exec/dispatch.h"
#include "exec/onednn.h"
#include "exec/parallel.h"
#include "util/error.h"
#include "util/file.h"

namespace mopt::exec {

namespace {
std::atomic<uint64_t> g_max_tensor_bytes{0};

// Freed kernel-output buffers kept for the next run's tensors of the same size. A model's activations
// have the same sizes run after run (calibration, accuracy, benchmarks), and a buffer fresh from the
// system costs a page fault per 4 KiB on first touch: about a tenth of squeezenet's run time and a fifth
// of a 960x960 detector's. Buffers of 64 KiB to 64 MiB are kept, at most 256 MiB in all;
// release_buffer_cache() hands them back.
class BufferCache {
 public:
  static constexpr size_t kMinBytes = size_t{64} << 10, kMaxBytes = size_t{64} << 20, kBudget = size_t{256} << 20;

  void* take(size_t bytes) {
    if (bytes < kMinBytes || bytes > kMaxBytes) return nullptr;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(bytes);
    if (it == free_.end()) return nullptr;
    void* p = it->second;
    free_.erase(it);
    held_ -= bytes;
    return p;
  }

  void give(void* p, size_t bytes) {
    if (bytes >= kMinBytes && bytes <= kMaxBytes) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (held_ + bytes <= kBudget) {
        free_.emplace(bytes, p);
        held_ += bytes;
        return;
      }
    }
    std::free(p);
  }

  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [bytes, p] : free_) std::free(p);
    free_.clear();
    held_ = 0;
  }

 private:
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  size_t held_ = 0;
};

// 64-byte aligned storage. Large buffers are aligned to 2 MiB and asked to be backed by huge pages:
// filling a 100 MiB weight then takes 50 page faults instead of 25600 (faults are expensive, on a VM most).
void* allocate(size_t bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  if (bytes < kHuge) return std::aligned_alloc(64, bytes);
  void* p = nullptr;  // posix_memalign: aligned_alloc wants the size to be a multiple of the alignment
  if (posix_memalign(&p, kHuge, bytes) != 0) return nullptr;
  // Whole huge pages only: a partly used one at the end would hold memory nobody asked for.
  madvise(p, bytes / kHuge * kHuge, MADV_HUGEPAGE);  // advice: without it, ordinary pages
  return p;
}

// The chunks Array::uninitialized_lasting carves: one current chunk, handed out front to back; arrays hold
// their chunk (shared_ptr aliasing), so a chunk is freed when its last array is.
class LastingChunks {
 public:
  static constexpr size_t kChunkBytes = size_t{32} << 20, kMinBytes = size_t{64} << 10, kMaxBytes = size_t{2} << 20;

  // A 64-byte aligned block of `bytes` (a multiple of 64) and the chunk that holds it; null if out of memory.
  std::shared_ptr<void> take(size_t bytes, std::byte*& data) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!current_ || used_ + bytes > kChunkBytes) {
      void* p = allocate(kChunkBytes);
      if (!p) return nullptr;
      current_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
      used_ = 0;
    }
    data = static_cast<std::byte*>(current_.get()) + used_;
    used_ += bytes;
    return current_;
  }

 private:
  std::mutex mutex_;
  std::shared_ptr<void> current_;
  size_t used_ = 0;
};

BufferCache& buffer_cache() {
  static BufferCache* cache = new BufferCache;  // never destroyed: arrays in static objects may outlive it
  return *cache;
}
}  // namespace

void release_buffer_cache() { buffer_cache().release(); }

void set_max_tensor_bytes(uint64_t bytes) { g_max_tensor_bytes.store(bytes); }

int64_t numel(const Shape& shape) {
  // Overflow-checked: a shape from a malformed model or data file must not wrap into a small allocation.
  constexpr int64_t kMaxElements = int64_t{1} << 48;
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail("negative dimension in shape {}", shape_string(shape));
    if (__builtin_mul_overflow(n, d, &n) || n > kMaxElements)
      fail("a tensor of shape {} has more elements than any memory holds", shape_string(shape));
  }
  return n;
}

std::string shape_string(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ",")); }

size_t element_size(int32_t dtype) {
  namespace d = ir::dtype;
  switch (dtype) {
    case d::kBool: case d::kInt8: case d::kUint8: return 1;
    case d::kInt16: case d::kUint16: case d::kFloat16: case d::kBfloat16: return 2;
    case d::kFloat: case d::kInt32: case d::kUint32: return 4;
    case d::kDouble: case d::kInt64: case d::kUint64: return 8;
    default: return 0;
  }
}

Array::Array(int32_t dtype, Shape shape) : Array(dtype, std::move(shape), true) {}

Array Array::uninitialized(int32_t dtype, Shape shape) { return Array(dtype, std::move(shape), false); }

Array Array::uninitialized_lasting(int32_t dtype, Shape shape) {
  const size_t size = element_size(dtype);
  const int64_t count = exec::numel(shape);
  const size_t bytes = (static_cast<size_t>(count) * size + 63) / 64 * 64;
  const uint64_t limit = g_max_tensor_bytes.load();
  if (size == 0 || bytes < LastingChunks::kMinBytes || bytes >= LastingChunks::kMaxBytes || (limit && bytes > limit))
    return uninitialized(dtype, std::move(shape));  // its own buffer (and the usual checks and errors)
  static LastingChunks* chunks = new LastingChunks;  // never destroyed, as the buffer cache
  std::byte* data = nullptr;
  std::shared_ptr<void> chunk = chunks->take(bytes, data);
  if (!chunk) fail("out of memory allocating a {} tensor of shape {}", ir::dtype::name(dtype), shape_string(shape));
  Array a;
  a.dtype_ = dtype;
  a.shape_ = std::move(shape);
  a.numel_ = count;
  a.owner_ = std::shared_ptr<const void>(std::move(chunk), data);  // holds the chunk
  a.data_ = data;
  return a;
}

Array::Array(int32_t dtype, Shape shape, bool zero) : dtype_(dtype), shape_(std::move(shape)), numel_(exec::numel(shape_)) {
  size_t size = element_size(dtype);
  if (size == 0) fail("not supported: {} tensors in the executor", ir::dtype::name(dtype));
  // 64-byte aligned, zero-filled storage (at least one element so data() is never null).
  size_t bytes = std::max<size_t>(static_cast<size_t>(numel_) * size, 1);
  if (const uint64_t limit = g_max_tensor_bytes.load(); limit && bytes > limit)
    fail("a {} tensor of shape {} needs {:.1f} MiB, over the executor's limit of {:.1f} MiB", ir::dtype::name(dtype),
         shape_string(shape_), static_cast<double>(bytes) / (1 << 20), static_cast<double>(limit) / (1 << 20));
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = buffer_cache().take(rounded);
  if (!p) p = allocate(rounded);
  if (!p) fail("out of memory allocating a {} tensor of shape {}", ir::dtype::name(dtype), shape_string(shape_));
  if (zero) std::memset(p, 0, rounded);
  owner_ = std::shared_ptr<void>(p, [rounded](void* q) { buffer_cache().give(q, rounded); });
  data_ = static_cast<std::byte*>(p);
}

// int4/uint4 tensors (two values per byte, the first in the low nibble) widened to one int8/uint8 per value:
// the kernels read 4-bit codes as the 8-bit integers they equal.
static Array widen_4bit(const ir::Tensor& tensor) {
  const bool is_signed = tensor.dtype() == ir::dtype::kInt4;
  Array a = Array::uninitialized(is_signed ? ir::dtype::kInt8 : ir::dtype::kUint8, tensor.dims());
  const ir::Bytes bytes = tensor.data();
  const uint64_t needed = ir::dtype::storage_bytes(tensor.dtype(), static_cast<uint64_t>(a.numel()));
  if (bytes.size() != needed) {
    fail("tensor '{}' holds {} bytes but its shape {} needs {}", tensor.name(), bytes.size(), shape_string(a.shape()), needed);
  }
  const auto* packed = reinterpret_cast<const uint8_t*>(bytes.data());
  auto* out = a.data<uint8_t>();
  for (int64_t i = 0; i < a.numel(); ++i) {
    const unsigned nibble = (packed[i / 2] >> ((i & 1) * 4)) & 0xFu;
    out[i] = static_cast<uint8_t>(is_signed && nibble >= 8 ? nibble | 0xF0u : nibble);  // sign-extended for int4
  }
  return a;
}

namespace {
// An aligned copy of a payload that is not (a weight at an odd offset in a mapped model), and the payload:
// while the copy lives its source does, so the source's address names these bytes and no others.
struct AlignedCopy {
  ir::Bytes source;
  Array data;
};

// One copy per payload for everyone who reads it at the same time: the executors of the original and the
// optimized model, which share most weights, and the per-layer comparison. A payload in a mapped file is
// read from the file (pread), so its pages are not faulted in as well: the copy is the only one resident.
std::shared_ptr<const AlignedCopy> aligned_copy(const ir::Bytes& bytes) {
  static std::mutex mutex;
  static std::map<std::pair<const std::byte*, size_t>, std::weak_ptr<const AlignedCopy>> copies;
  const std::pair key{bytes.data(), bytes.size()};
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = copies.find(key); it != copies.end()) {
      if (std::shared_ptr<const AlignedCopy> live = it->second.lock()) return live;
    }
  }
  auto copy = std::make_shared<AlignedCopy>();
  copy->source = bytes;
  copy->data = Array::uninitialized(ir::dtype::kUint8, {static_cast<int64_t>(bytes.size())});
  const std::span<std::byte> out(copy->data.data<std::byte>(), bytes.size());
  if (std::shared_ptr<const MappedFile> file = MappedFile::containing(bytes.span())) file->read(bytes.span(), out);
  else std::memcpy(out.data(), bytes.data(), bytes.size());
  std::lock_guard<std::mutex> lock(mutex);
  std::erase_if(copies, [](const auto& entry) { return entry.second.expired(); });
  copies[key] = copy;
  return copy;
}
}  // namespace

Array Array::from_tensor(const ir::Tensor& tensor) {
  int32_t dtype = tensor.dtype();
  if (dtype == ir::dtype::kInt4 || dtype == ir::dtype::kUint4) return widen_4bit(tensor);
  if (element_size(dtype) == 0) fail("not supported: {} tensor '{}' in the executor", ir::dtype::name(dtype), tensor.name());
  ir::Bytes bytes = tensor.data();
  Array a;
  a.dtype_ = dtype;
  a.shape_ = tensor.dims();
  a.numel_ = exec::numel(a.shape_);
  if (bytes.size() != a.nbytes()) {
    fail("tensor '{}' holds {} bytes but its shape {} needs {}", tensor.name(), bytes.size(), shape_string(a.shape_),
         a.nbytes());
  }
  if (bytes.unbuilt()) {
    // Produced on demand (a pruned or converted weight): made into a buffer of this array's own, block by
    // block, the payload left unbuilt (building it would keep a copy for as long as the model lives).
    Array made = uninitialized(dtype, a.shape_);
    size_t offset = 0;
    bytes.stream([&](std::span<const std::byte> block) {
      if (block.size() > made.nbytes() - offset) throw std::logic_error("a produced payload is longer than its size");
      std::memcpy(made.data_ + offset, block.data(), block.size());
      offset += block.size();
    });
    return made;
  }
  if (reinterpret_cast<uintptr_t>(bytes.data()) % element_size(dtype) == 0 && !bytes.empty()) {
    // Borrow: keep the Bytes' owner alive through a copy of the Bytes object.
    auto holder = std::make_shared<ir::Bytes>(bytes);
    a.data_ = const_cast<std::byte*>(holder->data());
    a.owner_ = std::move(holder);
    return a;
  }
  if (bytes.empty()) return uninitialized(dtype, a.shape_);
  std::shared_ptr<const AlignedCopy> copy = aligned_copy(bytes);
  a.data_ = copy->data.data_;
  a.owner_ = std::shared_ptr<const void>(std::move(copy), a.data_);
  return a;
}

Array Array::reshaped(Shape shape) const {
  if (exec::numel(shape) != numel_) fail("cannot reshape {} to {}", shape_string(shape_), shape_string(shape));
  if (channels_last() && shape != shape_) throw std::logic_error("reshaped: a channels-last array keeps its shape");
  Array a = *this;
  a.shape_ = std::move(shape);
  return a;
}

Array Array::clone() const {
  Array a = uninitialized(dtype_, shape_);
  if (nbytes()) std::memcpy(a.data_, data_, nbytes());
  a.layout_ = layout_;
  return a;
}

Array Array::with_layout(Layout layout) const {
  if (layout == Layout::kChannelsLast && (rank() < 3 || rank() > 5))
    throw std::logic_error("with_layout: channels-last is for arrays of rank 3 to 5");
  Array a = *this;
  a.layout_ = layout;
  return a;
}

namespace {

// Each of `images` row-major [rows, cols] matrices of `in` transposed into `out`, in cache-sized tiles.
template <typename U>
void transpose_images(const U* in, U* out, int64_t images, int64_t rows, int64_t cols) {
  constexpr int64_t kTile = 32;
  const int64_t row_tiles = (rows + kTile - 1) / kTile;
  parallel_for(images * row_tiles, kTile * cols, [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) {
      const int64_t image = t / row_tiles, r0 = t % row_tiles * kTile, r1 = std::min(rows, r0 + kTile);
      const U* src = in + image * rows * cols;
      U* dst = out + image * rows * cols;
      for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
        const int64_t c1 = std::min(cols, c0 + kTile);
        for (int64_t r = r0; r < r1; ++r) {
          for (int64_t c = c0; c < c1; ++c) dst[c * rows + r] = src[r * cols + c];
        }
      }
    }
  });
}

}  // namespace

namespace {
std::atomic<int64_t> g_layout_copies{0};
}

int64_t layout_copies() { return g_layout_copies.load(); }

Array Array::in_layout(Layout layout) const {
  if (layout == layout_) return *this;
  g_layout_copies.fetch_add(1, std::memory_order_relaxed);
  Array out = uninitialized(dtype_, shape_).with_layout(layout);
  if (numel_ == 0) return out;
  // [N, C, S] <-> [N, S, C], S the spatial positions.
  const int64_t images = shape_[0], channels = shape_[1], spatial = numel_ / (images * channels);
  const int64_t rows = layout == Layout::kChannelsLast ? channels : spatial, cols = layout == Layout::kChannelsLast ? spatial : channels;
  if (dtype_ == ir::dtype::kFloat && dnnl_reorder_layout(shape_, layout == Layout::kChannelsLast, data<float>(), out.data<float>()))
    return out;
  switch (element_size(dtype_)) {
    case 1: transpose_images(data<uint8_t>(), out.data<uint8_t>(), images, rows, cols); break;
    case 2: transpose_images(data<uint16_t>(), out.data<uint16_t>(), images, rows, cols); break;
    case 4: transpose_images(data<uint32_t>(), out.data<uint32_t>(), images, rows, cols); break;
    default: transpose_images(data<uint64_t>(), out.data<uint64_t>(), images, rows, cols); break;
  }
  return out;
}

std::vector<int64_t> Array::to_int64s() const {
  if (channels_last()) return in_layout(Layout::kPlain).to_int64s();
  return visit<kInts | kBools>(dtype_, "reading integers", [&]<typename T>(T) {
    std::vector<int64_t> out(static_cast<size_t>(numel_));
    for (int64_t i = 0; i < numel_; ++i) out[static_cast<size_t>(i)] = static_cast<int64_t>(data<T>()[i]);
    return out;
  });
}

std::vector<double> Array::to_doubles() const {
  if (channels_last()) return in_layout(Layout::kPlain).to_doubles();
  if (is_16bit_float(dtype_)) return cast(*this, ir::dtype::kFloat).to_doubles();
  return visit<kNumbers | kBools>(dtype_, "reading numbers", [&]<typename T>(T) {
    std::vector<double> out(static_cast<size_t>(numel_));
    for (int64_t i = 0; i < numel_; ++i) out[static_cast<size_t>(i)] = static_cast<double>(data<T>()[i]);
    return out;
  });
}

std::vector<double> Array::first_doubles(int64_t count) const {
  if (channels_last()) return in_layout(Layout::kPlain).first_doubles(count);
  const int64_t n = std::max<int64_t>(0, std::min(count, numel_));
  Array head(dtype_, {n});
  std::memcpy(head.bytes(), data_, static_cast<size_t>(n) * element_size(dtype_));
  return head.to_doubles();
}

double Array::scalar_double() const {
  if (numel_ != 1) fail("expected a single value, got shape {}", shape_string(shape_));
  return to_doubles()[0];
}

ir::Tensor Array::to_tensor(const std::string& name) const {
  if (channels_last()) return in_layout(Layout::kPlain).to_tensor(name);
  onnx::TensorProto shell;
  shell.set_name(name);
  shell.set_data_type(dtype_);
  for (int64_t d : shape_) shell.add_dims(d);
  ir::Tensor t(std::move(shell));
  t.set_raw(ir::Bytes::copy_of({data_, nbytes()}));
  return t;
}

ir::Tensor Array::into_tensor(const std::string& name) && {
  if (channels_last()) *this = in_layout(Layout::kPlain);
  onnx::TensorProto shell;
  shell.set_name(name);
  shell.set_data_type(dtype_);
  for (int64_t d : shape_) shell.add_dims(d);
  ir::Tensor t(std::move(shell));
  if (owner_ == nullptr) t.set_raw(ir::Bytes::copy_of({data_, nbytes()}));
  else t.set_raw(ir::Bytes(std::move(owner_), {data_, nbytes()}));
  *this = Array();
  return t;
}

float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        mantissa <<= 1;
      } while ((mantissa & 0x400) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mantissa & 0x3ff) << 13;
    }
  } else if (exponent == 31) {
    bits = sign | 0x7f800000 | mantissa << 13;
  } else {
    bits = sign | (exponent + 127 - 15) << 23 | mantissa << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  uint32_t abs = x & 0x7fffffff;
  if (abs >= 0x7f800000) return static_cast<uint16_t>(sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0));  // inf/nan
  if (abs >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // rounds to >= 65520: overflow to inf
  if (abs < 0x38800000) {  // below the smallest normal half: subnormal or zero, round to nearest even
    float a;
    std::memcpy(&a, &abs, 4);
    float scaled = a * 16777216.0f;  // 2^24: one half-subnormal ulp = 1
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(scaled)));
  }
  uint32_t mantissa_odd = (abs >> 13) & 1;
  abs += 0xc8000fff + mantissa_odd;  // rebias exponent (-112 << 23) and round to nearest even
  return static_cast<uint16_t>(sign | (abs >> 13));
}

namespace {
#if defined(__x86_64__)
// vcvtps2ph rounds to nearest even, makes subnormals and overflows to infinity as float_to_half does;
// only NaN payloads differ, so blocks holding a NaN take the portable path.
__attribute__((target("avx,f16c"))) void floats_to_half_f16c(std::span<const float> in, std::span<uint16_t> out) {
  size_t i = 0;
  for (; i + 8 <= in.size(); i += 8) {
    const __m256 x = _mm256_loadu_ps(in.data() + i);
    if (_mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)) != 0) {
      for (size_t j = i; j < i + 8; ++j) out[j] = float_to_half(in[j]);
      continue;
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out.data() + i), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < in.size(); ++i) out[i] = float_to_half(in[i]);
}
#endif

#if defined(__x86_64__)
// CPUID leaf 1: AVX, F16C, and an OS that saves the YMM registers (OSXSAVE, then XCR0 bits 1 and 2).
// Asked directly: clang 14's __builtin_cpu_supports does not know "f16c".
bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  const unsigned osxsave = 1u << 27, avx = 1u << 28, f16c = 1u << 29;
  if ((ecx & (osxsave | avx | f16c)) != (osxsave | avx | f16c)) return false;
  unsigned xcr0_low = 0, xcr0_high = 0;
  __asm__("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
  return (xcr0_low & 6u) == 6u;
}
#endif
}  // namespace

__attribute__((target("avx,f16c"))) void half_to_floats_f16c(std::span<const uint16_t> in, std::span<float> out) {
  size_t i = 0;
  for (; i + 8 <= in.size(); i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in.data() + i));
    // A NaN (magnitude above infinity's 0x7c00) takes half_to_float's bits, whatever F16C does to its payload.
    if (_mm_movemask_epi8(_mm_cmpgt_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7fff)), _mm_set1_epi16(0x7c00))) != 0) {
      for (size_t j = i; j < i + 8; ++j) out[j] = half_to_float(in[j]);
      continue;
    }
    _mm256_storeu_ps(out.data() + i, _mm256_cvtph_ps(h));
  }
  for (; i < in.size(); ++i) out[i] = half_to_float(in[i]);
}

void half_to_floats(std::span<const uint16_t> in, std::span<float> out) {
#if defined(__x86_64__)
  static const bool f16c = cpu_has_f16c();
  if (f16c) return half_to_floats_f16c(in, out);
#endif
  for (size_t i = 0; i < in.size(); ++i) out[i] = half_to_float(in[i]);
}

void floats_to_half(std::span<const float> in, std::span<uint16_t> out) {
#if defined(__x86_64__)
  static const bool f16c = cpu_has_f16c();
  if (f16c) return floats_to_half_f16c(in, out);
#endif
  for (size_t i = 0; i < in.size(); ++i) out[i] = float_to_half(in[i]);
}

float bfloat16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_bfloat16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((x >> 16) | 0x40);  // NaN stays a quiet NaN
  x += 0x7fff + ((x >> 16) & 1);  // round to nearest even; overflow rounds to inf as it should
  return static_cast<uint16_t>(x >> 16);
}

namespace {

template <typename To, typename From>
To convert(From v) {
  if constexpr (std::is_same_v<To, bool>) {
    return v != From{};
  } else if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To>) {
    // Out-of-range and NaN conversions are undefined in ONNX; saturate instead of invoking UB.
    if (std::isnan(v)) return To{};
    double t = std::trunc(static_cast<double>(v));
    if (t <= static_cast<double>(std::numeric_limits<To>::lowest())) return std::numeric_limits<To>::lowest();
    if (t >= static_cast<double>(std::numeric_limits<To>::max())) return std::numeric_limits<To>::max();
    return static_cast<To>(t);
  } else {
    return static_cast<To>(v);
  }
}

}  // namespace

Array cast(const Array& input, int32_t dtype) {
  if (input.dtype() == dtype) return input;
  if (input.channels_last()) return cast(input.with_layout(Layout::kPlain), dtype).with_layout(Layout::kChannelsLast);  // elementwise
  namespace d = ir::dtype;
  if (is_16bit_float(input.dtype())) {
    Array f = Array::uninitialized(d::kFloat, input.shape());
    const size_t count = static_cast<size_t>(input.numel());
    if (input.dtype() == d::kFloat16) {
      half_to_floats({input.data<uint16_t>(), count}, {f.data<float>(), count});
    } else {
      for (size_t i = 0; i < count; ++i) f.data<float>()[i] = bfloat16_to_float(input.data<uint16_t>()[i]);
    }
    return cast(f, dtype);
  }
  if (is_16bit_float(dtype)) {
    Array f = cast(input, d::kFloat);
    Array out(dtype, input.shape());
    const bool bf16 = dtype == d::kBfloat16;
    for (int64_t i = 0; i < input.numel(); ++i) {
      const float v = f.data<float>()[i];
      out.data<uint16_t>()[i] = bf16 ? float_to_bfloat16(v) : float_to_half(v);
    }
    return out;
  }
  Array out(dtype, input.shape());
  visit<kNumbers | kBools>(input.dtype(), "Cast", [&]<typename From>(From) {
    visit<kNumbers | kBools>(dtype, "Cast", [&]<typename To>(To) {
      const From* src = input.data<From>();
      To* dst = out.data<To>();
      for (int64_t i = 0; i < input.numel(); ++i) dst[i] = convert<To>(src[i]);
    });
  });
  return out;
}

}  // namespace mopt::exec
