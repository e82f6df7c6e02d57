// Option parsing, the pass context, the graph-pass driver and the registry table built from passes.def.
#include "pass/pass.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "util/error.h"
#include "util/log.h"

namespace mopt::pass {

namespace {
const OptionSpec* find_spec(const std::vector<OptionSpec>& specs, const std::string& name) {
  for (const auto& s : specs) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

void check_range(const OptionSpec& spec, const std::string& pass_name, double v, const std::string& text) {
  if ((spec.min && v < *spec.min) || (spec.max && v > *spec.max)) {
    const std::string lo = spec.min ? fmt::format("{}", *spec.min) : "-inf", hi = spec.max ? fmt::format("{}", *spec.max) : "inf";
    usage_error("option '{}' of pass '{}' must be in [{}, {}], not {}", spec.name, pass_name, lo, hi, text);
  }
}

std::string spec_names(const std::vector<OptionSpec>& specs) {
  std::string names;
  for (const auto& s : specs) names += (names.empty() ? "" : ", ") + s.name;
  return names.empty() ? "none" : names;
}
}  // namespace

void Options::set(const std::string& pass_name, const std::string& name, const std::string& value) {
  const OptionSpec* spec = find_spec(*specs_, name);
  if (spec == nullptr) usage_error("pass '{}' has no option '{}' (options: {})", pass_name, name, spec_names(*specs_));
  std::string normalized = value;
  switch (spec->type) {
    case OptionSpec::Type::Bool:
      if (value == "true" || value == "1" || value == "on" || value == "yes") normalized = "true";
      else if (value == "false" || value == "0" || value == "off" || value == "no") normalized = "false";
      else usage_error("option '{}' of pass '{}' must be true or false, not '{}'", name, pass_name, value);
      break;
    case OptionSpec::Type::Int: {
      int64_t v = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec != std::errc() || end != value.data() + value.size())
        usage_error("option '{}' of pass '{}' must be an integer, not '{}'", name, pass_name, value);
      check_range(*spec, pass_name, static_cast<double>(v), value);
      normalized = std::to_string(v);
      break;
    }
    case OptionSpec::Type::Float: {
      char* end = nullptr;
      double v = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0' || !std::isfinite(v))
        usage_error("option '{}' of pass '{}' must be a number, not '{}'", name, pass_name, value);
      check_range(*spec, pass_name, v, value);
      break;
    }
    case OptionSpec::Type::String:
      break;
    case OptionSpec::Type::Choice: {
      bool ok = false;
      for (const auto& c : spec->choices) ok = ok || c == value;
      if (!ok) {
        std::string choices;
        for (const auto& c : spec->choices) choices += (choices.empty() ? "" : "|") + c;
        usage_error("option '{}' of pass '{}' must be one of {}, not '{}'", name, pass_name, choices, value);
      }
      break;
    }
  }
  values_[name] = normalized;
}

const std::string& Options::raw(const std::string& name) const {
  auto it = values_.find(name);
  if (it != values_.end()) return it->second;
  const OptionSpec* spec = find_spec(*specs_, name);
  if (spec == nullptr) fail("internal error: pass reads undeclared option '{}'", name);
  return spec->default_value;
}

bool Options::get_bool(const std::string& name) const { return raw(name) == "true"; }
int64_t Options::get_int(const std::string& name) const { return std::stoll(raw(name)); }
double Options::get_float(const std::string& name) const { return std::stod(raw(name)); }
const std::string& Options::get_string(const std::string& name) const { return raw(name); }

std::vector<std::string> Options::get_list(const std::string& name, char separator) const {
  std::vector<std::string> items;
  const std::string& text = raw(name);
  for (size_t start = 0; start <= text.size();) {
    const size_t end = std::min(text.find(separator, start), text.size());
    if (end > start) items.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return items;
}

std::vector<std::pair<std::string, std::string>> Options::explicit_values() const {
  std::vector<std::pair<std::string, std::string>> result;
  for (const auto& spec : *specs_) {
    auto it = values_.find(spec.name);
    if (it != values_.end()) result.emplace_back(spec.name, it->second);
  }
  return result;
}

void Options::check_applicable(const std::string& pass_name) const {
  for (const OptionSpec& spec : *specs_) {
    if (spec.applies_when.empty() || !is_set(spec.name)) continue;
    const size_t eq = spec.applies_when.find('=');
    const std::string other = spec.applies_when.substr(0, eq);
    const std::string& value = raw(other);
    bool holds = false;
    if (eq == std::string::npos) {
      holds = !value.empty() && value != "false" && value != "0";
    } else {
      for (size_t start = eq + 1; start <= spec.applies_when.size();) {  // "A|B|C"
        const size_t bar = std::min(spec.applies_when.find('|', start), spec.applies_when.size());
        holds = holds || spec.applies_when.compare(start, bar - start, value) == 0;
        start = bar + 1;
      }
    }
    if (!holds) {
      usage_error("option '{}' of pass '{}' applies only with {}{}", spec.name, pass_name,
                  eq == std::string::npos ? other + " set" : spec.applies_when,
                  fmt::format(" (here {}={})", other, value.empty() ? "\"\"" : value));
    }
  }
}

void PassContext::count(const std::string& counter, int64_t n) {
  for (auto& [name, value] : counters_) {
    if (name == counter) {
      value += n;
      return;
    }
  }
  counters_.emplace_back(counter, n);
}

void PassContext::explain_skip(const ir::Node& node, const std::string& reason) {
  const ir::Value* out = node.output(0);
  const std::string who = !node.name().empty() ? fmt::format("node '{}' ({})", node.name(), node.op_type())
                          : out != nullptr     ? fmt::format("{} -> '{}'", node.op_type(), out->name())
                                               : node.op_type();
  std::string line = fmt::format("[{}] left {} alone: {}", pass_name_, who, reason);
  if (seen_refusals_ != nullptr && !seen_refusals_->insert(line).second) return;
  count("rewrites-refused");
  if (explain_) log::info("{}", line);
}

void PassContext::explain_graph(const std::string& reason) {
  std::string line = fmt::format("[{}] left the graph alone: {}", pass_name_, reason);
  if (seen_refusals_ != nullptr && !seen_refusals_->insert(line).second) return;
  if (explain_) log::info("{}", line);
}

PassResult GraphPass::run(ir::Model& model, PassContext& ctx) {
  bool changed = false;
  model.for_each_graph([&](ir::Graph& graph) { changed = run_on_graph(graph, ctx) || changed; });
  return {changed};
}

const std::vector<PassInfo>& registered_passes() {
  static const std::vector<PassInfo> passes = {
#define MOPT_PASS(NAME, CLASS, SUMMARY) {NAME, SUMMARY, &passes::CLASS##Options, &passes::create##CLASS},
#include "pass/passes.def"
#undef MOPT_PASS
  };
  return passes;
}

const PassInfo* find_pass(const std::string& name) {
  for (const auto& p : registered_passes()) {
    if (name == p.name) return &p;
  }
  return nullptr;
}

}  // namespace mopt::pass
