// The report as one self-contained HTML page (--html FILE): sizes before/after by dtype and the largest
// tensors, the operator histogram, the passes with their counters and time, the accuracy table with the
// data it was measured on, the gates and the per-layer error chart (worst first, by original node name).
// Inline CSS and SVG only: no script, no network (a Content-Security-Policy forbids both), so it opens
// anywhere, from a CI artifact too. Every number shown carries data-json (its JSON pointer in the report)
// and data-value (the report's value), so a test can check the page says what the JSON says.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace mopt::report {

// `report`: the report of an optimizing command, or compare's report.
std::string html_report(const nlohmann::json& report);
// Writes html_report(report) to `path` atomically.
void write_html(const nlohmann::json& report, const std::string& path);

}  // namespace mopt::report
