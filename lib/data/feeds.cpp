// Random and file-backed feeds for model inputs.
#include "data/feeds.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <cmath>
#include <cstring>
#include <random>
#include <set>

#include "data/npy.h"
#include "exec/dispatch.h"
#include "util/error.h"

namespace mopt::data {
namespace fs = std::filesystem;
namespace d = ir::dtype;
using exec::Array;

std::vector<InputSpec> model_inputs(const ir::Model& model) {
  std::vector<InputSpec> out;
  for (const ir::Value* v : model.graph().inputs()) {
    if (v->initializer()) continue;
    InputSpec s;
    s.name = v->name();
    const onnx::TypeProto& type = v->info().type();
    if (!type.has_tensor_type()) fail("not supported: input '{}' is not a tensor", v->name());
    s.dtype = type.tensor_type().elem_type();
    if (type.tensor_type().has_shape()) {
      s.has_shape = true;
      for (const auto& dim : type.tensor_type().shape().dim()) {
        s.dims.push_back(dim.has_dim_value() ? dim.dim_value() : -1);
        s.dim_params.push_back(dim.has_dim_param() ? dim.dim_param() : "");
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

static std::pair<std::string, std::string> split_assignment(const std::string& spec, const char* flag) {
  size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0) usage_error("{} expects NAME=VALUE, got '{}'", flag, spec);
  return {spec.substr(0, eq), spec.substr(eq + 1)};
}

static int64_t parse_dim(const std::string& text, const std::string& spec, const char* flag) {
  try {
    size_t used = 0;
    long long v = std::stoll(text, &used);
    if (used != text.size() || v < 0) throw std::invalid_argument(text);
    return v;
  } catch (const std::exception&) {
    usage_error("{}: '{}' is not a dimension in '{}'", flag, text, spec);
  }
}

void ShapeOverrides::add_shape(const std::string& spec) {
  auto [name, value] = split_assignment(spec, "--shape");
  std::vector<int64_t> parsed;
  size_t start = 0;
  while (!value.empty() && start <= value.size()) {
    size_t comma = value.find(',', start);
    std::string part = value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    parsed.push_back(parse_dim(part, spec, "--shape"));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  shapes[name] = parsed;
}

void ShapeOverrides::add_dim(const std::string& spec) {
  auto [name, value] = split_assignment(spec, "--dim");
  dims[name] = parse_dim(value, spec, "--dim");
}

NamedRange parse_named_range(const std::string& spec, const std::string& flag) {
  const size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0) usage_error("{} expects NAME=LO:HI, got '{}'", flag, spec);
  const std::string name = spec.substr(0, eq), value = spec.substr(eq + 1);
  const size_t colon = value.find(':');
  auto number = [&](const std::string& text) {
    try {
      size_t used = 0;
      const double v = std::stod(text, &used);
      if (used != text.size() || !std::isfinite(v)) throw std::invalid_argument(text);
      return v;
    } catch (const std::exception&) {
      usage_error("{}: '{}' is not a number in '{}' (expected NAME=LO:HI)", flag, text, spec);
    }
  };
  if (colon == std::string::npos) usage_error("{} expects NAME=LO:HI, got '{}'", flag, spec);
  const double lo = number(value.substr(0, colon)), hi = number(value.substr(colon + 1));
  if (!(lo <= hi)) usage_error("{} {}: LO must not exceed HI, got '{}'", flag, name, value);
  return {name, lo, hi};
}

void ShapeOverrides::add_range(const std::string& spec) {
  const NamedRange r = parse_named_range(spec, "--value-range");
  ranges[r.name] = {r.lo, r.hi};
}

void ShapeOverrides::validate(const ir::Model& model) const {
  const std::vector<InputSpec> inputs = model_inputs(model);
  std::vector<std::string> input_names;
  std::set<std::string> dim_names;
  for (const InputSpec& s : inputs) {
    input_names.push_back(s.name);
    for (const std::string& p : s.dim_params) {
      if (!p.empty()) dim_names.insert(p);
    }
  }
  auto check_input = [&](const std::string& name, const char* flag) {
    if (std::find(input_names.begin(), input_names.end(), name) == input_names.end())
      usage_error("{} {}: the model has no input named '{}' (inputs: {})", flag, name, name, fmt::join(input_names, ", "));
  };
  for (const auto& [name, dims_] : shapes) check_input(name, "--shape");
  for (const auto& [name, range] : ranges) check_input(name, "--value-range");
  for (const auto& [name, value] : dims) {
    if (!dim_names.count(name))
      usage_error("--dim {}: no input has a dimension named '{}' (named dimensions: {})", name, name,
                  dim_names.empty() ? "none" : fmt::format("{}", fmt::join(dim_names, ", ")));
  }
}

std::vector<std::string> defaulted_dims(const ir::Model& model, const ShapeOverrides& overrides) {
  std::vector<std::string> out;
  for (const InputSpec& input : model_inputs(model)) {
    if (overrides.shapes.count(input.name)) continue;
    for (size_t i = 0; i < input.dims.size(); ++i) {
      if (input.dims[i] >= 0) continue;
      const std::string& param = input.dim_params[i];
      if (!param.empty() && overrides.dims.count(param)) continue;
      if (i == 0 && overrides.batch) continue;
      out.push_back(param.empty() ? fmt::format("{}[{}]", input.name, i) : fmt::format("{}[{}] ('{}')", input.name, i, param));
    }
  }
  return out;
}
std::vector<int64_t> concrete_shape(const InputSpec& input, const ShapeOverrides& overrides) {
  auto it = overrides.shapes.find(input.name);
  if (it != overrides.shapes.end()) {
    if (input.has_shape && it->second.size() != input.dims.size()) {
      usage_error("--shape {}: the model's input has rank {}, got {} dims", input.name, input.dims.size(), it->second.size());
    }
    for (size_t i = 0; i < input.dims.size() && i < it->second.size(); ++i) {
      if (input.dims[i] >= 0 && input.dims[i] != it->second[i]) {
        usage_error("--shape {}: dim {} is fixed at {} in the model", input.name, i, input.dims[i]);
      }
    }
    return it->second;
  }
  std::vector<int64_t> out;
  for (size_t i = 0; i < input.dims.size(); ++i) {
    int64_t dim = input.dims[i];
    if (dim < 0) {
      auto d2 = overrides.dims.find(input.dim_params[i]);
      dim = d2 != overrides.dims.end() && !input.dim_params[i].empty() ? d2->second : i == 0 && overrides.batch ? *overrides.batch : 1;
    }
    out.push_back(dim);
  }
  return out;
}

Feeds random_feeds(const ir::Model& model, const ShapeOverrides& overrides, uint64_t seed) {
  Feeds feeds;
  std::mt19937_64 rng(seed);
  for (const InputSpec& input : model_inputs(model)) {
    if (!input.has_shape && !overrides.shapes.count(input.name)) {
      usage_error("input '{}' has no shape in the model; give one with --shape {}=...", input.name, input.name);
    }
    Array a(exec::is_16bit_float(input.dtype) ? d::kFloat : input.dtype, concrete_shape(input, overrides));
    // Each input draws from its own stream so adding an input does not change the others.
    std::mt19937_64 local(seed ^ std::hash<std::string>{}(input.name) ^ rng());
    const auto range = overrides.ranges.find(input.name);
    const bool ranged = range != overrides.ranges.end();
    std::uniform_real_distribution<double> uniform(ranged ? range->second.first : -1.0, ranged ? range->second.second : 1.0);
    std::uniform_int_distribution<int64_t> small(0, 9);
    if (ranged) {
      small = std::uniform_int_distribution<int64_t>(static_cast<int64_t>(std::ceil(range->second.first)),
                                                     static_cast<int64_t>(std::floor(range->second.second)));
      if (a.dtype() != d::kFloat && a.dtype() != d::kDouble && small.a() > small.b())
        usage_error("--value-range {}: [{}, {}] holds no integer for this integer input", input.name, range->second.first,
                    range->second.second);
    }
    exec::visit<exec::kNumbers | exec::kBools>(a.dtype(), "random input", [&]<typename T>(T) {
      T* p = a.data<T>();
      for (int64_t i = 0; i < a.numel(); ++i) {
        if constexpr (std::is_floating_point_v<T>) p[i] = static_cast<T>(uniform(local));
        else if constexpr (std::is_same_v<T, bool>) p[i] = small(local) % 2 == 1;
        else p[i] = static_cast<T>(small(local));
      }
      // Integer inputs must not be all zeros (unless their range says so).
      if constexpr (!std::is_floating_point_v<T>) {
        if (a.numel() > 0 && !ranged) p[0] = static_cast<T>(1);
      }
    });
    feeds[input.name] = exec::is_16bit_float(input.dtype) ? exec::cast(a, input.dtype) : a;
  }
  return feeds;
}

std::string file_safe_name(const std::string& name) {
  std::string out = name;
  for (char& c : out) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') c = '_';
  }
  return out;
}

namespace {

// Arrays of one folder: <name>.npy by input name, or input_N.pb in input order (or by TensorProto name).
Feeds read_folder(const std::vector<InputSpec>& inputs, const fs::path& dir) {
  Feeds out;
  std::vector<fs::path> pbs;
  // input_<N>.pb, in the order of N (other names are not inputs).
  auto number = [](const fs::path& p) -> std::optional<int64_t> {
    const std::string stem = p.stem().string();
    if (p.extension() != ".pb" || stem.rfind("input_", 0) != 0 || stem.size() == 6 || stem.size() > 16) return std::nullopt;
    int64_t n = 0;
    for (size_t i = 6; i < stem.size(); ++i) {
      if (!std::isdigit(static_cast<unsigned char>(stem[i]))) return std::nullopt;
      n = n * 10 + (stem[i] - '0');
    }
    return n;
  };
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (number(entry.path())) pbs.push_back(entry.path());
  }
  std::sort(pbs.begin(), pbs.end(), [&](const fs::path& a, const fs::path& b) { return *number(a) < *number(b); });
  for (size_t i = 0; i < pbs.size(); ++i) {
    std::string name;
    Array a = read_tensor_pb(pbs[i].string(), &name);
    bool named = std::any_of(inputs.begin(), inputs.end(), [&](const InputSpec& s) { return s.name == name; });
    if (!named) {
      if (i >= inputs.size()) fail("{}: more input_N.pb files than model inputs", dir.string());
      name = inputs[i].name;
    }
    out[name] = a;
  }
  for (const InputSpec& s : inputs) {
    if (out.count(s.name)) continue;
    fs::path npy = dir / (file_safe_name(s.name) + ".npy");
    if (fs::exists(npy)) out[s.name] = read_npy(npy.string());
  }
  return out;
}

void require_all(const std::vector<InputSpec>& inputs, const Feeds& feeds, const std::string& where) {
  for (const InputSpec& s : inputs) {
    if (!feeds.count(s.name)) fail("{}: no data for model input '{}'", where, s.name);
  }
}

// Splits arrays stacked along axis 0 into samples when the model fixes that axis at 1.
std::vector<Feeds> split_batch(const std::vector<InputSpec>& inputs, const Feeds& feeds) {
  int64_t n = 0;
  for (const InputSpec& s : inputs) {
    const Array& a = feeds.at(s.name);
    bool fixed_one = s.has_shape && !s.dims.empty() && s.dims[0] == 1 && a.rank() == static_cast<int64_t>(s.dims.size());
    if (!fixed_one || a.dim(0) <= 1) return {feeds};
    if (n && a.dim(0) != n) return {feeds};
    n = a.dim(0);
  }
  std::vector<Feeds> out(static_cast<size_t>(n));
  for (const auto& [name, a] : feeds) {
    exec::Shape one = a.shape();
    one[0] = 1;
    size_t chunk = a.nbytes() / static_cast<size_t>(n);
    for (int64_t i = 0; i < n; ++i) {
      Array part(a.dtype(), one);
      std::memcpy(part.bytes(), a.bytes() + static_cast<size_t>(i) * chunk, chunk);
      out[static_cast<size_t>(i)][name] = part;
    }
  }
  return out;
}

}  // namespace

Feeds feeds_for(const ir::Model& model, const std::vector<std::string>& original_inputs, const Feeds& feeds) {
  const std::vector<InputSpec> inputs = model_inputs(model);
  if (inputs.size() != original_inputs.size()) return feeds;
  bool same = true;
  for (size_t i = 0; i < inputs.size(); ++i) same = same && inputs[i].name == original_inputs[i];
  if (same) return feeds;
  Feeds renamed;
  for (const auto& [name, array] : feeds) {
    if (std::find(original_inputs.begin(), original_inputs.end(), name) == original_inputs.end()) renamed[name] = array;
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto it = feeds.find(original_inputs[i]);
    if (it != feeds.end()) renamed[inputs[i].name] = it->second;
  }
  return renamed;
}

Feeds feeds_for(const ir::Model& model, const ir::Model& original, const Feeds& feeds) {
  std::vector<std::string> names;
  for (const InputSpec& s : model_inputs(original)) names.push_back(s.name);
  return feeds_for(model, names, feeds);
}

std::vector<Feeds> load_samples(const ir::Model& model, const std::string& path) {
  std::vector<InputSpec> inputs = model_inputs(model);
  fs::path p(path);
  std::error_code ec;
  if (!fs::exists(p, ec)) fail("data path {} does not exist", path);
  Feeds feeds;
  if (fs::is_directory(p)) {
    feeds = read_folder(inputs, p);
    if (feeds.empty()) {
      // A folder of sample folders, in name order.
      std::vector<fs::path> subdirs;
      for (const auto& entry : fs::directory_iterator(p)) {
        if (entry.is_directory()) subdirs.push_back(entry.path());
      }
      std::sort(subdirs.begin(), subdirs.end());
      std::vector<Feeds> samples;
      for (const fs::path& sub : subdirs) {
        Feeds f = read_folder(inputs, sub);
        if (f.empty()) continue;
        require_all(inputs, f, sub.string());
        samples.push_back(std::move(f));
      }
      if (samples.empty()) fail("{}: no input data found (expected <input>.npy, input_N.pb or sample subfolders)", path);
      return samples;
    }
  } else if (p.extension() == ".npz") {
    std::map<std::string, Array> arrays = read_npz(path);
    for (const InputSpec& s : inputs) {
      auto it = arrays.find(s.name);
      if (it == arrays.end()) it = arrays.find(file_safe_name(s.name));
      if (it != arrays.end()) feeds[s.name] = it->second;
    }
    if (feeds.empty() && inputs.size() == 1 && arrays.size() == 1) feeds[inputs[0].name] = arrays.begin()->second;
  } else if (p.extension() == ".npy" || p.extension() == ".pb") {
    if (inputs.size() != 1) fail("{}: a single array file needs a single-input model; this one has {} inputs", path, inputs.size());
    feeds[inputs[0].name] = p.extension() == ".npy" ? read_npy(path) : read_tensor_pb(path);
  } else {
    fail("{}: unknown data format (use .npy, .npz, .pb or a folder)", path);
  }
  require_all(inputs, feeds, path);
  return split_batch(inputs, feeds);
}

namespace {

constexpr size_t kHoldoutMin = 10, kHoldoutEvery = 5;

// Rows `keep(i)` of every array (all share dim 0).
Feeds take_rows(const Feeds& feeds, int64_t rows, const std::function<bool(int64_t)>& keep) {
  Feeds out;
  int64_t kept = 0;
  for (int64_t i = 0; i < rows; ++i) kept += keep(i) ? 1 : 0;
  for (const auto& [name, a] : feeds) {
    exec::Shape shape = a.shape();
    shape[0] = kept;
    Array part(a.dtype(), shape);
    const size_t row_bytes = a.nbytes() / static_cast<size_t>(rows);
    size_t at = 0;
    for (int64_t i = 0; i < rows; ++i) {
      if (!keep(i)) continue;
      std::memcpy(part.bytes() + at * row_bytes, a.bytes() + static_cast<size_t>(i) * row_bytes, row_bytes);
      ++at;
    }
    out[name] = std::move(part);
  }
  return out;
}

}  // namespace

Holdout split_holdout(std::vector<Feeds> samples) {
  Holdout h;
  auto held = [](int64_t i) { return i % static_cast<int64_t>(kHoldoutEvery) == static_cast<int64_t>(kHoldoutEvery) - 1; };
  if (samples.size() >= kHoldoutMin) {
    for (size_t i = 0; i < samples.size(); ++i) (held(static_cast<int64_t>(i)) ? h.held_out : h.calibration).push_back(std::move(samples[i]));
    h.how = fmt::format("samples 4, 9, ... (every 5th, {} of {})", h.held_out.size(), h.held_out.size() + h.calibration.size());
    return h;
  }
  int64_t rows = -1;
  bool batched = samples.size() == 1 && !samples[0].empty();
  for (const auto& [name, a] : batched ? samples[0] : Feeds{}) {
    if (a.rank() == 0 || (rows >= 0 && a.dim(0) != rows)) batched = false;
    else rows = a.dim(0);
  }
  if (batched && rows >= static_cast<int64_t>(kHoldoutMin)) {
    h.held_out.push_back(take_rows(samples[0], rows, held));
    h.calibration.push_back(take_rows(samples[0], rows, [&](int64_t i) { return !held(i); }));
    h.how = fmt::format("rows 4, 9, ... of the one sample (every 5th, {} of {})", h.held_out[0].begin()->second.dim(0), rows);
    return h;
  }
  h.calibration = std::move(samples);
  return h;
}

std::string describe(const Feeds& feeds) {
  std::vector<std::string> parts;
  for (const auto& [name, a] : feeds) parts.push_back(fmt::format("{} {}{}", name, d::name(a.dtype()), exec::shape_string(a.shape())));
  return fmt::format("{}", fmt::join(parts, ", "));
}

}  // namespace mopt::data
