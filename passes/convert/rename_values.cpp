// rename-values: gives graph inputs, outputs or any other value of the main graph new names, for the
// names a deployment expects ("input.1" -> "image"). Readers inside If/Loop/Scan bodies follow, since
// they refer to the value itself.
//
//   rename-values(rename="input.1=image,495=logits")
//   Before:  input.1 -> Conv -> ... -> 495        After:  image -> Conv -> ... -> logits
//
// An old name the main graph does not have, a new name the model already uses, or one value renamed twice
// is an error; nothing is renamed then. This pass is also the example of a pass added in one file plus
// one line in passes.def, whose option is a `mopt convert --rename` flag with no CLI code (preset.cpp).
#include <map>
#include <set>

#include "pass/pass.h"
#include "util/error.h"

namespace mopt::passes {
namespace {

class RenameValuesPass : public pass::Pass {
 public:
  explicit RenameValuesPass(const pass::Options& o) {
    std::set<std::string> targets;
    for (const std::string& pair : o.get_list("rename")) {
      const size_t eq = pair.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == pair.size())
        usage_error("rename-values(rename=...) takes OLD=NEW pairs separated by commas, not '{}'", pair);
      const std::string from = pair.substr(0, eq), to = pair.substr(eq + 1);
      if (!renames_.emplace(from, to).second) usage_error("rename-values: '{}' is renamed twice", from);
      if (!targets.insert(to).second) usage_error("rename-values: two values renamed to '{}'", to);
    }
    if (renames_.empty()) usage_error("rename-values needs rename=OLD=NEW[,OLD=NEW...]");
  }

  pass::PassResult run(ir::Model& model, pass::PassContext& ctx) override {
    ir::Graph& graph = model.graph();
    std::vector<std::pair<ir::Value*, std::string>> plan;
    for (const auto& [from, to] : renames_) {  // every check before the first rename
      ir::Value* v = graph.find_local(from);
      if (v == nullptr) usage_error("rename-values: the main graph has no value named '{}'", from);
      if (from == to) continue;
      if (model.name_used(to)) usage_error("rename-values: '{}' is already a name in the model", to);
      plan.emplace_back(v, to);
    }
    for (const auto& [v, to] : plan) graph.rename_value(v, to);
    ctx.count("values-renamed", static_cast<int64_t>(plan.size()));
    return {!plan.empty(), "every value has its new name already"};
  }

 private:
  std::map<std::string, std::string> renames_;
};

}  // namespace

const std::vector<pass::OptionSpec>& RenameValuesOptions() {
  using T = pass::OptionSpec::Type;
  static const std::vector<pass::OptionSpec> specs = {
      {"rename", T::String, "", "new names for values of the main graph (inputs, outputs, ...): 'OLD=NEW,OLD=NEW'", {}},
  };
  return specs;
}

std::unique_ptr<pass::Pass> createRenameValues(const pass::Options& options) { return std::make_unique<RenameValuesPass>(options); }

}  // namespace mopt::passes
