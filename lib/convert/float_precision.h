// Converting a float32 model to float16 or bfloat16.
//
// Which nodes compute in 16 bits is decided per node from ONNX's operator schemas: a node converts when
// its operator is not blocked and its type constraints admit the target type; inputs with a fixed
// float32 type (Resize's scales, ...) stay float32. Values then carry the precision of their producer,
// and a Cast is inserted only where a value crosses between a converted and a kept node (one Cast per
// value and direction, shared by its readers), at graph inputs and outputs kept in float32, and at the
// boundaries of If/Loop/Scan bodies. Weights (initializers and Constant nodes) are converted in place
// when only converted nodes read them, and duplicated when both kinds do. A node whose weights exceed
// the float16 range stays float32 (or, when asked, those values are clamped to +-65504; Clip's bounds
// always are, harmlessly); nonzero values below the smallest float16 subnormal are raised to it (so a
// small epsilon never becomes 0). Clamped and raised values are counted.
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "ir/ir.h"

namespace mopt::convert {

struct FloatPrecisionOptions {
  int32_t target = 10;       // ir::dtype::kFloat16 or kBfloat16
  bool keep_io_types = true;  // main-graph inputs and outputs stay float32
  std::set<std::string> op_block_list;    // operator types kept in float32
  std::set<std::string> node_block_list;  // node names kept in float32
  // Nodes whose weights hold finite values beyond the float16 range stay float32 unless this is set;
  // then those values are clamped to +-65504 (ONNX Runtime's converter clamps; on ppocrv4_det that
  // turns a BatchNormalization variance into a different one and the outputs' cosine drops to 0.46).
  bool clamp_out_of_range = false;
};

// Operators kept in float32 by default: the list of onnxconverter-common and ONNX Runtime's float16
// tools (traditional-ML operators, NonMaxSuppression, TopK, RoiAlign, Resize, Upsample, Range, CumSum,
// Min, Max, RandomUniformLike).
const std::set<std::string>& default_op_block_list();

struct FloatPrecisionResult {
  int64_t nodes_converted = 0;
  std::map<std::string, int64_t> nodes_kept;  // reason -> count, for nodes computing in float32
  std::vector<std::pair<std::string, std::string>> kept;  // node, reason
  int64_t casts_inserted = 0, cast_targets_updated = 0;
  int64_t tensors_converted = 0, tensors_duplicated = 0;
  int64_t values_clamped = 0;  // beyond the float16 range
  int64_t values_raised = 0;   // nonzero but below the smallest float16 subnormal
};

// Converts `model` in place. Runs ONNX shape inference first: a node whose float values have no known
// type stays float32. Throws mopt::Error for a target other than float16/bfloat16.
FloatPrecisionResult convert_float_precision(ir::Model& model, const FloatPrecisionOptions& options);

// Names of the main-graph nodes that would compute in the target type (for sensitivity analysis).
// Unnamed nodes are named first so they can be blocked by name.
std::vector<std::string> convertible_nodes(ir::Model& model, const FloatPrecisionOptions& options);

}  // namespace mopt::convert
