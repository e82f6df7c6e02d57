// The --verify-numerics instrument; see numerics_check.h.
#include "driver/numerics_check.h"

#include <fmt/format.h>

#include "util/error.h"

namespace mopt::driver {

namespace {
const eval::Evaluation& with_samples(const eval::Evaluation* evaluation) {
  if (evaluation == nullptr || evaluation->samples.empty())
    usage_error("--verify-numerics needs data to run the model on; drop --accuracy off");
  return *evaluation;
}
}  // namespace

NumericsCheck::NumericsCheck(const eval::Evaluation* evaluation, double tolerance)
    : evaluation_(with_samples(evaluation)), tolerance_(tolerance) {}

void NumericsCheck::before_pipeline(const ir::Model&) { current_ = evaluation_.reference; }

std::string NumericsCheck::after_change(const std::string&, const ir::Model& model) {
  eval::Outputs now;
  try {
    now = evaluation_.run(model);
  } catch (const Error& e) {
    return fmt::format("broke the model (it no longer runs: {})", e.what());
  }
  for (size_t s = 0; s < now.per_sample.size(); ++s) {
    for (size_t o = 0; o < now.names.size(); ++o) {
      const exec::Array& before = current_.per_sample[s][o];
      const exec::Array& after = now.per_sample[s][o];
      if (before.shape() != after.shape() || before.dtype() != after.dtype())
        return fmt::format("changed the outputs (output '{}' changed type or shape)", now.names[o]);
      const double worst = eval::scaled_max_difference(before, after);
      if (!(worst <= tolerance_))
        return fmt::format("changed the outputs (output '{}' moved by up to {:.3g} of max(1, max|output|), tolerance {:.3g})",
                           now.names[o], worst, tolerance_);
    }
  }
  current_ = std::move(now);
  return "";
}

}  // namespace mopt::driver
