// Array: a value flowing through the executor -- dtype, shape and a buffer. Initializers borrow their
// bytes from the loaded model (no copy) when suitably aligned; kernel outputs own fresh buffers.
// Buffers are shared and treated as immutable once a kernel has produced them.
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ir/tensor.h"

namespace mopt::exec {

using Shape = std::vector<int64_t>;

int64_t numel(const Shape& shape);
// The largest tensor the executor allocates, in bytes (0: no limit besides memory itself); one past it
// is an Error naming dtype and shape. Process-wide.
void set_max_tensor_bytes(uint64_t bytes);
// Frees the buffers kept for reuse by later runs (see BufferCache in array.cpp); the Executor does this
// when it is destroyed.
void release_buffer_cache();
std::string shape_string(const Shape& shape);  // "[1,3,224,224]"
// Copies Array::in_layout has made in this process, so a test can show where layouts were reordered.
int64_t layout_copies();
// Bytes per element of the dtypes the executor computes with (bool is one byte); 0 for others.
size_t element_size(int32_t dtype);

// How an array's elements lie in its buffer. The shape is always ONNX's [N, C, D...]; kChannelsLast stores
// it as [N, D..., C] (NHWC for images), the layout oneDNN's convolutions run in, so that a chain of
// convolutions, activations and pooling need not reorder every activation to NCHW and back. Only kernels
// registered with KernelDef::channels_last see such arrays; the executor gives every other reader, graph
// output and observer a plain copy (GraphRunner::run_graph).
enum class Layout : uint8_t { kPlain, kChannelsLast };

class Array {
 public:
  Array() = default;
  // A new zero-filled array.
  Array(int32_t dtype, Shape shape);
  // A new array whose contents are unspecified, for kernels that write every element.
  static Array uninitialized(int32_t dtype, Shape shape);
  // The same, for a tensor that lives until the model is written (a pass's new weight): arrays of 64 KiB to
  // 2 MiB are carved in order from 32 MiB chunks backed by huge pages, so they cost a page fault per 2 MiB
  // instead of per 4 KiB (about 11 us each on a VM: 0.1 s for bert_like's 590 KB int8 weights and 4-bit blobs).
  // A chunk goes when its last array does; an array never shares its buffer with a later one.
  static Array uninitialized_lasting(int32_t dtype, Shape shape);
  // An array over the bytes of an IR tensor: borrowed when aligned, copied otherwise (made into a buffer of
  // its own when produced on demand and not built, which stays so). int4/uint4 tensors are widened to
  // int8/uint8 (one value per byte), the types every kernel reads them as.
  static Array from_tensor(const ir::Tensor& tensor);
  template <typename T>
  static Array scalar(int32_t dtype, T value) {
    Array a(dtype, {});
    *a.data<T>() = value;
    return a;
  }
  template <typename T>
  static Array vector(int32_t dtype, const std::vector<T>& values) {
    Array a(dtype, {static_cast<int64_t>(values.size())});
    if (!values.empty()) std::memcpy(a.data<T>(), values.data(), values.size() * sizeof(T));
    return a;
  }

  bool defined() const { return dtype_ != 0; }
  int32_t dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t dim(int64_t axis) const { return shape_[static_cast<size_t>(axis)]; }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * element_size(dtype_); }
  Layout layout() const { return layout_; }
  bool channels_last() const { return layout_ == Layout::kChannelsLast; }
  // The same buffer, its elements declared to lie in `layout` (rank 3 to 5 for kChannelsLast): for the
  // kernel that wrote them so.
  Array with_layout(Layout layout) const;
  // This array in `layout`: itself when it already is, else a reordered copy.
  Array in_layout(Layout layout) const;

  template <typename T>
  const T* data() const { return reinterpret_cast<const T*>(data_); }
  template <typename T>
  T* data() { return reinterpret_cast<T*>(data_); }
  const std::byte* bytes() const { return data_; }
  std::byte* bytes() { return data_; }

  // Same buffer, new shape (element count must match; a channels-last array keeps its shape).
  Array reshaped(Shape shape) const;
  // An owned deep copy.
  Array clone() const;
  // The values as int64 (any integer dtype), e.g. for shape-like inputs.
  std::vector<int64_t> to_int64s() const;
  // The values converted to double (any numeric dtype), for scalar parameters and comparisons.
  std::vector<double> to_doubles() const;
  // The first min(count, numel) values as double, without converting the rest (previews of big tensors).
  std::vector<double> first_doubles(int64_t count) const;
  double scalar_double() const;
  // An IR tensor holding a copy of this array's bytes (for constant folding and saving outputs).
  ir::Tensor to_tensor(const std::string& name) const;
  // Whether this array is the only holder of its buffer (no other array, view or tensor shares it).
  bool sole_owner() const { return owner_ != nullptr && owner_.use_count() == 1; }

  // The same tensor without a copy: it shares this array's buffer, which nothing may write to afterwards
  // (the array is given up; a weight-sized copy is what makes big models need twice their memory).
  ir::Tensor into_tensor(const std::string& name) &&;

 private:
  int32_t dtype_ = 0;
  Shape shape_;
  int64_t numel_ = 0;
  Layout layout_ = Layout::kPlain;
  std::shared_ptr<const void> owner_;
  std::byte* data_ = nullptr;
  Array(int32_t dtype, Shape shape, bool zero);
};

// IEEE half <-> float.
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
// float_to_half over a whole range (out.size() == in.size()), with the F16C instructions where the CPU
// has them: the same bits, 10x faster.
void floats_to_half(std::span<const float> in, std::span<uint16_t> out);
// half_to_float over a whole range (out.size() == in.size()), with F16C where the CPU has it: the same bits.
void half_to_floats(std::span<const uint16_t> in, std::span<float> out);
// bfloat16 (the upper half of a float32) <-> float; float -> bfloat16 rounds to nearest even.
float bfloat16_to_float(uint16_t b);
uint16_t float_to_bfloat16(float f);
// float16 and bfloat16: the executor computes them in float32 (see GraphRunner::run_kernel).
inline bool is_16bit_float(int32_t dtype) { return dtype == ir::dtype::kFloat16 || dtype == ir::dtype::kBfloat16; }
// Converts any supported numeric array to `dtype` (ONNX Cast semantics: float->int truncates toward zero,
// float->bool is x != 0, float16 rounds to nearest even), in the same layout.
Array cast(const Array& input, int32_t dtype);

}  // namespace mopt::exec
