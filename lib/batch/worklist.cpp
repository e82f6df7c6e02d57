// Expanding a batch's inputs into its worklist, and splitting the worklist into shards.
#include "batch/worklist.h"

#include <glob.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace mopt::batch {
namespace {

bool has_wildcard(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

bool inside(const fs::path& path, const fs::path& folder) {
  if (folder.empty()) return false;
  std::error_code ec;
  const fs::path p = fs::weakly_canonical(path, ec), f = fs::weakly_canonical(folder, ec);
  auto [end, _] = std::mismatch(f.begin(), f.end(), p.begin(), p.end());
  return end == f.end();
}

// The *.onnx models below `folder`, relative to it, sorted; the output folder is not searched.
std::vector<fs::path> models_below(const fs::path& folder, const fs::path& exclude) {
  std::vector<fs::path> found;
  std::error_code ec;
  fs::recursive_directory_iterator it(folder, ec), end;
  if (ec) fail("cannot read folder '{}': {}", folder.string(), ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) fail("cannot read folder '{}': {}", folder.string(), ec.message());
    if (it->is_directory(ec)) {
      if (inside(it->path(), exclude)) it.disable_recursion_pending();
      continue;
    }
    if (it->path().extension() == ".onnx" && it->is_regular_file(ec)) found.push_back(it->path().lexically_relative(folder));
  }
  std::sort(found.begin(), found.end());
  return found;
}

// The folder part of a glob before its first wildcard: the root its matches are mirrored from.
fs::path glob_root(const std::string& pattern) {
  fs::path root;
  for (const fs::path& part : fs::path(pattern).parent_path()) {
    if (has_wildcard(part.string())) break;
    root /= part;
  }
  return root;
}

std::vector<std::string> glob_matches(const std::string& pattern) {
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), GLOB_ERR, nullptr, &g);
  std::vector<std::string> matches;
  if (rc == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) matches.emplace_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  if (rc == GLOB_NOMATCH || (rc == 0 && matches.empty())) fail("'{}' matches no file", pattern);
  if (rc != 0) fail("cannot expand '{}': a folder on its path cannot be read", pattern);
  return matches;
}

// ------------------------------------------------------------------ job files

struct JobDefaults {
  std::string command;
  FlagValues flags;
};

const std::vector<std::string> kEntryFields = {"model", "command", "options", "data", "accuracy", "labels", "gates"};
const std::vector<std::string> kPathOptions = {"data", "accuracy", "labels", "pipeline"};

std::string where(const std::string& file, size_t entry, const YAML::Node& node) {
  return fmt::format("{} entry {} (line {})", file, entry, node.Mark().line + 1);
}

std::string scalar(const YAML::Node& node, const std::string& context, const std::string& field) {
  if (!node.IsScalar()) fail("{}: field '{}' must be a single value", context, field);
  return node.as<std::string>();
}

// `options` (name: value or [values]) and the shorthands data/accuracy/labels and gates: one list of flags.
// A relative path in a path option is relative to the job file's folder.
void read_flags(const YAML::Node& map, const std::string& context, const fs::path& base, FlagValues& flags) {
  auto set = [&](const std::string& name, const YAML::Node& value) {
    std::vector<std::string> values;
    if (value.IsSequence()) {
      for (const YAML::Node& v : value) values.push_back(scalar(v, context, name));
    } else {
      values.push_back(scalar(value, context, name));
    }
    if (std::find(kPathOptions.begin(), kPathOptions.end(), name) != kPathOptions.end()) {
      for (std::string& v : values) {
        if (v != "random" && v != "off" && fs::path(v).is_relative()) v = (base / v).lexically_normal().string();
      }
    }
    std::erase_if(flags, [&](const auto& f) { return f.first == name; });  // an entry's value replaces the default
    for (const std::string& v : values) flags.emplace_back(name, v);
  };
  for (const char* group : {"options", "gates"}) {
    const YAML::Node options = map[group];
    if (!options) continue;
    if (!options.IsMap()) fail("{}: field '{}' must map option names to values", context, group);
    for (const auto& kv : options) set(kv.first.as<std::string>(), kv.second);
  }
  for (const char* shorthand : {"data", "accuracy", "labels"}) {
    if (map[shorthand]) set(shorthand, map[shorthand]);
  }
}

void check_fields(const YAML::Node& map, const std::string& context, const std::vector<std::string>& allowed) {
  for (const auto& kv : map) {
    const std::string name = kv.first.as<std::string>();
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end())
      fail("{}: unknown field '{}' (fields: {})", context, name, fmt::join(allowed, ", "));
  }
}

JobDefaults read_defaults(const YAML::Node& node, const std::string& context, const fs::path& base, JobDefaults defaults) {
  if (!node.IsMap()) fail("{}: 'defaults' must be a map", context);
  check_fields(node, context + " defaults", {"command", "options", "data", "accuracy", "labels", "gates"});
  if (node["command"]) defaults.command = scalar(node["command"], context, "command");
  read_flags(node, context + " defaults", base, defaults.flags);
  return defaults;
}

Item read_entry(const YAML::Node& node, const std::string& context, const fs::path& base, const JobDefaults& defaults,
                const std::vector<std::string>& args, const ResolveFlags& resolve) {
  Item item;
  item.origin = context;
  std::string model;
  FlagValues flags = defaults.flags;
  item.command = defaults.command;
  if (node.IsScalar()) {
    model = node.as<std::string>();
  } else if (node.IsMap()) {
    check_fields(node, context, kEntryFields);
    if (!node["model"]) fail("{}: field 'model' is missing", context);
    model = scalar(node["model"], context, "model");
    if (node["command"]) item.command = scalar(node["command"], context, "command");
    read_flags(node, context, base, flags);
  } else {
    fail("{}: an entry is a model path or a map with 'model'", context);
  }
  if (item.command.empty()) fail("{}: no command (give one on the command line, in 'defaults' or in the entry)", context);
  const fs::path path = fs::path(model).is_relative() ? (base / model).lexically_normal() : fs::path(model);
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail("{}: model '{}' does not exist or is not a file", context, path.string());
  item.input = path.string();
  item.relative = inside(path, base) ? path.lexically_relative(base).string() : path.filename().string();
  try {
    item.args = args;
    const std::vector<std::string> own = resolve(item.command, flags);
    item.args.insert(item.args.end(), own.begin(), own.end());
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", context, e.what()), e.kind());
  }
  item.bytes = model_bytes(path);
  return item;
}

std::vector<Item> read_job_file(const fs::path& file, const std::string& command, const std::vector<std::string>& args,
                                const ResolveFlags& resolve) {
  std::ifstream in(file);
  if (!in) fail("cannot open job file '{}'", file.string());
  const fs::path base = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  const std::string name = file.string();
  JobDefaults defaults{command, {}};
  std::vector<Item> items;
  try {
    if (file.extension() == ".jsonl") {
      std::string line;
      size_t number = 0;
      while (std::getline(in, line)) {
        ++number;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        const std::string context = fmt::format("{} line {}", name, number);
        YAML::Node node;
        try {
          node = YAML::Load(line);
        } catch (const YAML::Exception& e) {
          fail("{}: not valid JSON: {}", context, e.msg);
        }
        if (node.IsMap() && node["defaults"] && node.size() == 1) {
          defaults = read_defaults(node["defaults"], context, base, defaults);
          continue;
        }
        items.push_back(read_entry(node, context, base, defaults, args, resolve));
      }
    } else {
      std::stringstream text;
      text << in.rdbuf();
      YAML::Node root;
      try {
        root = YAML::Load(text.str());
      } catch (const YAML::Exception& e) {
        fail("{} line {}: not valid YAML/JSON: {}", name, e.mark.line + 1, e.msg);
      }
      YAML::Node models = root;
      if (root.IsMap()) {
        check_fields(root, name, {"defaults", "models"});
        if (root["defaults"]) defaults = read_defaults(root["defaults"], name, base, defaults);
        models = root["models"];
      }
      if (!models || !models.IsSequence()) fail("{}: expected a list of models (or a map with 'models:')", name);
      size_t entry = 0;
      for (const YAML::Node& node : models) {
        ++entry;
        items.push_back(read_entry(node, where(name, entry, node), base, defaults, args, resolve));
      }
    }
  } catch (const YAML::Exception& e) {
    fail("{} line {}: {}", name, e.mark.line + 1, e.msg);
  }
  if (items.empty()) fail("job file '{}' lists no models", name);
  return items;
}

Item item_for(const fs::path& model, const fs::path& relative, const std::string& command, const std::vector<std::string>& args,
              const std::string& origin) {
  if (command.empty()) fail("'{}': give the command to run on it (mopt batch COMMAND INPUT...)", origin);
  Item item;
  item.input = model.lexically_normal().string();
  item.relative = relative.lexically_normal().string();
  item.command = command;
  item.args = args;
  item.bytes = model_bytes(model);
  item.origin = origin;
  return item;
}

void add_path(const fs::path& path, const fs::path& root, const std::string& command, const std::vector<std::string>& args,
              const fs::path& exclude, const std::string& origin, std::vector<Item>& items) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const std::vector<fs::path> models = models_below(path, exclude);
    if (models.empty()) fail("folder '{}' holds no .onnx model", path.string());
    const fs::path below = root.empty() ? fs::path() : path.lexically_relative(root);
    for (const fs::path& m : models) items.push_back(item_for(path / m, below / m, command, args, origin));
    return;
  }
  if (!fs::exists(path, ec)) fail("'{}' does not exist", path.string());
  if (!fs::is_regular_file(path, ec)) fail("'{}' is not a model file or a folder", path.string());
  items.push_back(item_for(path, root.empty() ? path.filename() : path.lexically_relative(root), command, args, origin));
}

}  // namespace

uint64_t model_bytes(const fs::path& model) {
  std::error_code ec;
  uint64_t bytes = fs::file_size(model, ec);
  if (ec) bytes = 0;
  const uint64_t data = fs::file_size(fs::path(model.string() + ".data"), ec);
  return ec ? bytes : bytes + data;
}

bool is_job_file(const std::string& path) {
  const std::string ext = fs::path(path).extension().string();
  return ext == ".yaml" || ext == ".yml" || ext == ".json" || ext == ".jsonl";
}

std::vector<Item> expand(const std::vector<std::string>& inputs, const std::string& command, const std::vector<std::string>& args,
                         const fs::path& exclude, const ResolveFlags& resolve) {
  std::vector<Item> items;
  for (const std::string& input : inputs) {
    if (is_job_file(input) && !has_wildcard(input)) {
      std::vector<Item> entries = read_job_file(input, command, args, resolve);
      items.insert(items.end(), entries.begin(), entries.end());
    } else if (has_wildcard(input)) {
      const fs::path root = glob_root(input);
      for (const std::string& match : glob_matches(input)) add_path(match, root, command, args, exclude, input, items);
    } else {
      add_path(input, {}, command, args, exclude, input, items);
    }
  }
  if (items.empty()) fail("no models to convert");
  sort_items(items);
  // The same model with the same command and flags, named twice (a folder and a file in it): once.
  items.erase(std::unique(items.begin(), items.end(),
                          [](const Item& a, const Item& b) {
                            return a.input == b.input && a.command == b.command && a.args == b.args;
                          }),
              items.end());
  return items;
}

void sort_items(std::vector<Item>& items) {
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return std::tie(a.input, a.command, a.args) < std::tie(b.input, b.command, b.args);
  });
}

std::vector<int> assign_shards(const std::vector<Item>& items, int count) {
  std::vector<int> shard(items.size(), 0);
  if (count <= 1) return shard;
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return items[a].bytes > items[b].bytes; });
  std::vector<uint64_t> load(static_cast<size_t>(count), 0);
  for (size_t i : order) {
    const size_t lightest = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    shard[i] = static_cast<int>(lightest);
    load[lightest] += items[i].bytes + 1;  // +1: empty models still spread
  }
  return shard;
}

}  // namespace mopt::batch
