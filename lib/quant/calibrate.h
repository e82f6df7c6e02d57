// Calibration: the float model runs on sample inputs in mopt's executor and every float tensor of the
// main graph gets a range for its quantization parameters.
//
//   minmax      the observed [min, max]
//   percentile  clip |x| at the given percentile of its histogram (--percentile 99.999)
//   entropy     the threshold whose 8-bit quantized histogram is closest to the float one in KL
//               divergence (TensorRT's method; 2048 bins, 128 quantized levels per side)
//   mse         the threshold with the smallest expected squared error (clipping + rounding noise)
//
// Methods other than minmax take a second pass over the samples: the first fixes each tensor's
// histogram range, the second fills the histograms (2048 bins of |x|).
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/feeds.h"
#include "ir/ir.h"

namespace mopt::quant {

enum class CalibrationMethod { MinMax, Percentile, Entropy, Mse };
CalibrationMethod parse_calibration_method(const std::string& name);  // usage error on unknown names
const char* name(CalibrationMethod method);

struct CalibrationOptions {
  CalibrationMethod method = CalibrationMethod::MinMax;
  // Tensors whose per-channel means to record (bias correction), with the channel axis: 1 for NCHW
  // activations, -1 for the last axis.
  std::map<std::string, int64_t> channel_means_of;
  double percentile = 99.999;
  int bins = 2048;
  int threads = 0;
};

struct TensorRange {
  double min = 0, max = 0;                    // the range quantization covers
  double observed_min = 0, observed_max = 0;  // what the samples produced
  int64_t elements = 0;                       // values per sample (the mean over the samples)
  std::vector<double> channel_mean;           // per channel, when CalibrationOptions::channel_means_of asks
  bool overridden = false;                    // min/max were given by the user (apply_range_overrides)
};

struct CalibrationTable {
  std::string method;
  size_t samples = 0;  // feeds (batches) run
  int64_t rows = 0;    // rows over all samples (first dimension of the first input)
  double seconds = 0;
  std::map<std::string, TensorRange> ranges;  // by value name
  const TensorRange* find(const std::string& name) const {
    auto it = ranges.find(name);
    return it == ranges.end() ? nullptr : &it->second;
  }
};

// Ranges of every float graph input and float node output of the main graph. Throws mopt::Error when
// the executor cannot run the model or there are no samples.
CalibrationTable calibrate(const ir::Model& model, const std::vector<data::Feeds>& samples, const CalibrationOptions& options);

// Replaces the calibrated ranges of the named tensors by the given ones (quantize(tensor-range=NAME=LO:HI,...)),
// keeping what the samples produced as the observed range. Usage error for a name that is no float value the
// calibration saw (graph input or node output of the main graph), or one named twice.
void apply_range_overrides(CalibrationTable& table, const std::vector<data::NamedRange>& overrides);

// The threshold chosen by `method` from a histogram of |x| over [0, absmax] (exposed for tests).
double choose_threshold(CalibrationMethod method, const std::vector<double>& histogram, double absmax, double percentile);

}  // namespace mopt::quant
