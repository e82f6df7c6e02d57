// Per-node and per-tensor quantization overrides read from a JSON file (quantize(overrides=FILE)), for
// lists too long for flags. They add to the flags that set the same things one by one:
//
//   {
//     "keep_float": ["/blocks.1/fc2/MatMul"],                   like exclude-nodes
//     "tensors": {
//       "/fc1/Gemm_output_0": {"type": "int16"},               like tensor-type
//       "input": {"range": [0, 1], "symmetric": true}           like tensor-range; a symmetric range
//     }
//   }
//
// Every key is checked: an unknown one, a wrong type or a bad value is a usage error naming the file and
// the key, before any calibration runs.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "data/feeds.h"

namespace mopt::quant {

struct Overrides {
  std::set<std::string> keep_float;              // node names
  std::map<std::string, int32_t> tensor_types;   // activation name -> quantized type
  std::map<std::string, bool> tensor_symmetry;   // activation name -> symmetric range
  std::vector<data::NamedRange> tensor_ranges;   // activation ranges
};

Overrides read_overrides(const std::filesystem::path& path);

}  // namespace mopt::quant
