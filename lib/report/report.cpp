// Report JSON and terminal summary; see report.h.
#include "report/report.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <google/protobuf/stubs/common.h>
#include <onnx/common/version.h>

#include "mopt_commit.h"  // generated at build time: MOPT_COMMIT
#include "util/error.h"
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

nlohmann::json digests_json(const std::vector<FileDigest>& files) {
  nlohmann::json out = nlohmann::json::array();
  for (const FileDigest& f : files) out.push_back({{"path", f.path}, {"bytes", f.bytes}, {"sha256", f.sha256}});
  return out;
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
            {"exit_status", invocation.exit_status},
            {"inputs", digests_json(invocation.inputs)},
            {"outputs", digests_json(invocation.outputs)}}}};
}

namespace {
// What each schema version changed, for readers of an older document (kept in step with report.h).
const char* changes_in(int version) {
  switch (version) {
    case 2: return "accuracy.data became an object, undefined cosine/SNR became null, the verdict was added";
    case 3: return "the header (tool, invocation) was added, gate numbers became numbers, non-finite metrics became null, "
                   "accuracy_drop became accuracy_drop_pp";
    case 4: return "invocation gained duration_seconds and the inputs' and outputs' sha256, the report gained 'size', "
                   "passes --json became a document";
  }
  return "";
}
}  // namespace

std::string read_document(const std::string& path, nlohmann::json* document) {
  nlohmann::json& doc = *document;
  try {
    doc = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("'{}' is not JSON: {}", path, e.what());
  }
  if (!doc.is_object() || !doc.contains("schema_version"))
    fail("'{}' is not a document mopt wrote: it has no schema_version", path);
  if (!doc["schema_version"].is_number_integer() || doc["schema_version"].get<int64_t>() < 1)
    fail("'{}' has schema_version {}, which no mopt writes", path, doc["schema_version"].dump());
  const int64_t version = doc["schema_version"].get<int64_t>();
  if (version > kSchemaVersion)
    fail("'{}' is a schema_version {} document, written by a newer mopt; this mopt ({}) reads version {}", path, version,
         MOPT_VERSION, kSchemaVersion);
  if (version < kSchemaVersion) {
    std::vector<std::string> changes;
    for (int v = static_cast<int>(version) + 1; v <= kSchemaVersion; ++v) changes.push_back(fmt::format("{}: {}", v, changes_in(v)));
    fail("'{}' is a schema_version {} document, written by an older mopt; this mopt reads version {} (changes since: {}); "
         "run the command again with this mopt for a current report",
         path, version, kSchemaVersion, fmt::join(changes, "; "));
  }
  if (doc.contains("pipeline")) return "report";
  const std::string command = doc.value("command", "");
  if (command == "compare") return "compare";
  if (doc.contains("batch")) return "batch";
  if (doc.contains("latency_ms")) return "bench";
  if (doc.contains("passes")) return "passes";
  if (doc.contains("op_histogram")) return "inspect";
  if (doc.contains("samples") && doc.contains("outputs")) return "run";
  fail("'{}' has schema_version {} but is none of the documents mopt writes", path, version);
}

std::string kept_float_reason(const nlohmann::json& weight) {
  if (weight.contains("reason") && weight["reason"].is_string()) return weight["reason"].get<std::string>();
  const std::string dtype = weight.value("dtype", "");
  if (dtype == "float16" || dtype == "bfloat16") return dtype + " already";
  return "not a weight this command converts";
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
