// The --verify-numerics instrument; see numerics_check.h.
#include "driver/numerics_check.h"

#include <fmt/format.h>

#include "util/error.h"

namespace mopt::driver {

NumericsCheck::NumericsCheck(const eval::Evaluation& evaluation, double tolerance) : evaluation_(evaluation), tolerance_(tolerance) {
  if (evaluation_.samples.empty()) usage_error("--verify-numerics needs data to run the model on; drop --accuracy off");
}

void NumericsCheck::before_pipeline(const ir::Model&) { current_ = evaluation_.reference; }

std::string NumericsCheck::after_change(const std::string&, const ir::Model& model) {
  eval::Outputs now;
  try {
    std::vector<data::Feeds> fed;
    for (const data::Feeds& f : evaluation_.samples) fed.push_back(data::feeds_for(model, evaluation_.input_names, f));
    now = eval::run_samples(model, fed, evaluation_.threads, evaluation_.feedback);
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
