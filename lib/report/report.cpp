// Report JSON and terminal summary; see report.h.
#include "report/report.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <google/protobuf/stubs/common.h>
#include <onnx/common/version.h>

#include "mopt_commit.h"  // generated at build time: MOPT_COMMIT
#include "util/file.h"

namespace mopt::report {
namespace {

const char* check_status(const ir::CheckResult& c) {
  switch (c.status) {
    case ir::CheckResult::Status::Passed: return "passed";
    case ir::CheckResult::Status::Failed: return "failed";
    case ir::CheckResult::Status::NotJudged: return "not-judged";
  }
  return "?";
}

nlohmann::json sizes_json(const FileSizes& f) {
  nlohmann::json j = {{"path", f.path}, {"file_bytes", f.file_bytes}, {"external_data_bytes", f.external_bytes},
                      {"total_bytes", f.total()}};
  j["zstd_bytes"] = f.zstd_bytes ? nlohmann::json(*f.zstd_bytes) : nlohmann::json(nullptr);
  // An estimate says so: how many bytes were compressed to get it (report::zstd_compressed_size).
  j["zstd_estimated_from_bytes"] =
      f.zstd_bytes && f.zstd_sampled_bytes < f.total() ? nlohmann::json(f.zstd_sampled_bytes) : nlohmann::json(nullptr);
  return j;
}

std::string ratio(double before, double after) {
  if (before <= 0) return "-";
  return fmt::format("{:.3f}x", after / before);
}

}  // namespace

nlohmann::json header(const Invocation& invocation) {
  const auto started = std::chrono::time_point_cast<std::chrono::milliseconds>(invocation.started);
  return {{"schema_version", kSchemaVersion},
          {"tool",
           {{"name", "mopt"},
            {"version", MOPT_VERSION},
            {"commit", MOPT_COMMIT},
            {"onnx", onnx::LAST_RELEASE_VERSION},
            {"protobuf", fmt::format("{}.{}.{}", GOOGLE_PROTOBUF_VERSION / 1000000, GOOGLE_PROTOBUF_VERSION / 1000 % 1000,
                                     GOOGLE_PROTOBUF_VERSION % 1000)}}},
          {"invocation",
           {{"command_line", invocation.command_line},
            {"started_at", fmt::format("{:%Y-%m-%dT%H:%M:%S}Z", started)},
            {"duration_seconds", std::chrono::duration<double>(std::chrono::system_clock::now() - invocation.started).count()},
            {"exit_status", invocation.exit_status}}}};
}

nlohmann::json to_json(const RunReport& r) {
  using nlohmann::json;
  json j = header(r.invocation);
  j["command"] = r.command;
  j["pipeline"] = r.pipeline;
  j["input"] = sizes_json(r.input);
  j["input"]["stats"] = to_json(r.before);
  j["output"] = sizes_json(r.output);
  j["output"]["stats"] = to_json(r.after);
  j["passes"] = json::array();
  for (const auto& p : r.pipeline_result.passes) {
    json counters = json::object();
    for (const auto& [k, v] : p.counters) counters[k] = v;
    json pj = {{"name", p.name}, {"spec", p.spec}, {"runs", p.runs}, {"changed", p.changed},
               {"seconds", p.seconds}, {"counters", counters}};
    if (!p.details.is_null()) pj["details"] = p.details;
    if (p.rolled_back) pj["rolled_back"] = p.rolled_back;
    j["passes"].push_back(std::move(pj));
  }
  j["checker"] = {
      {"input", check_status(r.pipeline_result.input_check)},
      {"output", check_status(r.pipeline_result.output_check)},
      {"message", r.pipeline_result.output_check.message},
  };
  j["timings"] = {{"load_seconds", r.load_seconds}, {"passes_seconds", r.pipeline_result.seconds},
                  {"save_seconds", r.save_seconds}, {"total_seconds", r.total_seconds}};
  j["accuracy"] = r.accuracy;
  if (r.accuracy.is_null()) j["accuracy_skipped"] = r.accuracy_skipped;
  if (!r.size.is_null()) j["size"] = r.size;
  j["gates"] = r.gates;
  json warnings = json::array();
  for (const auto& w : r.pipeline_result.warnings) warnings.push_back(w);
  for (const auto& w : r.warnings) warnings.push_back(w);
  j["warnings"] = warnings;
  return j;
}

std::string summary_table(const RunReport& r) {
  std::string out;
  auto row = [&](const std::string& label, const std::string& before, const std::string& after, const std::string& ratio_text) {
    out += fmt::format("  {:<16} {:>14} {:>14} {:>9}\n", label, before, after, ratio_text);
  };
  row("", "before", "after", "ratio");
  row("model size", human_bytes(r.input.total()), human_bytes(r.output.total()),
      ratio(static_cast<double>(r.input.total()), static_cast<double>(r.output.total())));
  if (r.output.zstd_bytes)
    row(r.output.zstd_sampled_bytes < r.output.total() ? "zstd size (sampled)" : "zstd size",
        r.input.zstd_bytes ? human_bytes(*r.input.zstd_bytes) : "-", human_bytes(*r.output.zstd_bytes),
        r.input.zstd_bytes ? ratio(static_cast<double>(*r.input.zstd_bytes), static_cast<double>(*r.output.zstd_bytes)) : "-");
  row("parameters", human_count(r.before.parameters), human_count(r.after.parameters),
      ratio(static_cast<double>(r.before.parameters), static_cast<double>(r.after.parameters)));
  row("weight bytes", human_bytes(r.before.parameter_bytes), human_bytes(r.after.parameter_bytes),
      ratio(static_cast<double>(r.before.parameter_bytes), static_cast<double>(r.after.parameter_bytes)));
  row("nodes", std::to_string(r.before.nodes), std::to_string(r.after.nodes),
      ratio(static_cast<double>(r.before.nodes), static_cast<double>(r.after.nodes)));
  row("initializers", std::to_string(r.before.initializers), std::to_string(r.after.initializers), "");
  std::vector<std::string> unchanged;  // listed on one line: a fuse group has many passes with nothing to do
  for (const auto& p : r.pipeline_result.passes) {
    std::vector<std::string> counters;
    for (const auto& [k, v] : p.counters) counters.push_back(fmt::format("{} {}", k, v));
    if (counters.empty() && !p.changed) {
      unchanged.push_back(p.name);
      continue;
    }
    out += fmt::format("  pass {:<28} {:>8.3f} s  {}\n", p.spec, p.seconds,
                       counters.empty() ? std::string("changed") : fmt::format("{}", fmt::join(counters, ", ")));
  }
  if (!unchanged.empty()) out += fmt::format("  no change: {}\n", fmt::join(unchanged, ", "));
  out += r.accuracy_summary;
  for (const auto& g : r.gates) {
    out += fmt::format("  gate {:<18} {}: {}\n", g["gate"].get<std::string>(), g["passed"].get<bool>() ? "passed" : "FAILED",
                       g["message"].get<std::string>());
  }
  return out;
}

std::string dump_json(const nlohmann::json& json) {
  // Names from a model may be invalid UTF-8: replaced (U+FFFD) rather than failing after the work is done.
  return json.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

void write_json(const nlohmann::json& json, const std::string& path) {
  AtomicFileWriter writer(path);
  writer.write(dump_json(json) + "\n");
  writer.commit();
}

}  // namespace mopt::report
