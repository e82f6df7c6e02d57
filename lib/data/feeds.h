// Model inputs and the data fed to them: seeded random feeds shaped from the model's input types
// (with --shape/--dim overrides for dynamic dims) and real data from .npy/.npz/.pb files, folders
// and test_data_set_N directories, split into samples.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "exec/array.h"
#include "ir/ir.h"

namespace mopt::data {

using Feeds = std::map<std::string, exec::Array>;

struct InputSpec {
  std::string name;
  int32_t dtype = 0;
  std::vector<int64_t> dims;            // -1 where unknown or symbolic
  std::vector<std::string> dim_params;  // symbolic names, "" where none
  bool has_shape = false;
};

// The inputs a caller must feed (graph inputs without an initializer).
std::vector<InputSpec> model_inputs(const ir::Model& model);

// `feeds` (for `original`) keyed by `model`'s input names where a pass renamed inputs (rename-values):
// the same inputs in the same order under other names. Returned as they are when the names agree or
// the input counts differ.
Feeds feeds_for(const ir::Model& model, const ir::Model& original, const Feeds& feeds);
Feeds feeds_for(const ir::Model& model, const std::vector<std::string>& original_inputs, const Feeds& feeds);

// "NAME=LO:HI" with finite LO <= HI (--value-range, quantize's tensor-range); usage errors name `flag`.
struct NamedRange {
  std::string name;
  double lo = 0, hi = 0;
};
NamedRange parse_named_range(const std::string& spec, const std::string& flag);

// How random feeds are shaped and filled where the model leaves it open (the names are checked against the
// model by `validate`, so a typo is a usage error, not a silently ignored flag).
struct ShapeOverrides {
  std::map<std::string, std::vector<int64_t>> shapes;  // --shape name=1,3,224,224
  std::map<std::string, int64_t> dims;                 // --dim batch=8 (by dim_param name)
  std::map<std::string, std::pair<double, double>> ranges;  // --value-range name=lo:hi (by input name)
  std::optional<int64_t> batch;                        // any other dynamic first dimension (convert --batch)
  // Parses "name=1,3,224,224", "batch=8" and "name=0:255"; usage errors on bad syntax.
  void add_shape(const std::string& spec);
  void add_dim(const std::string& spec);
  void add_range(const std::string& spec);
  bool empty() const { return shapes.empty() && dims.empty() && ranges.empty() && !batch; }
  // Usage error for a --shape or --value-range naming no model input, or a --dim naming no symbolic dim.
  void validate(const ir::Model& model) const;
};

// The dims random feeds set to 1 because nothing gave them a value, as "input[axis]" (with the dim's name),
// for the warning that says the random data may not resemble real inputs.
std::vector<std::string> defaulted_dims(const ir::Model& model, const ShapeOverrides& overrides);

// The concrete shape for an input: an explicit --shape, else dims with symbolic ones from --dim, a
// dynamic first dim from `batch`, and any other unknown dim set to 1.
std::vector<int64_t> concrete_shape(const InputSpec& input, const ShapeOverrides& overrides);

// Random feeds, deterministic for a seed. Ranges: float [-1, 1) (normal-ish inputs to trained models);
// signed ints [0, 10), unsigned [0, 10), bool 50/50 -- integers are never all zero; --value-range sets an
// input's range (integers: lo..hi inclusive).
Feeds random_feeds(const ir::Model& model, const ShapeOverrides& overrides, uint64_t seed);

// Loads samples for `model` from PATH: an .npy (single-input models), .npz or .pb file; a folder of
// <input>.npy / input_N.pb files; or a folder of sample subfolders (test_data_set_N, ...), one sample
// each. Arrays stacked along the batch axis are split into samples when the model's batch dim is fixed
// at 1. Unknown files are ignored; a missing input is an error.
std::vector<Feeds> load_samples(const ir::Model& model, const std::string& path);

// A calibration set split so that accuracy is measured on data the calibration did not see: with at
// least 10 samples every 5th sample (indices 4, 9, ...) is held out; a single sample of at least 10 rows
// (inputs batched along axis 0) holds out every 5th row instead; smaller sets are not split (held_out
// empty, calibration the whole set).
struct Holdout {
  std::vector<Feeds> calibration, held_out;
  std::string how;  // "samples 4, 9, ... (every 5th, 2 of 10)", "rows 4, 9, ... of the one sample (every 5th, 287 of 1437)"
};
Holdout split_holdout(std::vector<Feeds> samples);

// The file name stem for a tensor name: characters other than [A-Za-z0-9_.-] written as '_'.
std::string file_safe_name(const std::string& name);

// Stable short description of a feed, e.g. "input float[360,1,8,8]".
std::string describe(const Feeds& feeds);

}  // namespace mopt::data
