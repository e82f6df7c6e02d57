// NumPy .npy / .npz and ONNX TensorProto (.pb) files as executor Arrays.
#pragma once
#include <map>
#include <string>

#include "exec/array.h"

namespace mopt::data {

exec::Array read_npy(const std::string& path);
exec::Array parse_npy(const std::string& bytes, const std::string& what);  // `what` names it in errors
std::string encode_npy(const exec::Array& array);
void write_npy(const std::string& path, const exec::Array& array);  // atomic
// Arrays of an .npz archive by name (".npy" suffix dropped); stored and deflated members.
std::map<std::string, exec::Array> read_npz(const std::string& path);
std::map<std::string, exec::Array> parse_npz(const std::string& bytes, const std::string& what);
// A serialized onnx.TensorProto; `name` receives its name (may be empty).
exec::Array read_tensor_pb(const std::string& path, std::string* name = nullptr);

}  // namespace mopt::data
