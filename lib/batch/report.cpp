// The batch report in JSON, Markdown and on the terminal.
#include "batch/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <map>

namespace mopt::batch {

using nlohmann::json;

namespace {

const std::vector<Status> kStatuses = {Status::Ok, Status::Cached, Status::Unchanged, Status::GateFailed, Status::Error,
                                       Status::Timeout};

std::string mib(uint64_t bytes) { return fmt::format("{:.2f} MiB", static_cast<double>(bytes) / (1024.0 * 1024.0)); }

// A failure's message and its failed gates, on one line.
std::string failure_reason(const json& failure) {
  std::string reason = failure["message"].is_string() ? failure["message"].get<std::string>() : "";
  for (const json& g : failure["failed_gates"]) {
    if (!reason.empty()) reason += "; ";
    reason += g.get<std::string>();
  }
  return reason;
}

std::string number_or_dash(const json& v, const char* format_spec) {
  if (!v.is_number()) return "-";
  return fmt::format(fmt::runtime(format_spec), v.get<double>());
}

}  // namespace

json accuracy_summary(const json& model_report) {
  const json accuracy = model_report.value("accuracy", json(nullptr));
  if (!accuracy.is_object()) return nullptr;
  json summary = {{"verdict", nullptr}, {"data", nullptr}, {"min_cosine", nullptr}, {"accuracy_drop_pp", nullptr}};
  if (accuracy.contains("verdict") && accuracy["verdict"].is_object()) summary["verdict"] = accuracy["verdict"].value("status", "");
  if (accuracy.contains("data") && accuracy["data"].is_object()) summary["data"] = accuracy["data"].value("description", "");
  double worst = std::numeric_limits<double>::infinity();
  for (const json& output : accuracy.value("outputs", json::array())) {
    const json c = output.value("cosine_similarity", json(nullptr));
    if (c.is_number()) worst = std::min(worst, c.get<double>());
  }
  if (worst != std::numeric_limits<double>::infinity()) summary["min_cosine"] = worst;
  if (accuracy.contains("labels") && accuracy["labels"].is_object())
    summary["accuracy_drop_pp"] = accuracy["labels"].value("accuracy_drop_pp", json(nullptr));
  return summary;
}

int exit_status(const BatchOutcome& outcome) {
  bool gate = false;
  for (const Record& r : outcome.records) {
    if (r.status == Status::Error || r.status == Status::Timeout) return 1;
    gate = gate || r.status == Status::GateFailed || (r.status == Status::Cached && !r.failed_gates.empty());
  }
  if (!outcome.missing.empty()) return 1;
  return gate ? 3 : 0;
}

json to_json(const BatchOutcome& outcome, json header) {
  json counts = json::object();
  for (Status s : kStatuses) counts[to_string(s)] = 0;
  uint64_t input_bytes = 0, output_bytes = 0, saved = 0;
  double seconds = 0;
  json failures = json::array(), results = json::array(), worst = nullptr;
  for (const Record& r : outcome.records) {
    counts[to_string(r.status)] = counts[to_string(r.status)].get<int>() + 1;
    input_bytes += r.input_bytes;
    if (!r.output_sha256.empty()) {
      output_bytes += r.output_bytes;
      if (r.input_bytes > r.output_bytes) saved += r.input_bytes - r.output_bytes;
    }
    seconds += r.seconds;
    if (r.status == Status::Error || r.status == Status::Timeout || r.status == Status::GateFailed ||
        (r.status == Status::Cached && !r.failed_gates.empty())) {
      failures.push_back({{"input", r.input}, {"output", r.output}, {"status", to_string(r.status)},
                          {"message", r.message.empty() ? json(nullptr) : json(r.message)}, {"failed_gates", r.failed_gates}});
    }
    if (r.accuracy.is_object() && r.accuracy.value("min_cosine", json(nullptr)).is_number()) {
      const double c = r.accuracy["min_cosine"];
      if (worst.is_null() || c < worst["min_cosine"].get<double>())
        worst = {{"input", r.input}, {"output", r.output}, {"min_cosine", c}, {"accuracy_drop_pp", r.accuracy["accuracy_drop_pp"]}};
    }
    json line = batch::to_json(r);
    line.erase("type");
    results.push_back(line);
  }
  header["batch"] = {{"models", outcome.records.size() + outcome.missing.size()},
                     {"shards", outcome.shard_count},
                     {"counts", counts},
                     {"input_bytes", input_bytes},
                     {"output_bytes", output_bytes},
                     {"saved_bytes", saved},
                     {"worker_seconds", seconds},
                     {"wall_seconds", outcome.wall_seconds},
                     {"worst_accuracy", worst},
                     {"failures", failures},
                     {"missing", outcome.missing},
                     {"duplicates", outcome.duplicates},
                     {"manifest_problems", outcome.problems},
                     {"results", results}};
  return header;
}

std::string markdown(const json& report) {
  const json& b = report.at("batch");
  const json& c = b.at("counts");
  std::string md = fmt::format("## mopt batch: {} models\n\n", b.at("models").get<uint64_t>());
  md += "| ok | cached | unchanged | gate failed | error | timeout | missing |\n|---|---|---|---|---|---|---|\n";
  md += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n\n", c["ok"].get<int>(), c["cached"].get<int>(), c["unchanged"].get<int>(),
                    c["gate-failed"].get<int>(), c["error"].get<int>(), c["timeout"].get<int>(), b.at("missing").size());
  md += fmt::format("Size: {} -> {} (saved {}). Worker time {:.1f} s, wall {:.1f} s.\n\n", mib(b["input_bytes"]),
                    mib(b["output_bytes"]), mib(b["saved_bytes"]), b["worker_seconds"].get<double>(), b["wall_seconds"].get<double>());
  if (!b["failures"].empty()) {
    md += "### Failures\n\n| model | status | reason |\n|---|---|---|\n";
    for (const json& f : b["failures"]) {
      std::string reason = failure_reason(f);
      std::replace(reason.begin(), reason.end(), '|', '/');
      md += fmt::format("| `{}` | {} | {} |\n", f["input"].get<std::string>(), f["status"].get<std::string>(), reason);
    }
    md += "\n";
  }
  for (const json& m : b["missing"]) md += fmt::format("- missing: `{}`\n", m.get<std::string>());
  for (const json& d : b["duplicates"]) md += fmt::format("- done twice: `{}`\n", d.get<std::string>());
  // The five models whose outputs moved the most.
  std::vector<json> measured;
  for (const json& r : b["results"]) {
    if (r["accuracy"].is_object() && r["accuracy"]["min_cosine"].is_number()) measured.push_back(r);
  }
  std::stable_sort(measured.begin(), measured.end(), [](const json& x, const json& y) {
    return x["accuracy"]["min_cosine"].get<double>() < y["accuracy"]["min_cosine"].get<double>();
  });
  if (!measured.empty()) {
    md += "### Lowest accuracy\n\n| model | min cosine | accuracy drop (pp) | verdict | data |\n|---|---|---|---|---|\n";
    for (size_t i = 0; i < std::min<size_t>(5, measured.size()); ++i) {
      const json& a = measured[i]["accuracy"];
      md += fmt::format("| `{}` | {} | {} | {} | {} |\n", measured[i]["input"].get<std::string>(), number_or_dash(a["min_cosine"], "{:.6f}"),
                        number_or_dash(a["accuracy_drop_pp"], "{:.2f}"), a["verdict"].is_string() ? a["verdict"].get<std::string>() : "-",
                        a["data"].is_string() ? a["data"].get<std::string>() : "-");
    }
  }
  return md;
}

std::string terminal_summary(const json& report) {
  const json& b = report.at("batch");
  const json& c = b.at("counts");
  std::string text = fmt::format("{} models: {} ok, {} cached, {} unchanged, {} gate failed, {} error, {} timeout", b["models"].get<uint64_t>(),
                                 c["ok"].get<int>(), c["cached"].get<int>(), c["unchanged"].get<int>(), c["gate-failed"].get<int>(),
                                 c["error"].get<int>(), c["timeout"].get<int>());
  if (!b["missing"].empty()) text += fmt::format(", {} missing", b["missing"].size());
  text += fmt::format("\nsize {} -> {} (saved {}), {:.1f} s\n", mib(b["input_bytes"]), mib(b["output_bytes"]), mib(b["saved_bytes"]),
                      b["wall_seconds"].get<double>());
  for (const json& f : b["failures"]) {
    text += fmt::format("  {:<11} {}: {}\n", f["status"].get<std::string>(), f["input"].get<std::string>(), failure_reason(f));
  }
  for (const json& m : b["missing"]) text += fmt::format("  missing     {}\n", m.get<std::string>());
  for (const json& d : b["duplicates"]) text += fmt::format("  done twice  {}\n", d.get<std::string>());
  return text;
}

}  // namespace mopt::batch
