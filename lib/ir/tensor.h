// Tensors: the values of initializers and Constant nodes. The payload is a Bytes view that either
// borrows from a memory-mapped model or external-data file (no copy) or owns a buffer. Everything else
// about the tensor (name, dims, dtype, doc string, typed data fields, fields newer ONNX versions add)
// stays in an onnx::TensorProto "shell", so a round trip loses nothing.
#pragma once
#include <onnx/onnx_pb.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace mopt::ir {

// Receives a payload's bytes block by block, in order (Bytes::stream, Bytes::produced).
using ByteSink = std::function<void(std::span<const std::byte>)>;
// Calls the sink with consecutive blocks that together make a payload: the same bytes on every call.
using ByteProducer = std::function<void(const ByteSink&)>;

// An immutable, shared byte range. Copying a Bytes copies a pointer, never the data.
class Bytes {
 public:
  Bytes() = default;
  Bytes(std::shared_ptr<const void> owner, std::span<const std::byte> view) : owner_(std::move(owner)), view_(view) {}
  static Bytes copy_of(std::span<const std::byte> data);
  static Bytes take(std::string&& data);
  static Bytes take(std::vector<std::byte>&& data);
  // Bytes made on demand by `produce`, which must yield exactly `size` bytes. A writer streams them to
  // the file block by block (stream()) and never holds them all; the first call that needs them in memory
  // (span(), data()) builds them once, from any thread, and keeps them. A pass whose output is a cheap
  // function of a weight it reads (prune, float16) so costs no new memory when only the writer reads it.
  static Bytes produced(size_t size, ByteProducer produce);

  std::span<const std::byte> span() const { return produced_ ? produced_->build() : view_; }
  const std::byte* data() const { return span().data(); }
  size_t size() const { return produced_ ? produced_->size : view_.size(); }
  bool empty() const { return size() == 0; }
  // Calls sink with the bytes in order: produced bytes not yet built block by block, as they are made;
  // others in one call.
  void stream(const ByteSink& sink) const;
  // Whether the bytes are produced on demand and were not built yet (reading span() would build them).
  bool unbuilt() const { return produced_ && !produced_->built.load(std::memory_order_acquire); }

 private:
  struct Produced {
    size_t size;
    ByteProducer produce;
    std::once_flag once;
    std::atomic<bool> built{false};
    std::unique_ptr<std::max_align_t[]> storage;
    std::span<const std::byte> build();
    void run(const ByteSink& sink) const;  // produce, checked to yield exactly `size` bytes
  };
  std::shared_ptr<const void> owner_;
  std::span<const std::byte> view_;
  std::shared_ptr<Produced> produced_;
};

// ONNX TensorProto.DataType codes, including those newer than the ONNX 1.12 library we link.
namespace dtype {
constexpr int32_t kUndefined = 0, kFloat = 1, kUint8 = 2, kInt8 = 3, kUint16 = 4, kInt16 = 5, kInt32 = 6,
                  kInt64 = 7, kString = 8, kBool = 9, kFloat16 = 10, kDouble = 11, kUint32 = 12, kUint64 = 13,
                  kComplex64 = 14, kComplex128 = 15, kBfloat16 = 16, kFloat8E4M3FN = 17, kFloat8E4M3FNUZ = 18,
                  kFloat8E5M2 = 19, kFloat8E5M2FNUZ = 20, kUint4 = 21, kInt4 = 22, kFloat4E2M1 = 23;
// Lower-case name ("float", "int8", ...) or "dtype(N)" for codes we do not know.
std::string name(int32_t code);
// Bits per element; 0 for string and unknown codes.
int bits(int32_t code);
// Bytes needed for `count` elements, rounding sub-byte types up.
uint64_t storage_bytes(int32_t code, uint64_t count);
}  // namespace dtype

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(onnx::TensorProto shell) : proto_(std::move(shell)) {}

  const std::string& name() const { return proto_.name(); }
  void set_name(const std::string& name) { proto_.set_name(name); }
  int32_t dtype() const { return proto_.data_type(); }
  std::vector<int64_t> dims() const { return {proto_.dims().begin(), proto_.dims().end()}; }
  int64_t numel() const;  // product of dims (1 for a scalar)
  // Bytes of the payload as stored or as raw little-endian data would need.
  uint64_t nbytes() const;

  // The payload in raw little-endian form. Borrowed/owned raw data is returned without copying;
  // tensors stored in typed fields (float_data, int64_data, ...) are converted into a new buffer.
  Bytes data() const;
  bool has_raw() const { return has_raw_; }
  // Replaces the payload with raw bytes, clearing typed fields. The caller sets dtype and dims.
  void set_raw(Bytes bytes);
  const Bytes& raw() const { return raw_; }
  // A 64-bit hash (XXH3) of data(), computed once per payload: fixpoint rounds that compare initializers
  // (eliminate-common-subexpressions) hash each weight once, not once per round. Equal hashes do not
  // prove equal bytes; compare them before merging. Not safe to call from two threads at once.
  uint64_t content_hash() const;

  // The shell: all fields but the raw payload. Typed data fields live here when the tensor uses them.
  const onnx::TensorProto& proto() const { return proto_; }
  onnx::TensorProto& mutable_proto() {
    hash_.reset();
    return proto_;
  }

 private:
  onnx::TensorProto proto_;
  Bytes raw_;
  bool has_raw_ = false;
  mutable std::optional<uint64_t> hash_;
};

// The payload of a float32 tensor, checked against its shape (mopt::Error naming the tensor otherwise). It
// may be unaligned (a payload inside a mapped file): read it with for_each_float_block or memcpy.
Bytes float32_payload(const Tensor& tensor);

}  // namespace mopt::ir
