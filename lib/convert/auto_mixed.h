// Automatic mixed precision: which nodes to keep in float32 so a float16 model meets an accuracy
// target, measured once instead of searched by bisection over hundreds of runs.
//
//   1. convert everything; done if the target holds
//   2. sensitivity, once: run the float32 model on one sample, then run each convertible node alone
//      with its inputs and weights rounded to the target type; its error is the relative L2 distance
//      of its outputs from the float32 ones (overflow to inf ranks first)
//   3. binary search the smallest k such that keeping the k most sensitive nodes in float32 meets the
//      target: 2 + ceil(log2 N) evaluations for N convertible nodes
// Evaluations round every operator's float16 result (exec::Float16Compute::kRoundEachOperator), as
// runtimes with float16 kernels (GPUs) compute: that is where overflow and lost precision need float32
// nodes. ONNX Runtime's CPU provider keeps float16 values in float32 between operators, so there only the
// rounding of weights, inputs and outputs is left, and the command's accuracy report measures that.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "convert/float_precision.h"
#include "eval/accuracy.h"

namespace mopt::convert {

struct MixedTarget {
  std::optional<double> max_accuracy_drop;  // percentage points (labels, or top-1 agreement)
  double min_cosine = 0.999;                // every output; used when max_accuracy_drop is not set
};

struct MixedPrecisionResult {
  std::vector<std::pair<std::string, double>> sensitivity;  // node -> error converted alone, descending
  std::vector<std::string> kept_float32;
  int evaluations = 0;
  std::string basis;  // what the target measures
  double initial = 0, final = 0;  // the measure with everything converted, and with the chosen nodes kept
  bool met = false;
  nlohmann::json to_json() const;
};

// Chooses nodes of `model` (main graph) to keep in float32 when converting with `options`; `model` is
// not modified except that unnamed nodes get names. Candidates are converted on copies.
MixedPrecisionResult choose_float32_nodes(ir::Model& model, const FloatPrecisionOptions& options,
                                          const eval::Evaluation& evaluation, const MixedTarget& target);

}  // namespace mopt::convert
