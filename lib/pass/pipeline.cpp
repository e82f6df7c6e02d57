// Pipeline text parser and printer, and the YAML/JSON pipeline file reader; see pipeline.h.
#include "pass/pipeline.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <fstream>

#include "pass/preset.h"
#include "util/error.h"

namespace mopt::pass {
namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string suggestion(const std::string& name) {
  std::string best;
  size_t best_distance = 4;
  for (const auto& p : registered_passes()) {
    size_t d = edit_distance(name, p.name);
    if (d < best_distance) best_distance = d, best = p.name;
  }
  std::vector<std::string> groups = {"fixpoint", "fuse"};
  for (const PresetInfo& p : registered_presets()) groups.push_back(p.name);
  for (const std::string& group : groups) {
    if (edit_distance(name, group) < best_distance) best_distance = edit_distance(name, group), best = group;
  }
  return best.empty() ? " (see `mopt passes`)" : fmt::format(" (did you mean '{}'?)", best);
}

// A fresh element for a pass, group or preset name; throws a usage error for unknown names. The `fuse`
// group expands to its fixpoint here; a preset (preset.h) keeps its name until its options are set, and
// append() expands it.
PipelineElement make_element(const std::string& name, const std::string& where) {
  if (name == "fuse") return parse_pipeline(kFuseGroup).elements.at(0);
  PipelineElement e;
  e.name = name;
  if (e.is_group()) {
    e.max_iterations = kDefaultFixpointIterations;
    return e;
  }
  if (const PresetInfo* preset = find_preset(name)) {
    e.options = Options(&preset->specs);
    return e;
  }
  const PassInfo* info = find_pass(name);
  if (info == nullptr) usage_error("{}unknown pass '{}'{}", where, name, suggestion(name));
  e.options = Options(&info->option_specs());
  return e;
}

// Adds `e` to `list`, a preset as the member passes it selects.
void append(std::vector<PipelineElement>& list, PipelineElement e, const std::string& where) {
  if (const PresetInfo* preset = find_preset(e.name)) {
    for (PipelineElement& member : expand_preset(*preset, e.options, where)) list.push_back(std::move(member));
  } else {
    validate_element(e, where);
    list.push_back(std::move(e));
  }
}

}  // namespace

const std::vector<OptionSpec>* option_specs_of(const std::string& name) {
  if (const PresetInfo* preset = find_preset(name)) return &preset->specs;
  if (const PassInfo* info = find_pass(name)) return &info->option_specs();
  return nullptr;
}

std::vector<PipelineElement> make_elements(const std::string& name, const std::vector<std::pair<std::string, std::string>>& options) {
  PipelineElement e = make_element(name, "");
  for (const auto& [key, value] : options) e.options.set(e.name, key, value);
  std::vector<PipelineElement> list;
  append(list, std::move(e), "");
  return list;
}

void validate_element(const PipelineElement& e, const std::string& where) {
  if (e.is_group()) return;
  if (const PresetInfo* preset = find_preset(e.name)) {
    expand_preset(*preset, e.options, where);
    return;
  }
  try {
    e.options.check_applicable(e.name);
    find_pass(e.name)->create(e.options);
  } catch (const Error& err) {
    if (where.empty()) throw;
    usage_error("{}{}", where, err.what());
  }
}

namespace {

void set_option(PipelineElement& e, const std::string& key, const std::string& value, const std::string& where) {
  if (e.is_group()) {
    if (key != "max-iterations") usage_error("{}fixpoint has one option, max-iterations, not '{}'", where, key);
    try {
      size_t used = 0;
      e.max_iterations = std::stoll(value, &used);
      if (used != value.size() || e.max_iterations < 1) throw std::invalid_argument(value);
    } catch (const std::exception&) {
      usage_error("{}max-iterations must be a positive integer, not '{}'", where, value);
    }
    return;
  }
  try {
    e.options.set(e.name, key, value);
  } catch (const Error& err) {
    usage_error("{}{}", where, err.what());
  }
}

class TextParser {
 public:
  explicit TextParser(const std::string& text) : text_(text) {}

  Pipeline parse() {
    Pipeline p;
    skip_space();
    if (at_end()) usage_error("pipeline is empty");
    p.elements = parse_list();
    if (!at_end()) error(fmt::format("unexpected '{}'", text_[pos_]));
    return p;
  }

 private:
  std::vector<PipelineElement> parse_list() {
    std::vector<PipelineElement> list;
    for (;;) {
      skip_space();
      const size_t start = pos_;
      append(list, parse_element(), where(start));
      skip_space();
      if (!consume(',')) return list;
    }
  }

  PipelineElement parse_element() {
    skip_space();
    const size_t start = pos_;
    std::string name = word();
    if (name.empty()) error(at_end() ? "expected a pass name at the end" : fmt::format("expected a pass name, found '{}'", text_[pos_]));
    PipelineElement e = make_element(name, where(start));
    const bool preset = name != e.name;  // fuse: its passes are fixed, only max-iterations may be set
    skip_space();
    if (!consume('(')) return e;
    skip_space();
    if (consume(')')) {
      if (e.is_group()) usage_error("{}fixpoint needs at least one pass", where(start));
      return e;
    }
    for (;;) {
      skip_space();
      const size_t item_start = pos_;
      std::string key = word();
      skip_space();
      if (!key.empty() && consume('=')) {
        skip_space();
        set_option(e, key, value(), where(item_start));
      } else {
        pos_ = item_start;
        if (preset) usage_error("{}'{}' takes only max-iterations=N", where(item_start), name);
        if (!e.is_group()) {
          if (key.empty()) error(at_end() ? "unclosed '('" : fmt::format("expected name=value, found '{}'", text_[pos_]));
          usage_error("{}pass '{}' takes options (name=value), not a pass ('{}')", where(item_start), e.name, key);
        }
        append(e.children, parse_element(), where(item_start));
      }
      skip_space();
      if (consume(')')) break;
      if (!consume(',')) error(at_end() ? "unclosed '('" : fmt::format("expected ',' or ')', found '{}'", text_[pos_]));
    }
    if (e.is_group() && e.children.empty()) usage_error("{}fixpoint needs at least one pass", where(start));
    return e;
  }

  std::string word() {
    const size_t start = pos_;
    while (!at_end() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '-' ||
                         text_[pos_] == '_' || text_[pos_] == '.'))
      ++pos_;
    return text_.substr(start, pos_ - start);
  }

  std::string value() {
    if (consume('"')) {
      std::string v;
      while (!at_end() && text_[pos_] != '"') {
        if (text_[pos_] == '\\' && pos_ + 1 < text_.size()) ++pos_;
        v += text_[pos_++];
      }
      if (!consume('"')) error("unterminated string");
      return v;
    }
    const size_t start = pos_;
    while (!at_end() && text_[pos_] != ',' && text_[pos_] != ')' && text_[pos_] != '(' &&
           !std::isspace(static_cast<unsigned char>(text_[pos_])))
      ++pos_;
    if (pos_ == start) error("expected an option value");
    return text_.substr(start, pos_ - start);
  }

  bool consume(char c) {
    if (!at_end() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void skip_space() {
    while (!at_end() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool at_end() const { return pos_ >= text_.size(); }
  std::string where(size_t column) const { return fmt::format("pipeline column {}: ", column + 1); }
  [[noreturn]] void error(const std::string& what) const { usage_error("{}{}", where(pos_), what); }

  const std::string& text_;
  size_t pos_ = 0;
};

std::string quote_if_needed(const std::string& v) {
  bool plain = !v.empty();
  for (char c : v) plain = plain && c != ',' && c != ')' && c != '(' && c != '"' && !std::isspace(static_cast<unsigned char>(c));
  if (plain) return v;
  std::string q = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') q += '\\';
    q += c;
  }
  return q + "\"";
}

std::vector<PipelineElement> elements_from_yaml(const YAML::Node& list, const std::string& file);

std::string where_in(const std::string& file, const YAML::Node& node) {
  return fmt::format("{} line {}: ", file, node.Mark().line + 1);
}

// One entry, unchecked: append() checks it (or expands a preset).
PipelineElement element_from_yaml(const YAML::Node& node, const std::string& file, const std::string& where) {
  if (node.IsScalar()) return make_element(node.as<std::string>(), where);
  if (!node.IsMap() || node.size() != 1)
    usage_error("{}each pipeline entry is a pass name or a map with one pass name as its key", where);
  const auto entry = *node.begin();
  PipelineElement e = make_element(entry.first.as<std::string>(), where);
  const YAML::Node& options = entry.second;
  if (options.IsNull()) return e;
  if (!options.IsMap()) usage_error("{}options of '{}' must be a map of name: value", where, e.name);
  for (const auto& kv : options) {
    const std::string key = kv.first.as<std::string>();
    if (e.is_group() && key == "passes" && e.children.empty()) {
      e.children = elements_from_yaml(kv.second, file);
    } else {
      if (!kv.second.IsScalar()) usage_error("{}option '{}' of '{}' must be a single value", where, key, e.name);
      set_option(e, key, kv.second.as<std::string>(), where);
    }
  }
  if (e.is_group() && e.children.empty()) usage_error("{}fixpoint needs a non-empty 'passes' list", where);
  return e;
}

std::vector<PipelineElement> elements_from_yaml(const YAML::Node& list, const std::string& file) {
  if (!list.IsSequence()) usage_error("{} line {}: expected a list of passes", file, list.Mark().line + 1);
  std::vector<PipelineElement> result;
  for (const auto& item : list) append(result, element_from_yaml(item, file, where_in(file, item)), where_in(file, item));
  return result;
}

}  // namespace

Pipeline parse_pipeline(const std::string& text) { return TextParser(text).parse(); }

Pipeline load_pipeline_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) usage_error("cannot open pipeline file '{}'", path.string());
  YAML::Node root;
  try {
    root = YAML::Load(in);  // YAML is a superset of JSON: one reader serves both
  } catch (const YAML::Exception& e) {
    usage_error("pipeline file '{}' line {}: {}", path.string(), e.mark.line + 1, e.msg);
  }
  const std::string file = path.string();
  Pipeline p;
  try {
    if (root.IsMap() && root["passes"]) {
      p.elements = elements_from_yaml(root["passes"], file);
    } else if (root.IsSequence()) {
      p.elements = elements_from_yaml(root, file);
    } else {
      usage_error("pipeline file '{}' must hold a list of passes, or a map with a 'passes' list", file);
    }
  } catch (const YAML::Exception& e) {
    usage_error("pipeline file '{}' line {}: {}", file, e.mark.line + 1, e.msg);
  }
  if (p.elements.empty()) usage_error("pipeline file '{}' has no passes", file);
  return p;
}

std::string print_element(const PipelineElement& e) {
  std::vector<std::string> args;
  if (e.is_group()) {
    if (e.max_iterations != kDefaultFixpointIterations) args.push_back(fmt::format("max-iterations={}", e.max_iterations));
    for (const auto& c : e.children) args.push_back(print_element(c));
  } else {
    for (const auto& [k, v] : e.options.explicit_values()) args.push_back(k + "=" + quote_if_needed(v));
  }
  if (args.empty()) return e.name;
  return fmt::format("{}({})", e.name, fmt::join(args, ","));
}

std::string print_pipeline(const Pipeline& pipeline) {
  std::vector<std::string> parts;
  for (const auto& e : pipeline.elements) parts.push_back(print_element(e));
  return fmt::format("{}", fmt::join(parts, ","));
}

}  // namespace mopt::pass
