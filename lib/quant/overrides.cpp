// The quantization overrides file; see overrides.h.
#include "quant/overrides.h"

#include <nlohmann/json.hpp>

#include <cmath>

#include "quant/quantize.h"
#include "util/error.h"
#include "util/file.h"

namespace mopt::quant {

Overrides read_overrides(const std::filesystem::path& path) {
  const std::string where = fmt::format("overrides file '{}'", path.string());
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    usage_error("{}: not JSON ({})", where, e.what());
  }
  if (!doc.is_object()) usage_error("{}: expected an object with \"keep_float\" and/or \"tensors\"", where);
  Overrides out;
  for (const auto& [key, value] : doc.items()) {
    if (key == "keep_float") {
      if (!value.is_array()) usage_error("{}: \"keep_float\" must be a list of node names", where);
      for (const nlohmann::json& name : value) {
        if (!name.is_string() || name.get<std::string>().empty()) usage_error("{}: \"keep_float\" must be a list of node names", where);
        out.keep_float.insert(name.get<std::string>());
      }
    } else if (key == "tensors") {
      if (!value.is_object())
        usage_error("{}: \"tensors\" must map tensor names to {{\"type\": ..., \"range\": [lo, hi], \"symmetric\": ...}}", where);
      for (const auto& [tensor, settings] : value.items()) {
        if (!settings.is_object()) usage_error("{}: tensor '{}' must map to an object of \"type\", \"range\", \"symmetric\"", where, tensor);
        for (const auto& [field, v] : settings.items()) {
          if (field == "type") {
            if (!v.is_string()) usage_error("{}: tensor '{}': \"type\" must be a string (int8, uint8, int16, uint16)", where, tensor);
            out.tensor_types[tensor] = parse_qtype(v.get<std::string>(), false, true);
          } else if (field == "range") {
            if (!v.is_array() || v.size() != 2 || !v[0].is_number() || !v[1].is_number())
              usage_error("{}: tensor '{}': \"range\" must be [lo, hi]", where, tensor);
            const double lo = v[0].get<double>(), hi = v[1].get<double>();
            if (!std::isfinite(lo) || !std::isfinite(hi) || lo > hi)
              usage_error("{}: tensor '{}': \"range\" [{}, {}] must be finite with lo <= hi", where, tensor, lo, hi);
            out.tensor_ranges.push_back({tensor, lo, hi});
          } else if (field == "symmetric") {
            if (!v.is_boolean()) usage_error("{}: tensor '{}': \"symmetric\" must be true or false", where, tensor);
            out.tensor_symmetry[tensor] = v.get<bool>();
          } else {
            usage_error("{}: tensor '{}': unknown setting \"{}\" (type, range, symmetric)", where, tensor, field);
          }
        }
      }
    } else {
      usage_error("{}: unknown key \"{}\" (keep_float, tensors)", where, key);
    }
  }
  return out;
}

}  // namespace mopt::quant
