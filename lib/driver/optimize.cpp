// The load -> passes -> verify -> save -> report job; see optimize.h.
#include "driver/optimize.h"
#include "driver/numerics_check.h"

#include <algorithm>

#include <unistd.h>

#include <chrono>
#include <future>

#include "data/npy.h"
#include "driver/explain_size.h"
#include "eval/layers.h"
#include "exec/executor.h"
#include "report/html.h"
#include "report/markdown.h"
#include "util/error.h"
#include "util/file.h"
#include "util/log.h"

namespace mopt::driver {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

constexpr uint64_t kDefaultExternalThreshold = 1024;

// Usage error when `target`'s folder does not exist or cannot be written (devices and "-" are written directly).
void check_writable(const fs::path& target) {
  if (is_direct_target(target)) return;
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("cannot write '{}': folder '{}' does not exist", target.string(), dir.string());
  if (::access(dir.c_str(), W_OK) != 0) fail("cannot write '{}': folder '{}' is not writable", target.string(), dir.string());
  if (fs::is_directory(target, ec)) fail("cannot write '{}': it is a directory", target.string());
}

// A command whose passes did nothing did not do its job: it says why and writes nothing.
void require_change(const pass::PipelineResult& result, const OptimizeRequest& request) {
  bool ran = false;
  std::vector<std::string> reasons;
  for (const pass::PassRun& p : result.passes) {
    if (std::find(request.required_change.begin(), request.required_change.end(), p.name) == request.required_change.end()) continue;
    ran = true;
    if (p.changed) return;
    if (!p.unchanged_reason.empty() && std::find(reasons.begin(), reasons.end(), p.unchanged_reason) == reasons.end())
      reasons.push_back(p.unchanged_reason);
  }
  if (!ran) return;
  throw Error(fmt::format("{} changed nothing{}; nothing was written (pass --allow-unchanged to write the model anyway)",
                          request.command, reasons.empty() ? "" : fmt::format(": {}", fmt::join(reasons, "; "))),
              ErrorKind::Unchanged);
}

}  // namespace

std::vector<fs::path> files_read(const std::vector<std::pair<fs::path, io::LoadInfo>>& models, const AccuracyRequest& accuracy) {
  std::vector<fs::path> files;
  auto add = [&](const fs::path& file) {
    if (std::find(files.begin(), files.end(), file) == files.end()) files.push_back(file);
  };
  for (const auto& [model, info] : models) {
    add(model);
    for (const fs::path& external : info.external_files) add(external);
  }
  for (const std::string& data : {accuracy.source, accuracy.calibration, accuracy.labels}) {
    std::error_code ec;
    if (!data.empty() && data != "random" && data != "off" && fs::exists(data, ec)) add(data);
  }
  return files;
}

std::string data_kind(const AccuracyRequest& request) {
  if (request.source == "off") return "off";
  if (request.source_explicit) return request.source == "random" ? "random" : "data";
  if (!request.calibration.empty()) return "calibration";  // or calibration-holdout, once the sample count is known
  return "random";
}

void refuse_decisions_on_unasked_random(const AccuracyRequest& request) {
  if (data_kind(request) != "random" || request.source_explicit) return;
  eval::DataSource unasked;  // random, not requested
  for (const std::string& what : request.decisions) eval::require_real_data(unasked, what);
}

std::vector<data::Feeds> load_or_generate_samples(const ir::Model& model, const AccuracyRequest& request,
                                                  eval::DataSource* source, std::vector<std::string>* warnings) {
  eval::DataSource out;
  out.kind = data_kind(request);
  out.random_requested = request.source_explicit && request.source == "random";
  request.shapes.validate(model);
  std::vector<data::Feeds> samples;
  if (out.kind == "random") {
    for (int i = 0; i < request.random_samples; ++i) {
      samples.push_back(data::random_feeds(model, request.shapes, request.seed + static_cast<uint64_t>(i)));
    }
    out.description = fmt::format("random inputs (seed {})", request.seed);
    const std::vector<std::string> defaulted = data::defaulted_dims(model, request.shapes);
    if (!defaulted.empty()) {
      out.note = fmt::format("unknown dims set to 1: {}", fmt::join(defaulted, ", "));
      if (warnings)
        warnings->push_back(fmt::format("random accuracy inputs set unknown dims to 1 ({}); give --shape/--dim, or real "
                                        "inputs with --accuracy DATA",
                                        fmt::join(defaulted, ", ")));
    }
  } else if (out.kind == "data") {
    samples = data::load_samples(model, request.source);
    out.description = request.source;
  } else {
    samples = data::load_samples(model, request.calibration);
    const size_t total = samples.size();
    // A sequence (--feedback) is measured whole: holding samples out would break the state it carries;
    // labels describe the whole set.
    data::Holdout split;
    if (request.feedback.empty() && request.labels.empty()) split = data::split_holdout(samples);
    if (!split.held_out.empty()) {
      out.kind = "calibration-holdout";
      samples = std::move(split.held_out);
      out.description = fmt::format("held-out calibration data of {}", request.calibration);
      out.note = fmt::format("{} were held out of calibration, which used the rest", split.how);
    } else {
      out.description = fmt::format("the calibration data {}", request.calibration);
      out.note = fmt::format("measured on the calibration data itself ({} sample{}; {}): not independent of the calibration; "
                             "pass --accuracy DATA for held-out data",
                             total, total == 1 ? "" : "s",
                             !request.feedback.empty() ? "a sequence (--feedback) is measured whole"
                             : !request.labels.empty() ? "--labels describe the whole calibration set"
                                                       : "too small to hold some out: 10 samples or rows needed");
    }
  }
  if (!request.feedback.empty()) {
    std::vector<std::string> pairs;
    for (const std::string& f : request.feedback) {
      const auto [out_name, in_name] = eval::parse_feedback(model, f);
      pairs.push_back(out_name + " -> " + in_name);
    }
    const std::string sequence = fmt::format("run as one sequence of {} samples, feeding back {}", samples.size(), fmt::join(pairs, ", "));
    out.note = out.note.empty() ? sequence : out.note + "; " + sequence;
  }
  if (source) *source = out;
  return samples;
}

fs::path default_output(const fs::path& input, const std::string& suffix) {
  fs::path out = input;
  std::string stem = input.extension() == ".onnx" ? input.stem().string() : input.filename().string();
  out.replace_filename(stem + suffix);
  return out;
}

OptimizeResult run_optimize(const OptimizeRequest& request) {
  const auto start = Clock::now();
  OptimizeResult result;
  // --in-place replaces the file a symlink points to, not the link.
  std::error_code ec;
  result.output = request.in_place ? fs::weakly_canonical(request.input, ec)
                  : request.output.empty() ? default_output(request.input, request.default_suffix)
                                           : request.output;
  if (result.output == "-" && request.report.empty())
    usage_error("-o - writes the model to standard output; give the report a file with --report PATH");
  result.report = request.report.empty() ? fs::path(result.output.string() + ".report.json") : request.report;
  if (result.output == "-" && result.report == "-") usage_error("the model and the report cannot both go to standard output");
  if (!request.in_place && same_file(request.input, result.output))
    usage_error("output '{}' is the input model; pass --in-place to overwrite it", result.output.string());
  if (same_file(request.input, result.report)) usage_error("report path '{}' is the input model", result.report.string());
  if (result.report != "-" && (result.report == result.output || same_file(result.report, result.output)))
    usage_error("the report path '{}' is the output model's path", result.report.string());
  // Folders that cannot take the outputs are found before any work, not after it.
  for (const fs::path& target : {result.output, result.report}) check_writable(target);
  for (const auto& [flag, path] : {std::pair{"--markdown", request.markdown}, std::pair{"--html", request.html}}) {
    if (path.empty()) continue;
    for (const fs::path& other : {request.input, result.output, result.report}) {
      if (path == other || same_file(path, other)) usage_error("{} '{}' is also the input, output or report", flag, path.string());
    }
    check_writable(path);
  }
  if (!request.html.empty() && request.html == request.markdown) usage_error("--html and --markdown name the same file");

  const AccuracyRequest& acc = request.accuracy;
  refuse_decisions_on_unasked_random(acc);

  report::RunReport& run = result.run;
  run.invocation.command_line = request.command_line;
  run.command = request.command;
  run.pipeline = pass::print_pipeline(request.pipeline);

  exec::set_thread_count(acc.threads);  // the passes' own parallel loops (quantize, prune) use the executor's threads
  io::LoadInfo load_info;
  std::unique_ptr<ir::Model> model;
  {
    log::Phase phase(fmt::format("loading {}", request.input.filename().string()));
    model = io::load_model(request.input, &load_info);
  }
  run.load_seconds = seconds_since(start);
  run.input = {request.input.string(), load_info.file_bytes, load_info.external_bytes, std::nullopt};
  // Hashed for the report's header on a thread of its own while the passes run (the bytes are in the page cache).
  std::future<std::vector<FileDigest>> input_digests = std::async(std::launch::async, digest_files, files_read({{request.input, load_info}}, acc));
  run.before = report::collect_stats(*model);

  io::SaveOptions save;
  save.external_data_threshold = request.external_data_threshold;
  if (!save.external_data_threshold && !load_info.external_files.empty()) save.external_data_threshold = kDefaultExternalThreshold;
  const fs::path output_data = result.output.parent_path() / io::default_external_data_name(result.output);
  for (const auto& f : load_info.external_files) {
    // The input's own files are never a target: compared by device and inode, so links and other
    // spellings of the same file count.
    if (same_file(f, result.output) || same_file(f, result.report))
      usage_error("'{}' is the input model's external data file; writing onto it would destroy the input",
                  same_file(f, result.output) ? result.output.string() : result.report.string());
    if (!request.in_place && same_file(f, output_data))
      usage_error("the output's external data file '{}' is an input file; choose another output name or pass --in-place",
                  output_data.string());
  }

  // Reference outputs of the original model, computed before the passes change it; passes that search
  // for an accuracy target (quantize's fallback) see them through the pass manager.
  std::optional<eval::Evaluation> evaluation;
  exec::Array labels;  // read before the passes so a bad labels file fails fast
  if (!acc.labels.empty() && acc.source != "off") labels = data::read_npy(acc.labels);
  if (acc.source != "off") {
    try {
      log::Phase phase("reference outputs of the original model");
      eval::Evaluation e;
      e.samples = load_or_generate_samples(*model, acc, &e.source, &run.warnings);
      phase.set_note(fmt::format("{} sample{}", e.samples.size(), e.samples.size() == 1 ? "" : "s"));
      for (const data::InputSpec& s : data::model_inputs(*model)) e.input_names.push_back(s.name);
      if (e.source.kind == "calibration-holdout") e.holdout_of = acc.calibration;
      for (const std::string& f : acc.feedback) e.feedback.push_back(eval::parse_feedback(*model, f));
      e.reference = eval::run_samples(*model, e.samples, acc.threads, e.feedback);
      if (labels.defined()) e.labels = labels;
      e.classifier_output = acc.classifier_output;
      e.threads = acc.threads;
      evaluation = std::move(e);
    } catch (const Error& e) {
      if (acc.required || e.kind() == ErrorKind::Usage) throw;
      run.accuracy_skipped = e.what();
      std::string hint = acc.source == "random" ? " (random inputs set unknown dims to 1; give --shape/--dim or --accuracy DATA)" : "";
      run.warnings.push_back(fmt::format("accuracy not measured: {}{}", e.what(), hint));
    }
  } else {
    run.accuracy_skipped = "disabled (--accuracy off)";
  }

  // The original, for the per-layer comparison after the passes (tensor payloads are shared, not copied).
  std::unique_ptr<ir::Model> original;
  if (evaluation && request.per_layer) original = io::clone_model(*model);

  log::Phase passes_phase("passes");
  pass::ManagerOptions manager = request.manager;
  manager.evaluation = evaluation ? &*evaluation : nullptr;
  std::optional<NumericsCheck> numerics;
  if (request.verify_numerics) {
    numerics.emplace(manager.evaluation, request.numerics_tolerance);
    manager.instruments.push_back(&*numerics);
  }
  run.pipeline_result = pass::run_pipeline(request.pipeline, *model, manager);
  run.after = report::collect_stats(*model);
  if (!request.required_change.empty() && !request.allow_unchanged) require_change(run.pipeline_result, request);
  passes_phase.set_note(fmt::format("{} -> {} nodes", run.before.nodes, run.after.nodes));
  passes_phase.end();

  std::optional<eval::Comparison> comparison;
  if (evaluation) {
    log::Phase accuracy_phase("accuracy of the optimized model");
    comparison = evaluation->evaluate(*model);
    accuracy_phase.end();
    run.accuracy = eval::to_json(*comparison);
    run.accuracy_summary = eval::summary(*comparison);
    const eval::Verdict verdict = eval::judge(*comparison);
    run.verdict_summary = eval::summary(verdict, comparison->data);
    run.degraded = verdict.degraded();
    if (original) {
      log::Phase layers_phase("per-layer comparison");
      try {
        eval::LayerOptions options;
        options.threads = acc.threads;
        // Per layer, both models see the same inputs: the sequence with the original's state carried.
        const eval::LayerReport layers = eval::compare_layers(
            *original, *model, eval::carry_state(*original, evaluation->samples, evaluation->feedback, acc.threads), options);
        run.accuracy["layers"] = eval::to_json(layers);
        run.layers_summary = eval::summary(layers);
        if (run.degraded && !layers.layers.empty()) {
          std::vector<std::string> worst;
          for (size_t i = 0; i < layers.layers.size() && i < 3; ++i)
            worst.push_back(fmt::format("{} (rel-L2 {:.3g})", layers.layers[i].node, layers.layers[i].metrics.relative_l2));
          run.verdict_summary += fmt::format("; worst layers: {}", fmt::join(worst, ", "));
        }
      } catch (const Error& e) {
        run.accuracy["layers"] = {{"skipped", e.what()}};
      }
    }
  }

  // Model, external data and report are all written and fsynced first, then renamed into place
  // together: a failure anywhere before the renames leaves no output at all.
  const auto save_start = Clock::now();
  log::Phase writing(fmt::format("writing {}", result.output.filename().string()));
  io::StagedModel staged = io::stage_model(*model, result.output, save);
  writing.end();
  const io::SaveInfo& saved = staged.info;
  run.save_seconds = seconds_since(save_start);
  run.output = {result.output.string(), saved.file_bytes, saved.external_bytes, std::nullopt};
  run.size = explain_size(*model, run.after, run.output, run.pipeline_result);

  if (request.compressed_size && result.output != "-" && !is_direct_target(result.output)) {
    log::Phase phase("compressed size (zstd)");
    std::vector<fs::path> in_files{request.input};
    in_files.insert(in_files.end(), load_info.external_files.begin(), load_info.external_files.end());
    const report::CompressedSize in = report::zstd_compressed_size(in_files), out = report::zstd_compressed_size(staged.files());
    run.input.zstd_bytes = in.bytes;
    run.input.zstd_sampled_bytes = in.sampled_bytes;
    run.output.zstd_bytes = out.bytes;
    run.output.zstd_sampled_bytes = out.sampled_bytes;
  }
  result.gates = eval::check_gates(request.gates, comparison ? &*comparison : nullptr, saved.file_bytes + saved.external_bytes);
  run.gates = eval::to_json(result.gates);
  run.invocation.exit_status = result.gates_passed() ? 0 : 3;
  // --in-place never replaces the input with a model that failed a gate; the report says why.
  result.input_kept = request.in_place && !result.gates_passed();
  if (result.input_kept) run.warnings.push_back("a gate failed: --in-place left the input model unchanged");
  run.invocation.inputs = input_digests.get();
  run.invocation.outputs = staged.digests();
  run.total_seconds = seconds_since(start);
  const nlohmann::json report_json = report::to_json(run);
  AtomicFileWriter report_writer(result.report);
  report_writer.write(report::dump_json(report_json) + "\n");
  report_writer.finish();
  if (!result.input_kept) staged.commit();
  report_writer.commit();
  if (!request.markdown.empty()) report::write_markdown(report::markdown_summary(report_json), request.markdown.string());
  if (!request.html.empty()) report::write_html(report_json, request.html.string());
  return result;
}

}  // namespace mopt::driver
