// The report's `size` section; see explain_size.h.
#include "driver/explain_size.h"

#include <algorithm>
#include <functional>
#include <map>

#include "rewrite/rewrite.h"

namespace mopt::driver {

using nlohmann::json;

namespace {
bool is_float_weight(int32_t dtype) {
  return dtype == ir::dtype::kFloat || dtype == ir::dtype::kDouble || dtype == ir::dtype::kFloat16 || dtype == ir::dtype::kBfloat16;
}
}  // namespace

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
  // Float weights in initializers and Constant nodes, in every graph (If/Loop bodies too).
  struct Weight {
    const ir::Value* value;  // the initializer, or the Constant node's output
    const ir::Tensor* tensor;
    const char* kind;
  };
  std::vector<Weight> floats;
  std::function<void(const ir::Graph&)> collect = [&](const ir::Graph& g) {
    for (const ir::Value* v : g.initializers()) {
      if (is_float_weight(v->initializer()->dtype())) floats.push_back({v, v->initializer(), "initializer"});
    }
    for (const ir::Node* n : g.nodes()) {
      const ir::Attribute* a = n->is_op("Constant") ? n->attribute("value") : nullptr;
      if (a && a->tensor && n->output(0) && is_float_weight(a->tensor->dtype())) floats.push_back({n->output(0), a->tensor.get(), "constant-node"});
      for (const ir::Graph* sub : n->subgraphs()) collect(*sub);
    }
  };
  collect(model.graph());
  std::stable_sort(floats.begin(), floats.end(), [](const Weight& a, const Weight& b) { return a.tensor->nbytes() > b.tensor->nbytes(); });
  json largest = json::array();
  for (size_t i = 0; i < std::min<size_t>(floats.size(), 10); ++i) {
    json read_by = json::array(), reason = nullptr;
    for (const ir::Use& use : floats[i].value->uses()) {
      const std::string node = rewrite::describe(*use.node);
      read_by.push_back(node);
      if (reason.is_null() && reasons.count(node)) reason = reasons[node];
    }
    largest.push_back({{"tensor", floats[i].value->name()},
                       {"kind", floats[i].kind},
                       {"dtype", ir::dtype::name(floats[i].tensor->dtype())},
                       {"bytes", floats[i].tensor->nbytes()},
                       {"read_by", read_by},
                       {"reason", reason}});
  }
  // Every weight byte by element type: what shrank (int8, int4) and what did not (float32 kept, int32
  // biases, int64 shapes, float16).
  json by_dtype = json::object();
  for (const auto& [dtype, d] : stats.by_dtype) by_dtype[dtype] = d.bytes;
  const uint64_t total = output.total();
  return {{"weight_bytes", stats.parameter_bytes},
          {"graph_bytes", total > stats.parameter_bytes ? total - stats.parameter_bytes : 0},
          {"external_data_bytes", output.external_bytes},
          {"weight_bytes_by_dtype", by_dtype},
          {"largest_float_weights", largest}};
}

}  // namespace mopt::driver
