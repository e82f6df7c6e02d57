// Conversion between the IR and onnx::ModelProto. Import validates what the IR relies on (unique value
// names, every input produced, acyclic graphs, tensor payload sizes) and throws mopt::Error naming the
// offending node, value or tensor. Export is the exact inverse for an unchanged model.
#pragma once
#include <onnx/onnx_pb.h>

#include <functional>
#include <memory>
#include <optional>

#include "ir/ir.h"

namespace mopt::ir {

// Supplies a tensor's payload during import when it does not sit in the tensor's raw_data as usual:
// payloads lifted out by the wire-level reader (memory-mapped, not copied) and external data. Returns
// nullopt to let import take raw_data (or typed fields) from the proto itself.
using PayloadResolver = std::function<std::optional<Bytes>(const onnx::TensorProto& shell)>;

// Writes a tensor's payload into its exported proto (raw_data, an external-data reference or a marker
// the wire-level writer later replaces). The default copies raw bytes into raw_data.
using PayloadWriter = std::function<void(const Tensor& tensor, onnx::TensorProto& out)>;

std::unique_ptr<Model> import_model(onnx::ModelProto&& proto, const PayloadResolver& resolve = nullptr);
onnx::ModelProto export_model(const Model& model, const PayloadWriter& write = nullptr);

// Validates a tensor's dims and payload size against its dtype; throws mopt::Error naming it.
void validate_tensor(const Tensor& tensor, const std::string& where);

}  // namespace mopt::ir
