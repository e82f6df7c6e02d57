// The report as Markdown, for CI step summaries and pull-request comments (--markdown FILE): the size
// table, the accuracy verdict on the data it was measured on, the gates, the worst layers and the passes
// that changed the model. Rendered from the report's JSON, so it says exactly what the report says.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace mopt::report {

std::string markdown_summary(const nlohmann::json& report);

// Writes `text` to `path`: atomically, or appended when `path` is $GITHUB_STEP_SUMMARY (GitHub Actions
// collects every step's summary in that one file).
void write_markdown(const std::string& text, const std::string& path);

}  // namespace mopt::report
