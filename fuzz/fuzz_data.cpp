// libFuzzer target: arbitrary bytes as the data files mopt reads (.npy, .npz, TensorProto .pb). A clean
// mopt::Error is the expected answer; a crash, sanitizer report, huge allocation or other exception is a
// finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include <onnx/onnx_pb.h>

#include "data/npy.h"
#include "exec/array.h"
#include "ir/tensor.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mopt;
  static const bool setup = [] {
    exec::set_max_tensor_bytes(256u << 20);
    return true;
  }();
  (void)setup;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    data::parse_npy(bytes, "fuzz.npy");
  } catch (const Error&) {
  }
  try {
    data::parse_npz(bytes, "fuzz.npz");
  } catch (const Error&) {
  }
  try {
    onnx::TensorProto proto;
    if (proto.ParseFromString(bytes)) exec::Array::from_tensor(ir::Tensor(proto));
  } catch (const Error&) {
  }
  return 0;
}
