// The pass manager; see manager.h.
#include "pass/manager.h"

#include <algorithm>
#include <chrono>
#include <set>

#include "io/model_io.h"
#include "util/error.h"
#include "util/log.h"

namespace mopt::pass {
namespace {

using Clock = std::chrono::steady_clock;

class Runner {
 public:
  Runner(ir::Model& model, const ManagerOptions& options, PipelineResult& result)
      : model_(model), options_(options), result_(result) {}

  // Allocates one PassRun per pass occurrence in pipeline order, so fixpoint repeats accumulate.
  void plan(const std::vector<PipelineElement>& elements) {
    for (const auto& e : elements) {
      if (e.is_group()) {
        plan(e.children);
      } else {
        result_.passes.push_back({e.name, print_element(e), 0, false, "", 0, {}, nullptr, 0});
      }
    }
  }

  bool run(const std::vector<PipelineElement>& elements, size_t& slot) {
    bool changed = false;
    for (const auto& e : elements) changed = (e.is_group() ? run_fixpoint(e, slot) : run_pass(e, slot)) || changed;
    return changed;
  }

 private:
  bool run_fixpoint(const PipelineElement& group, size_t& slot) {
    const size_t first = slot;
    bool changed_any = false;
    for (int64_t iteration = 1;; ++iteration) {
      slot = first;
      const bool changed = run(group.children, slot);
      changed_any = changed_any || changed;
      if (!changed) break;
      if (iteration == group.max_iterations) {
        result_.warnings.push_back(fmt::format("{} did not converge within {} iterations", print_element(group),
                                               group.max_iterations));
        break;
      }
    }
    return changed_any;
  }

  bool run_pass(const PipelineElement& e, size_t& slot) {
    PassRun& record = result_.passes[slot++];
    if (record.rolled_back) return false;  // undone once by an instrument: not retried in later rounds
    const PassInfo* info = find_pass(e.name);
    auto pass = info->create(e.options);
    PassContext ctx(options_.explain);
    ctx.set_pass_name(e.name);
    ctx.set_evaluation(options_.evaluation);
    ctx.set_seen_refusals(&seen_refusals_);
    log::verbose("running {}", record.spec);
    std::unique_ptr<ir::Model> snapshot;
    if (may_undo_) snapshot = io::clone_model(model_);
    const auto start = Clock::now();
    PassResult r = pass->run(model_, ctx);
    model_.for_each_graph([](ir::Graph& g) { g.compact(); });
    record.seconds += std::chrono::duration<double>(Clock::now() - start).count();
    record.runs++;
    if (r.changed) {
      for (PassInstrument* instrument : options_.instruments) {
        const std::string undo = instrument->after_change(record.spec, model_);
        if (undo.empty()) continue;
        if (!snapshot) fail("internal error: an instrument undid {} without saying it may undo", record.spec);
        model_.replace_with(std::move(*snapshot));
        record.rolled_back++;
        result_.warnings.push_back(fmt::format("{} {}; its changes were rolled back", record.spec, undo));
        return false;
      }
    }
    if (r.changed && log::level() >= log::Level::Verbose) {  // what each run did: why a fixpoint takes its rounds
      std::vector<std::string> counts;
      for (const auto& counter : ctx.counters()) counts.push_back(fmt::format("{} {}", counter.first, counter.second));
      log::verbose("{} changed the model: {}", record.spec, fmt::join(counts, ", "));
    }
    record.changed = record.changed || r.changed;
    record.unchanged_reason = record.changed ? "" : r.unchanged_reason;
    for (const auto& counter : ctx.counters()) {  // not a structured binding: clang 14 cannot capture one
      auto it = std::find_if(record.counters.begin(), record.counters.end(), [&](const auto& c) { return c.first == counter.first; });
      if (it == record.counters.end()) record.counters.push_back(counter);
      else it->second += counter.second;
    }
    if (!ctx.details().is_null()) record.details = ctx.details();
    for (const auto& w : ctx.warnings()) result_.warnings.push_back(fmt::format("{}: {}", e.name, w));
    if (options_.verify_each) verify(fmt::format("after pass '{}'", record.spec));
    return r.changed;
  }

 public:
  void start_instruments() {
    for (PassInstrument* instrument : options_.instruments) {
      instrument->before_pipeline(model_);
      may_undo_ = may_undo_ || instrument->may_undo();
    }
  }

 public:
  // Invariants must hold; the checker must accept whatever it accepted on the input.
  void verify(const std::string& when) {
    try {
      ir::verify_invariants(model_);
    } catch (const Error& e) {
      fail("{}: {} (this is a bug in mopt)", when, e.what());
    }
    ir::CheckResult check = ir::run_onnx_checker(model_);
    if (check.status == ir::CheckResult::Status::Failed && result_.input_check.status == ir::CheckResult::Status::Passed)
      fail("{}: the model no longer passes the ONNX checker, which accepted the input: {}", when, check.message);
    result_.output_check = check;
  }

 private:
  ir::Model& model_;
  const ManagerOptions& options_;
  PipelineResult& result_;
  bool may_undo_ = false;
  std::set<std::string> seen_refusals_;  // --explain prints each refusal once across fixpoint rounds
};

}  // namespace

PipelineResult run_pipeline(const Pipeline& pipeline, ir::Model& model, const ManagerOptions& options) {
  PipelineResult result;
  result.input_check = ir::run_onnx_checker(model);
  if (result.input_check.status == ir::CheckResult::Status::Failed)
    result.warnings.push_back("the input model fails the ONNX checker: " + result.input_check.message);
  if (result.input_check.status == ir::CheckResult::Status::NotJudged) result.warnings.push_back(result.input_check.message);
  Runner runner(model, options, result);
  runner.plan(pipeline.elements);
  runner.start_instruments();
  const auto start = Clock::now();
  size_t slot = 0;
  runner.run(pipeline.elements, slot);
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // With --verify-each the last pass has just been verified; nothing ran since.
  if (!options.verify_each) runner.verify("after the pipeline");
  return result;
}

}  // namespace mopt::pass
