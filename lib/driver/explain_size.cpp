// The report's `size` section; see explain_size.h.
#include "driver/explain_size.h"

#include <algorithm>
#include <map>

#include "rewrite/rewrite.h"

namespace mopt::driver {

using nlohmann::json;

nlohmann::json explain_size(const ir::Model& model, const report::ModelStats& stats, const report::FileSizes& output,
                            const pass::PipelineResult& passes) {
  // Why passes kept nodes in float, by node (as rewrite::describe names them in the details).
  std::map<std::string, std::string> reasons;
  for (const pass::PassRun& run : passes.passes) {
    if (!run.details.is_object() || !run.details.contains("skipped") || !run.details["skipped"].is_array()) continue;
    for (const json& s : run.details["skipped"]) {
      if (s.is_object() && s.value("node", json()).is_string() && s.value("reason", json()).is_string())
        reasons.emplace(s["node"].get<std::string>(), s["reason"].get<std::string>());
    }
  }
  struct Weight {
    const ir::Value* value;
    uint64_t bytes;
  };
  std::vector<Weight> floats;
  for (const ir::Value* v : model.graph().initializers()) {
    const int32_t dt = v->initializer()->dtype();
    if (dt == onnx::TensorProto::FLOAT || dt == onnx::TensorProto::DOUBLE) floats.push_back({v, v->initializer()->nbytes()});
  }
  std::stable_sort(floats.begin(), floats.end(), [](const Weight& a, const Weight& b) { return a.bytes > b.bytes; });
  json largest = json::array();
  for (size_t i = 0; i < std::min<size_t>(floats.size(), 10); ++i) {
    json read_by = json::array(), reason = nullptr;
    for (const ir::Use& use : floats[i].value->uses()) {
      const std::string node = rewrite::describe(*use.node);
      read_by.push_back(node);
      if (reason.is_null() && reasons.count(node)) reason = reasons[node];
    }
    largest.push_back({{"tensor", floats[i].value->name()},
                       {"dtype", ir::dtype::name(floats[i].value->initializer()->dtype())},
                       {"bytes", floats[i].bytes},
                       {"read_by", read_by},
                       {"reason", reason}});
  }
  const uint64_t total = output.total();
  return {{"weight_bytes", stats.parameter_bytes},
          {"graph_bytes", total > stats.parameter_bytes ? total - stats.parameter_bytes : 0},
          {"external_data_bytes", output.external_bytes},
          {"largest_float_weights", largest}};
}

}  // namespace mopt::driver
