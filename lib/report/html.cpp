// HTML rendering of a report; see html.h.
#include "report/html.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "report/report.h"
#include "util/file.h"

namespace mopt::report {
namespace {

using nlohmann::json;

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string bytes_text(double b) {
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.2f} MiB", b / (1024.0 * 1024));
  if (b >= 1024.0) return fmt::format("{:.1f} KiB", b / 1024.0);
  return fmt::format("{:.0f} B", b);
}

// A number of the report, shown formatted and tagged with where it is in the JSON and its exact value.
std::string number(const json& report, const std::string& pointer, const char* kind = "plain") {
  const json::json_pointer p(pointer);
  if (!report.contains(p) || !report.at(p).is_number()) return "<span class=\"na\">-</span>";
  const json& v = report.at(p);
  const double d = v.get<double>();
  std::string shown;
  if (std::string(kind) == "bytes") shown = bytes_text(d);
  else if (std::string(kind) == "seconds") shown = d >= 1 ? fmt::format("{:.4g} s", d) : fmt::format("{:.4g} ms", d * 1000);
  else if (std::string(kind) == "metric") shown = fmt::format("{:.6g}", d);
  else shown = v.is_number_integer() || v.is_number_unsigned() ? v.dump() : fmt::format("{:.6g}", d);
  return fmt::format("<span class=\"num\" data-json=\"{}\" data-value=\"{}\">{}</span>", escape(pointer), escape(v.dump()), escape(shown));
}

// The object or array at `pointer`, or an empty one (no temporaries in range-for loops: GCC 12 misreads them).
const json& at(const json& r, const std::string& pointer) {
  static const json empty;
  const json::json_pointer p(pointer);
  return r.contains(p) ? r.at(p) : empty;
}

std::string text_of(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) return "";
  const json& v = j[key];
  return v.is_string() ? v.get<std::string>() : v.is_null() ? "" : v.dump();
}

// The JSON pointer to `key` below `base` (nlohmann escapes '~' and '/' in the key).
std::string pointer(const std::string& base, const std::string& key) { return (json::json_pointer(base) / key).to_string(); }

// Horizontal bars: one row per label, one bar per series, each bar's value shown at its end.
struct Series {
  std::string name, css_class;
  std::vector<std::string> pointers;  // the JSON pointer of each row's value ("" = none)
};

std::string bar_chart(const json& report, const std::vector<std::string>& labels, const std::vector<Series>& series,
                      const char* kind, const std::string& title) {
  double largest = 0;
  for (const Series& s : series) {
    for (const std::string& p : s.pointers) {
      if (!p.empty() && report.contains(json::json_pointer(p)) && report.at(json::json_pointer(p)).is_number())
        largest = std::max(largest, std::abs(report.at(json::json_pointer(p)).get<double>()));
    }
  }
  const int label_width = 260, bar_width = 520, row = 16 * static_cast<int>(series.size()) + 8;
  const int height = row * static_cast<int>(labels.size()) + 24;
  std::string svg = fmt::format("<svg class=\"chart\" role=\"img\" aria-label=\"{}\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\">",
                                escape(title), label_width + bar_width + 120, height, label_width + bar_width + 120, height);
  for (size_t s = 0; s < series.size(); ++s) {
    svg += fmt::format("<rect class=\"{}\" x=\"{}\" y=\"4\" width=\"10\" height=\"10\"/><text x=\"{}\" y=\"13\">{}</text>", series[s].css_class,
                       label_width + 140 * static_cast<int>(s), label_width + 14 + 140 * static_cast<int>(s), escape(series[s].name));
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    const int y = 24 + row * static_cast<int>(i);
    std::string label = labels[i].size() > 38 ? labels[i].substr(0, 17) + "..." + labels[i].substr(labels[i].size() - 18) : labels[i];
    svg += fmt::format("<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"end\"><title>{}</title>{}</text>", label_width - 6,
                       y + row / 2 + 2, escape(labels[i]), escape(label));
    for (size_t s = 0; s < series.size(); ++s) {
      const std::string& p = series[s].pointers[i];
      if (p.empty() || !report.contains(json::json_pointer(p)) || !report.at(json::json_pointer(p)).is_number()) continue;
      const json& v = report.at(json::json_pointer(p));
      const double d = v.get<double>();
      const double w = largest > 0 ? std::abs(d) / largest * bar_width : 0;
      const int by = y + 2 + 16 * static_cast<int>(s);
      const std::string shown = std::string(kind) == "bytes" ? bytes_text(d) : fmt::format("{:.4g}", d);
      svg += fmt::format("<rect class=\"{}\" x=\"{}\" y=\"{}\" width=\"{:.1f}\" height=\"13\"/>", series[s].css_class, label_width, by, std::max(w, 1.0));
      svg += fmt::format("<text class=\"num\" x=\"{:.1f}\" y=\"{}\" data-json=\"{}\" data-value=\"{}\">{}</text>", label_width + w + 4, by + 11,
                         escape(p), escape(v.dump()), escape(shown));
    }
  }
  return svg + "</svg>";
}

const char* kStyle = R"(
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1d2330;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dde6;padding-bottom:4px}
.meta{color:#5a6272;font-size:12px;word-break:break-all}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #d8dde6;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f2f4f8}td .num,td.numc{font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600}
.ok{background:#d9f2e0;color:#14532d}.bad{background:#fde2e1;color:#7f1d1d}.neutral{background:#e8ebf1;color:#333}
svg.chart text{font:11px system-ui,sans-serif;fill:#1d2330}
rect.before{fill:#9aa8c2}rect.after{fill:#2f6fdf}rect.err{fill:#d9534f}
.na{color:#999}ul.warn li{color:#7a4b00}
)";

std::string verdict_badge(const json& report) {
  const json v = report.value("/accuracy/verdict/status"_json_pointer, json(nullptr));
  if (!v.is_string()) return "<span class=\"badge neutral\">accuracy not measured</span>";
  const std::string s = v.get<std::string>();
  return fmt::format("<span class=\"badge {}\" id=\"verdict\">{}</span>", s == "ok" ? "ok" : "bad", escape(s == "ok" ? "OK" : "DEGRADED"));
}

std::string sizes_section(const json& r) {
  std::string h = "<h2 id=\"sizes\">Size</h2><table><tr><th></th><th>input</th><th>output</th></tr>";
  h += "<tr><th>file</th><td>" + number(r, "/input/file_bytes", "bytes") + "</td><td>" + number(r, "/output/file_bytes", "bytes") + "</td></tr>";
  h += "<tr><th>external data</th><td>" + number(r, "/input/external_data_bytes", "bytes") + "</td><td>" +
       number(r, "/output/external_data_bytes", "bytes") + "</td></tr>";
  h += "<tr><th>zstd</th><td>" + number(r, "/input/zstd_bytes", "bytes") + "</td><td>" + number(r, "/output/zstd_bytes", "bytes") + "</td></tr>";
  h += "<tr><th>parameters</th><td>" + number(r, "/input/stats/parameters") + "</td><td>" + number(r, "/output/stats/parameters") + "</td></tr>";
  h += "<tr><th>nodes</th><td>" + number(r, "/input/stats/nodes") + "</td><td>" + number(r, "/output/stats/nodes") + "</td></tr></table>";
  // Bytes by dtype, before and after.
  std::vector<std::string> dtypes;
  for (const char* side : {"input", "output"}) {
    for (const auto& [dtype, _] : at(r, fmt::format("/{}/stats/by_dtype", side)).items()) {
      if (std::find(dtypes.begin(), dtypes.end(), dtype) == dtypes.end()) dtypes.push_back(dtype);
    }
  }
  Series before{"input", "before", {}}, after{"output", "after", {}};
  for (const std::string& d : dtypes) {
    before.pointers.push_back(at(r, "/input/stats/by_dtype").contains(d) ? pointer("/input/stats/by_dtype", d) + "/bytes" : "");
    after.pointers.push_back(at(r, "/output/stats/by_dtype").contains(d) ? pointer("/output/stats/by_dtype", d) + "/bytes" : "");
  }
  if (!dtypes.empty()) h += fmt::format("<h3>Weight bytes by type</h3>{}", bar_chart(r, dtypes, {before, after}, "bytes", "weight bytes by type"));
  // The largest tensors of the output.
  const json& largest = at(r, "/output/stats/largest_tensors");
  if (!largest.empty()) {
    h += "<h3>Largest tensors of the output</h3><table id=\"largest\"><tr><th>name</th><th>type</th><th>shape</th><th>bytes</th></tr>";
    for (size_t i = 0; i < largest.size(); ++i) {
      h += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", escape(text_of(largest[i], "name")),
                       escape(text_of(largest[i], "dtype")), escape(largest[i].value("dims", json::array()).dump()),
                       number(r, fmt::format("/output/stats/largest_tensors/{}/bytes", i), "bytes"));
    }
    h += "</table>";
  }
  // The bytes that did not shrink.
  const json& kept = at(r, "/size/largest_float_weights");
  if (!kept.empty()) {
    h += "<h3 id=\"kept-float\">Largest float weights left</h3><p>Of the output, " + number(r, "/size/weight_bytes", "bytes") +
         " are weights and " + number(r, "/size/graph_bytes", "bytes") +
         " graph structure (names, attributes, framing).</p><table><tr><th>tensor</th><th>bytes</th><th>read by</th><th>why it stayed float</th></tr>";
    for (size_t i = 0; i < kept.size(); ++i) {
      std::string readers;
      for (const json& n : at(kept[i], "/read_by")) {
        if (!readers.empty()) readers += ", ";
        readers += escape(n.get<std::string>());
      }
      h += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", escape(text_of(kept[i], "tensor")),
                       number(r, fmt::format("/size/largest_float_weights/{}/bytes", i), "bytes"), readers,
                       escape(kept_float_reason(kept[i])));
    }
    h += "</table>";
  }
  return h;
}

std::string operators_section(const json& r) {
  std::vector<std::string> ops;
  for (const char* side : {"input", "output"}) {
    for (const auto& [op, _] : at(r, fmt::format("/{}/stats/op_histogram", side)).items()) {
      if (std::find(ops.begin(), ops.end(), op) == ops.end()) ops.push_back(op);
    }
  }
  if (ops.empty()) return "";
  std::sort(ops.begin(), ops.end());
  Series before{"input", "before", {}}, after{"output", "after", {}};
  for (const std::string& op : ops) {
    before.pointers.push_back(at(r, "/input/stats/op_histogram").contains(op) ? pointer("/input/stats/op_histogram", op) : "");
    after.pointers.push_back(at(r, "/output/stats/op_histogram").contains(op) ? pointer("/output/stats/op_histogram", op) : "");
  }
  return fmt::format("<h2 id=\"operators\">Operators</h2>{}", bar_chart(r, ops, {before, after}, "count", "operator counts"));
}

std::string passes_section(const json& r) {
  const json passes = r.value("passes", json::array());
  if (passes.empty()) return "";
  std::string h = "<h2 id=\"passes\">Passes</h2><table><tr><th>pass</th><th>runs</th><th>changed</th><th>counters</th><th>time</th></tr>";
  for (size_t i = 0; i < passes.size(); ++i) {
    std::string counters;
    for (const auto& [name, value] : at(passes[i], "/counters").items())
      counters += fmt::format("{}{} {}", counters.empty() ? "" : ", ", escape(name),
                              number(r, pointer(fmt::format("/passes/{}/counters", i), name)));
    h += fmt::format("<tr><td title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", escape(text_of(passes[i], "spec")),
                     escape(text_of(passes[i], "name")), number(r, fmt::format("/passes/{}/runs", i)),
                     passes[i].value("changed", false) ? "yes" : "no", counters, number(r, fmt::format("/passes/{}/seconds", i), "seconds"));
  }
  return h + "</table>";
}

std::string accuracy_section(const json& r) {
  const json acc = r.value("accuracy", json(nullptr));
  if (!acc.is_object()) {
    return "<h2 id=\"accuracy\">Accuracy</h2><p>Not measured" +
           (r.contains("accuracy_skipped") ? ": " + escape(text_of(r, "accuracy_skipped")) : std::string()) + "</p>";
  }
  std::string h = "<h2 id=\"accuracy\">Accuracy</h2>";
  if (acc.contains("data")) h += "<p>Measured on: <b>" + escape(text_of(acc["data"], "description")) + "</b>" +
                                 (text_of(acc["data"], "note").empty() ? "" : " (" + escape(text_of(acc["data"], "note")) + ")") + "</p>";
  h += "<p>Samples: " + number(r, "/accuracy/samples") + "</p>";
  const json outputs = acc.value("outputs", json::array());
  h += "<table id=\"outputs\"><tr><th>output</th><th>cosine</th><th>max |error|</th><th>relative L2</th><th>SNR dB</th><th>top-1 agreement</th></tr>";
  for (size_t i = 0; i < outputs.size(); ++i) {
    const std::string base = fmt::format("/accuracy/outputs/{}/", i);
    h += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", escape(text_of(outputs[i], "name")),
                     number(r, base + "cosine_similarity", "metric"), number(r, base + "max_abs_error", "metric"),
                     number(r, base + "relative_l2_error", "metric"), number(r, base + "snr_db", "metric"),
                     number(r, base + "top1_agreement", "metric"));
  }
  h += "</table>";
  if (acc.contains("labels") && acc["labels"].is_object()) {
    h += "<p>Labelled accuracy: original " + number(r, "/accuracy/labels/original_accuracy", "metric") + ", optimized " +
         number(r, "/accuracy/labels/optimized_accuracy", "metric") + ", drop " + number(r, "/accuracy/labels/accuracy_drop_pp", "metric") +
         " pp</p>";
  }
  for (const json& reason : acc.value("/verdict/reasons"_json_pointer, json::array())) h += "<p class=\"bad\">" + escape(reason.dump()) + "</p>";
  // Per-layer error, worst first.
  const json layers = acc.value("/layers/worst_first"_json_pointer, json::array());
  if (!layers.empty()) {
    std::vector<std::string> labels;
    Series err{"relative L2 error", "err", {}};
    for (size_t i = 0; i < std::min<size_t>(layers.size(), 30); ++i) {
      labels.push_back(text_of(layers[i], "node") + " (" + text_of(layers[i], "op_type") + ")");
      err.pointers.push_back(fmt::format("/accuracy/layers/worst_first/{}/relative_l2_error", i));
    }
    h += "<h3 id=\"layers\">Per-layer error, worst first</h3>" + bar_chart(r, labels, {err}, "metric", "per-layer relative L2 error");
  }
  return h;
}

std::string gates_section(const json& r) {
  const json gates = r.value("gates", json::array());
  if (gates.empty()) return "";
  std::string h = "<h2 id=\"gates\">Gates</h2><table><tr><th>gate</th><th>result</th><th>measured</th><th>limit</th><th>unit</th><th></th></tr>";
  for (size_t i = 0; i < gates.size(); ++i) {
    const bool passed = gates[i].value("passed", false);
    h += fmt::format("<tr><td>{}</td><td><span class=\"badge {}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                     escape(text_of(gates[i], "gate")), passed ? "ok" : "bad", passed ? "passed" : "failed",
                     number(r, fmt::format("/gates/{}/measured", i), "metric"), number(r, fmt::format("/gates/{}/limit", i), "metric"),
                     escape(text_of(gates[i], "unit")), escape(text_of(gates[i], "message")));
  }
  return h + "</table>";
}

}  // namespace

std::string html_report(const json& r) {
  const std::string command = text_of(r, "command").empty() ? "compare" : text_of(r, "command");
  const json inv = r.value("invocation", json::object());
  std::string command_line;
  for (const json& a : at(inv, "/command_line")) {
    if (!command_line.empty()) command_line += ' ';
    command_line += a.get<std::string>();
  }
  std::string h = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">";
  h += "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">";
  const std::string subject = r.contains("input") ? text_of(r["input"], "path")
                                                 : text_of(r, "original") + " vs " + text_of(r, "optimized");
  h += fmt::format("<title>mopt {}: {}</title><style>{}</style></head><body>", escape(command), escape(subject), kStyle);
  h += fmt::format("<h1>mopt {} {}</h1><p>{}</p>", escape(command), verdict_badge(r), escape(subject));
  h += fmt::format("<p class=\"meta\">{}<br>{} (commit {}; ONNX {}, protobuf {}) &middot; started {} &middot; exit status {}</p>",
                   escape(command_line), escape(text_of(r.value("tool", json::object()), "version")),
                   escape(text_of(r.value("tool", json::object()), "commit")), escape(text_of(r.value("tool", json::object()), "onnx")),
                   escape(text_of(r.value("tool", json::object()), "protobuf")), escape(text_of(inv, "started_at")),
                   number(r, "/invocation/exit_status"));
  if (r.contains("input") && r["input"].contains("stats")) h += sizes_section(r) + operators_section(r);
  h += passes_section(r) + accuracy_section(r) + gates_section(r);
  const json warnings = r.value("warnings", json::array());
  if (!warnings.empty()) {
    h += "<h2 id=\"warnings\">Warnings</h2><ul class=\"warn\">";
    for (const json& w : warnings) h += "<li>" + escape(w.is_string() ? w.get<std::string>() : w.dump()) + "</li>";
    h += "</ul>";
  }
  return h + "</body></html>\n";
}

void write_html(const json& report, const std::string& path) {
  AtomicFileWriter writer(path);
  writer.write(html_report(report));
  writer.commit();
}

}  // namespace mopt::report
