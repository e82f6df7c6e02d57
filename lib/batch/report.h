// A batch's report: totals, sizes saved, the worst accuracy, failures with their reasons and every model's
// record, as JSON (the header of every mopt document, then `batch`), as Markdown for CI step summaries and
// as the table printed at the end of a run. `mopt batch` and `mopt batch merge` build it the same way.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "batch/manifest.h"

namespace mopt::batch {

// What a model's own report says of its accuracy: {verdict, data, min_cosine, accuracy_drop_pp} (null
// fields when not measured).
nlohmann::json accuracy_summary(const nlohmann::json& model_report);

struct BatchOutcome {
  std::vector<Record> records;        // one per finished model, in worklist order
  std::vector<std::string> missing;   // outputs planned but never finished (merge; an interrupted run)
  std::vector<std::string> duplicates;  // outputs finished by more than one shard (merge)
  std::vector<std::string> problems;  // manifest lines that were skipped
  int shard_count = 1;
  double wall_seconds = 0;
};

// Exit status: 1 when a model errored or timed out or one is missing, else 3 when a gate failed, else 0.
int exit_status(const BatchOutcome& outcome);

// `header` is report::header(...) of the batch's own invocation.
nlohmann::json to_json(const BatchOutcome& outcome, nlohmann::json header);
std::string markdown(const nlohmann::json& report);
std::string terminal_summary(const nlohmann::json& report);

}  // namespace mopt::batch
