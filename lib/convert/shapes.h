// Shapes: ONNX shape inference onto the IR, and making dynamic input dimensions static (a fixed batch
// size, an input's whole shape, or every use of a symbolic dimension) so that runtimes and later passes
// see static shapes.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "data/feeds.h"
#include "ir/ir.h"

namespace mopt::convert {

struct InferenceResult {
  int64_t values_typed = 0;             // values that had no type and got one
  int64_t values_refined = 0;           // typed values whose unknown dimensions became known
  std::optional<std::string> stopped;   // why inference stopped early (non-strict mode), if it did
};

// Runs ONNX's shape inference (ONNX 1.12, opsets up to 17) and records inferred types and shapes on
// untyped values of every graph, and fills in unknown dimensions of typed ones. Types the model states
// otherwise win. strict: fail on the first node ONNX
// cannot infer (otherwise those values stay untyped and `stopped` says why).
InferenceResult infer_shapes(ir::Model& model, bool strict = false, bool data_propagation = false);

// What to make static: whole input shapes and symbolic dimensions by name (as for random data, see
// data::ShapeOverrides), and the first dimension of every input whose first dimension is dynamic.
struct StaticShapes {
  data::ShapeOverrides given;
  std::optional<int64_t> batch;
  bool empty() const { return given.shapes.empty() && given.dims.empty() && !batch; }
};

// Sets the main graph's input dimensions as asked. A symbolic dimension that gets a value (named, or
// found on an input dimension that was set) takes that value everywhere in the model's recorded types;
// infer_shapes then fills in the rest. Throws a usage error for an unknown input, a rank mismatch, a
// static dimension asked to change, or two values for one symbolic dimension. Returns how many input
// dimensions changed. Inputs whose first dimension is already static keep it under `batch`.
int64_t make_static(ir::Model& model, const StaticShapes& shapes);

}  // namespace mopt::convert
