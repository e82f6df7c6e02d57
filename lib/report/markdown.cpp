// Markdown rendering of a report; see markdown.h.
#include "report/markdown.h"

#include <fmt/format.h>

#include <cstdlib>
#include <fstream>

#include "report/report.h"
#include "report/stats.h"
#include "util/error.h"
#include "util/file.h"

namespace mopt::report {
namespace {

using nlohmann::json;

// Text for a table cell: no line breaks, pipes escaped, at most 80 characters.
std::string cell(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  std::string out;
  for (char c : text) {
    if (c == '|' || c == '`' || c == '*' || c == '_' || c == '<' || c == '>') out += '\\';
    out += c;
  }
  return out;
}

// Text for a code span: no line breaks or backticks; pipes escaped (GitHub tables split on them even there).
std::string code(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    if (c == '`') c = '\'';
  }
  std::string out;
  for (char c : text) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

std::string bytes_cell(const json& v) {
  if (!v.is_number()) return "-";
  const uint64_t b = v.get<uint64_t>();
  return fmt::format("{} ({} B)", human_bytes(b), b);
}

std::string ratio_cell(const json& before, const json& after) {
  if (!before.is_number() || !after.is_number() || before.get<double>() <= 0) return "-";
  return fmt::format("{:.3f}x", after.get<double>() / before.get<double>());
}

std::string number_cell(const json& v, const char* format = "{:.6g}") {
  return v.is_number() ? fmt::format(fmt::runtime(format), v.get<double>()) : "undefined";
}

std::string gate_value(const json& value, const json& unit) {
  if (!value.is_number()) return "-";
  const std::string u = unit.is_string() ? unit.get<std::string>() : "";
  if (u == "pp") return fmt::format("{:.2f} pp", value.get<double>());
  if (u == "bytes") return bytes_cell(value);
  return fmt::format("{:.6f}", value.get<double>());
}

}  // namespace

std::string markdown_summary(const json& r) {
  std::string md = fmt::format("### mopt {}: `{}` -> `{}`\n\n", code(r.value("command", "?")), code(r["input"].value("path", "")),
                               code(r["output"].value("path", "")));
  const json &in = r["input"], &out = r["output"], &before = in["stats"], &after = out["stats"];
  md += "| | before | after | ratio |\n|---|---:|---:|---:|\n";
  md += fmt::format("| model size | {} | {} | {} |\n", bytes_cell(in["total_bytes"]), bytes_cell(out["total_bytes"]),
                    ratio_cell(in["total_bytes"], out["total_bytes"]));
  if (out["zstd_bytes"].is_number())
    md += fmt::format("| zstd size{} | {} | {} | {} |\n", out["zstd_estimated_from_bytes"].is_number() ? " (sampled)" : "",
                      bytes_cell(in["zstd_bytes"]), bytes_cell(out["zstd_bytes"]), ratio_cell(in["zstd_bytes"], out["zstd_bytes"]));
  for (const auto& [label, key] : {std::pair{"parameters", "parameters"}, {"weight bytes", "parameter_bytes"}, {"nodes", "nodes"}}) {
    md += fmt::format("| {} | {} | {} | {} |\n", label, before[key].dump(), after[key].dump(), ratio_cell(before[key], after[key]));
  }
  // The bytes that did not shrink: the largest float weights left, and why (commands that convert weights).
  const json& size = r.value("size", json::object());
  if (size.contains("largest_float_weights") && !size["largest_float_weights"].empty() &&
      (r.value("command", "") == "quantize" || r.value("command", "") == "convert")) {
    std::vector<std::string> by_dtype;
    const json weight_types = size.value("weight_bytes_by_dtype", json::object());
    for (const auto& [dtype, bytes] : weight_types.items())
      by_dtype.push_back(fmt::format("{} {}", dtype, human_bytes(bytes.get<uint64_t>())));
    md += fmt::format("\nOf the output, {} are weights ({}) and {} graph structure. Largest float weights left:\n\n",
                      bytes_cell(size["weight_bytes"]), fmt::join(by_dtype, ", "), bytes_cell(size["graph_bytes"]));
    md += "| tensor | bytes | read by | why it stayed float |\n|---|---:|---|---|\n";
    for (const json& w : size["largest_float_weights"]) {
      std::vector<std::string> readers;
      for (const json& n : w["read_by"]) readers.push_back(n.get<std::string>());
      md += fmt::format("| {} | {} | {} | {} |\n", cell(w.value("tensor", "")), bytes_cell(w["bytes"]), cell(fmt::format("{}", fmt::join(readers, ", "))),
                        cell(kept_float_reason(w)));
    }
  }

  const json& acc = r["accuracy"];
  if (acc.is_object()) {
    const json& verdict = acc["verdict"];
    md += fmt::format("\n**Accuracy**: verdict **{}** on {} ({} sample{}, {})\n", cell(verdict.value("status", "?")),
                      cell(acc["data"].value("description", "?")), acc.value("samples", 0), acc.value("samples", 0) == 1 ? "" : "s",
                      cell(acc["data"].value("kind", "?")));
    if (acc["data"].contains("note")) md += fmt::format("\n> {}\n", cell(acc["data"]["note"].get<std::string>()));
    for (const json& reason : verdict["reasons"]) md += fmt::format("- {}\n", cell(reason.get<std::string>()));
    md += "\n| output | cosine | relative L2 | max abs error | top-1 agreement |\n|---|---:|---:|---:|---:|\n";
    for (const json& o : acc["outputs"]) {
      md += fmt::format("| {} | {} | {} | {} | {} |\n", cell(o.value("name", "")), number_cell(o["cosine_similarity"]),
                        number_cell(o["relative_l2_error"]), number_cell(o["max_abs_error"]),
                        o.contains("top1_agreement") ? fmt::format("{:.2f}%", 100 * o["top1_agreement"].get<double>()) : "-");
    }
    if (acc.contains("labels")) {
      const json& l = acc["labels"];
      md += fmt::format("\nLabelled accuracy on {} labels: original {:.2f}%, optimized {:.2f}%, drop {:.2f} pp\n", l["count"].dump(),
                        100 * l["original_accuracy"].get<double>(), 100 * l["optimized_accuracy"].get<double>(),
                        l["accuracy_drop_pp"].get<double>());
    }
  } else {
    md += fmt::format("\n**Accuracy**: not measured ({})\n", cell(r.value("accuracy_skipped", "")));
  }

  if (!r["gates"].empty()) {
    md += "\n| gate | result | measured | limit |\n|---|---|---:|---:|\n";
    for (const json& g : r["gates"]) {
      md += fmt::format("| {} | {} | {} | {} |\n", cell(g.value("gate", "")), g.value("passed", false) ? "passed" : "**FAILED**",
                        g["measured"].is_number() ? gate_value(g["measured"], g["unit"])
                        : g.contains("verdict")   ? "verdict " + cell(g["verdict"].get<std::string>())
                                                  : cell(g.value("unmeasured_reason", "-")),
                        gate_value(g["limit"], g["unit"]));
    }
  }

  if (acc.is_object() && acc.contains("layers") && !acc["layers"]["worst_first"].empty()) {
    md += "\n<details><summary>Worst layers (by original node name)</summary>\n\n| node | op | relative L2 | cosine |\n|---|---|---:|---:|\n";
    size_t shown = 0;
    for (const json& l : acc["layers"]["worst_first"]) {
      if (shown++ == 10) break;
      md += fmt::format("| {} | {} | {} | {} |\n", cell(l.value("node", "")), cell(l.value("op_type", "")),
                        number_cell(l["relative_l2_error"]), number_cell(l["cosine_similarity"]));
    }
    md += "\n</details>\n";
  }

  std::vector<std::string> changed;
  for (const json& p : r["passes"]) {
    if (!p.value("changed", false)) continue;
    std::vector<std::string> counters;
    for (const auto& [k, v] : p["counters"].items()) counters.push_back(fmt::format("{} {}", k, v.dump()));
    changed.push_back(fmt::format("- `{}`: {}", code(p.value("name", "")), counters.empty() ? "changed" : cell(fmt::format("{}", fmt::join(counters, ", ")))));
  }
  md += fmt::format("\n**Passes that changed the model** ({}):\n{}\n", changed.size(), fmt::format("{}", fmt::join(changed, "\n")));
  if (!r["warnings"].empty()) {
    md += "\n**Warnings**:\n";
    for (const json& w : r["warnings"]) md += fmt::format("- {}\n", cell(w.get<std::string>()));
  }
  return md + "\n";
}

void write_markdown(const std::string& text, const std::string& path) {
  const char* step_summary = std::getenv("GITHUB_STEP_SUMMARY");
  if (step_summary && path == step_summary) {
    std::ofstream out(path, std::ios::app | std::ios::binary);
    out << text;
    out.flush();
    if (!out) fail("cannot append the Markdown summary to '{}'", path);
    return;
  }
  AtomicFileWriter writer(path);
  writer.write(text);
  writer.commit();
}

}  // namespace mopt::report
