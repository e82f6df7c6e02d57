// Where the output's bytes are, and why the big ones did not shrink: the report's `size` section. Weights
// (by element type) and graph structure (names, attributes, protobuf framing) are told apart, and the
// largest float weights left (float32/64/16, bfloat16; initializers and Constant nodes, subgraphs too) are listed with the nodes that read them and the reason a pass recorded for keeping those nodes
// in float (quantize's and convert's "skipped" details), or null when no pass of the command converts them.
#pragma once
#include <nlohmann/json.hpp>

#include "ir/ir.h"
#include "pass/manager.h"
#include "report/report.h"

namespace mopt::driver {

// {weight_bytes, graph_bytes, external_data_bytes, weight_bytes_by_dtype, largest_float_weights: [{tensor,
// kind, dtype, bytes, read_by, reason}]} for `model` as written (`output`: its file sizes).
nlohmann::json explain_size(const ir::Model& model, const report::ModelStats& stats, const report::FileSizes& output,
                            const pass::PipelineResult& passes);

}  // namespace mopt::driver
