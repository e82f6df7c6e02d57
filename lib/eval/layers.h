// Per-layer error keyed by the original model's node names (what ONNX Runtime's qdq_loss_debug and
// Polygraphy's `--mark all` give): both models run on the same samples, every float value the original's
// main graph computes is matched to its counterpart in the optimized model, and the two are compared with
// the same NaN-aware metrics as the outputs, worst first.
//
// Matching: the value of the same name and shape (passes keep the names of the values they keep, fused
// nodes take over the name of the pattern's last output, and a quantized model keeps each float value
// before its QuantizeLinear, so the error measured is what accumulated up to that layer); a Relu/Clip
// output that quantization folded into a QuantizeLinear is matched to that pair's DequantizeLinear. A value
// a rewrite removed (a folded BatchNorm's input, a constant) has no counterpart and is counted as such.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "data/feeds.h"
#include "eval/accuracy.h"
#include "ir/ir.h"

namespace mopt::eval {

struct LayerError {
  std::string node, op_type;   // the original producer (its name, or "<op> -> <value>" when unnamed)
  std::string value;           // the original value
  std::string counterpart;     // the value compared in the optimized model
  OutputMetrics metrics;
};

struct LayerReport {
  std::vector<LayerError> layers;  // worst first: broken, then by relative L2 error
  size_t samples = 0;
  size_t values = 0;               // float values the original computed
  size_t unmatched = 0;            // ... with no counterpart (removed by a rewrite, or another shape, or non-float)
  std::string note;                // e.g. captures that did not cover every value
};

struct LayerOptions {
  size_t max_samples = 4;                  // the first samples only: per-layer runs cost two more executions
  uint64_t max_bytes = 512ull << 20;       // captured intermediates, both models together; more rounds past it
  int threads = 0;
};

LayerReport compare_layers(const ir::Model& original, const ir::Model& optimized, const std::vector<data::Feeds>& samples,
                           const LayerOptions& options = {});

// The `limit` worst layers (0: all) with the counts.
nlohmann::json to_json(const LayerReport& report, size_t limit = 0);
// The `worst` worst layers, one line each, for the terminal.
std::string summary(const LayerReport& report, size_t worst = 5);

}  // namespace mopt::eval
