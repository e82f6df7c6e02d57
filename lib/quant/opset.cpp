// Opset upgrade through ONNX's version converter; see opset.h.
#include "quant/opset.h"

#include <onnx/version_converter/convert.h>

#include "ir/proto.h"
#include "util/error.h"

namespace mopt::quant {

void upgrade_opset(ir::Model& model, int64_t target) {
  const int64_t current = model.opset();
  if (current >= target) return;
  onnx::ModelProto converted;
  try {
    converted = onnx::version_conversion::ConvertVersion(ir::export_model(model), static_cast<int>(target));
  } catch (const std::exception& e) {
    fail("cannot convert the model from opset {} to {} with ONNX's version converter: {}", current, target, one_line(e.what()));
  }
  std::unique_ptr<ir::Model> upgraded = ir::import_model(std::move(converted));
  model.replace_with(std::move(*upgraded));
}

bool upgrade_ir_version(ir::Model& model, int64_t target) {
  if (model.ir_version() >= 4) return false;
  model.for_each_graph([](ir::Graph& g) {
    for (ir::Value* v : std::vector<ir::Value*>(g.inputs())) {
      if (v->initializer()) g.remove_input_of_initializer(v);
    }
  });
  model.mutable_proto().set_ir_version(target);
  return true;
}

}  // namespace mopt::quant
