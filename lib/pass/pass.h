// The Pass interface. A pass is a small type with typed options and run(Model&, PassContext&) that says
// whether it changed anything and records counters for the report. Passes are registered in
// passes.def; nothing registers itself.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ir/ir.h"

namespace mopt::eval {
struct Evaluation;
}

namespace mopt::pass {

// One option of a pass, declared once in the pass's file: the pipeline parser, `mopt passes`, the README's
// pass table and the CLI's flags (tools/mopt/pass_flags.h) all read this table.
struct OptionSpec {
  enum class Type { Bool, Int, Float, String, Choice };
  OptionSpec(std::string name_, Type type_, std::string default_value_, std::string help_,
             std::vector<std::string> choices_ = {}, std::string applies_when_ = {},
             std::optional<double> min_ = std::nullopt, std::optional<double> max_ = std::nullopt)
      : name(std::move(name_)), type(type_), default_value(std::move(default_value_)), help(std::move(help_)),
        choices(std::move(choices_)), applies_when(std::move(applies_when_)), min(min_), max(max_) {}
  std::string name;
  Type type;
  std::string default_value;
  std::string help;
  std::vector<std::string> choices;  // for Type::Choice
  // When setting the option means something: "OTHER=A|B" (another option has one of these values) or
  // "OTHER" (another option is set and not false or empty). Setting it otherwise is a usage error.
  std::string applies_when;
  std::optional<double> min, max;  // for Int and Float: the accepted range (the default may lie outside: "unset")
};

// Option values of one pass instance, validated against its specs when parsed.
class Options {
 public:
  Options() = default;
  explicit Options(const std::vector<OptionSpec>* specs) : specs_(specs) {}

  // Validates and stores a value; throws a usage error naming the option on a bad name or value.
  void set(const std::string& pass_name, const std::string& name, const std::string& value);
  bool get_bool(const std::string& name) const;
  int64_t get_int(const std::string& name) const;
  double get_float(const std::string& name) const;
  const std::string& get_string(const std::string& name) const;
  // A String option read as a list: the non-empty items between separators ("Conv,MatMul" -> {Conv, MatMul}).
  std::vector<std::string> get_list(const std::string& name, char separator = ',') const;
  // Options the user set, in spec order, with normalized values.
  std::vector<std::pair<std::string, std::string>> explicit_values() const;
  bool is_set(const std::string& name) const { return values_.count(name) > 0; }
  // Throws a usage error for a set option whose applies_when does not hold.
  void check_applicable(const std::string& pass_name) const;
  const std::vector<OptionSpec>& specs() const { return *specs_; }

 private:
  const std::string& raw(const std::string& name) const;
  const std::vector<OptionSpec>* specs_ = nullptr;
  std::map<std::string, std::string> values_;
};

// What a pass reports back and the knobs it reads while running.
class PassContext {
 public:
  explicit PassContext(bool explain = false) : explain_(explain) {}
  void count(const std::string& counter, int64_t n = 1);
  // A rewrite that was considered and refused, with the reason (printed under --explain). Counted and
  // printed once per pipeline run even when a fixpoint group considers it again (see set_seen_refusals).
  void explain_skip(const ir::Node& node, const std::string& reason);
  // A pass that leaves a whole graph alone (an opset it needs): said once under --explain, not counted.
  void explain_graph(const std::string& reason);
  void set_seen_refusals(std::set<std::string>* seen) { seen_refusals_ = seen; }
  void warn(std::string message) { warnings_.push_back(std::move(message)); }
  // Structured detail for the report (e.g. the parameters of every quantized tensor); null when unset.
  void set_details(nlohmann::json details) { details_ = std::move(details); }
  const nlohmann::json& details() const { return details_; }
  // Samples and reference outputs of the original model, when the driver measures accuracy; nullptr
  // otherwise. Passes that search for an accuracy target use it.
  const eval::Evaluation* evaluation() const { return evaluation_; }
  void set_evaluation(const eval::Evaluation* evaluation) { evaluation_ = evaluation; }

  const std::vector<std::pair<std::string, int64_t>>& counters() const { return counters_; }
  const std::vector<std::string>& warnings() const { return warnings_; }
  bool explain() const { return explain_; }
  void set_pass_name(std::string name) { pass_name_ = std::move(name); }

 private:
  bool explain_;
  std::string pass_name_;
  std::vector<std::pair<std::string, int64_t>> counters_;
  std::vector<std::string> warnings_;
  nlohmann::json details_;
  const eval::Evaluation* evaluation_ = nullptr;
  std::set<std::string>* seen_refusals_ = nullptr;
};

struct PassResult {
  PassResult(bool changed_ = false, std::string unchanged_reason_ = {})  // NOLINT: `return {changed}` reads well
      : changed(changed_), unchanged_reason(std::move(unchanged_reason_)) {}
  bool changed = false;
  // When nothing changed: why, in words a user can act on ("Conv is quantized only in static mode: pass
  // --data"). A command whose job is this pass fails with it (driver::OptimizeRequest::required_change).
  std::string unchanged_reason;
};

class Pass {
 public:
  virtual ~Pass() = default;
  virtual PassResult run(ir::Model& model, PassContext& ctx) = 0;
};

// A pass that rewrites one graph at a time. The driver visits every graph of the model, subgraphs of
// If/Loop/Scan first and the main graph last, so passes need not remember subgraphs themselves.
class GraphPass : public Pass {
 public:
  PassResult run(ir::Model& model, PassContext& ctx) final;

 protected:
  // Returns true if the graph changed.
  virtual bool run_on_graph(ir::Graph& graph, PassContext& ctx) = 0;
};

// ---- registry (generated from passes.def) ----
struct PassInfo {
  const char* name;
  const char* summary;
  const std::vector<OptionSpec>& (*option_specs)();
  std::unique_ptr<Pass> (*create)(const Options&);
};
const std::vector<PassInfo>& registered_passes();
const PassInfo* find_pass(const std::string& name);

}  // namespace mopt::pass

// Each pass file defines these two functions for its class name (see passes.def).
#define MOPT_PASS(NAME, CLASS, SUMMARY)                                   \
  namespace mopt::passes {                                                \
  const std::vector<::mopt::pass::OptionSpec>& CLASS##Options();          \
  std::unique_ptr<::mopt::pass::Pass> create##CLASS(const ::mopt::pass::Options&); \
  }
#include "pass/passes.def"
#undef MOPT_PASS
