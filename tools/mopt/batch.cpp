// mopt batch and mopt batch merge: the worklist (lib/batch/worklist), one worker process per model
// (lib/batch/runner) running the single command with -O, the manifest and cache (lib/batch/manifest) and
// the batch report (lib/batch/report). Every model's command line is checked (a dry run of the command
// itself) and every output path worked out before the first worker starts.
#include "batch.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "batch/manifest.h"
#include "batch/report.h"
#include "batch/runner.h"
#include "report/markdown.h"
#include "report/report.h"
#include "util/error.h"
#include "util/log.h"
#include "util/sha256.h"

namespace mopt::cli {
namespace {

namespace fs = std::filesystem;
using batch::Item;
using batch::Record;
using batch::Status;
using nlohmann::json;

const std::vector<std::string> kBatchCommands = {"optimize", "quantize", "fuse", "prune", "clip", "convert"};
// Flags of the single command that name its one output: the batch names the outputs.
const std::vector<std::string> kRefusedFlags = {"-o", "--output", "--in-place", "--print-pipeline", "--html"};

// A flag token's name: "--name" of "--name=value", "-x" of "-xVALUE".
std::string flag_name(const std::string& token) { return token[1] == '-' ? token.substr(0, token.find('=')) : token.substr(0, 2); }

// Does the token's value come as the next argument (an option that takes one, not given inside the token)?
bool value_follows(const CLI::Option* option, const std::string& token) {
  return option && option->get_expected_min() > 0 && flag_name(token).size() == token.size();
}

std::string now_utc() {
  const auto now = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}Z", now);
}

// ------------------------------------------------------------------ shards

struct Shard {
  int index = 0, count = 1;
  std::string source = "none";
};

std::optional<long> env_number(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (*end != '\0') usage_error("${} is '{}', not a number", name, v);
  return n;
}

// --shard-index/--shard-count, else the array job's environment: Slurm, Kubernetes Indexed Jobs, AWS Batch.
Shard shard_of(const BatchFlags& f) {
  Shard s;
  if (f.shard_index >= 0) {
    if (f.shard_count <= 0) usage_error("give --shard-count with --shard-index");
    s = {f.shard_index, f.shard_count, "flags"};
  } else if (auto id = env_number("SLURM_ARRAY_TASK_ID")) {
    const long min = env_number("SLURM_ARRAY_TASK_MIN").value_or(0), step = std::max(1L, env_number("SLURM_ARRAY_TASK_STEP").value_or(1));
    const auto count = env_number("SLURM_ARRAY_TASK_COUNT");
    if (!count) usage_error("$SLURM_ARRAY_TASK_ID is set but $SLURM_ARRAY_TASK_COUNT is not");
    s = {static_cast<int>((*id - min) / step), static_cast<int>(*count), "slurm"};
  } else if (auto index = env_number("JOB_COMPLETION_INDEX")) {
    if (f.shard_count <= 0) usage_error("$JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set: give --shard-count (the Job's completions)");
    s = {static_cast<int>(*index), f.shard_count, "kubernetes"};
  } else if (auto aws = env_number("AWS_BATCH_JOB_ARRAY_INDEX")) {
    const auto size = env_number("AWS_BATCH_JOB_ARRAY_SIZE");
    if (!size) usage_error("$AWS_BATCH_JOB_ARRAY_INDEX is set but $AWS_BATCH_JOB_ARRAY_SIZE is not");
    s = {static_cast<int>(*aws), static_cast<int>(*size), "aws-batch"};
  } else if (f.shard_count > 0) {
    usage_error("--shard-count without --shard-index (or an array job's index in the environment)");
  }
  if (s.count < 1 || s.index < 0 || s.index >= s.count)
    usage_error("shard index {} is not within a count of {} (from {})", s.index, s.count, s.source);
  return s;
}

std::string shard_suffix(const Shard& s) { return s.count == 1 ? "" : fmt::format(".shard-{}-of-{}", s.index, s.count); }

// ------------------------------------------------------------------ content keys

// sha256 of a file, or of a folder's files (names and contents, sorted), computed once per path.
class ContentHashes {
 public:
  std::string of(const fs::path& path) {
    const std::string key = path.lexically_normal().string();
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    std::error_code ec;
    std::string hash;
    if (fs::is_directory(path, ec)) {
      std::vector<fs::path> files;
      for (auto i = fs::recursive_directory_iterator(path, ec); !ec && i != fs::recursive_directory_iterator(); i.increment(ec)) {
        if (i->is_regular_file(ec)) files.push_back(i->path());
      }
      std::sort(files.begin(), files.end());
      std::string listing;
      for (const fs::path& file : files) listing += file.lexically_relative(path).string() + " " + sha256_file(file) + "\n";
      hash = sha256_text(listing);
    } else {
      hash = sha256_file(path);
    }
    return cache_[key] = hash;
  }

 private:
  std::map<std::string, std::string> cache_;
};

// What decides a model's output: mopt's version and commit, the command, its flags, and the contents of
// the input and of every file or folder a flag names (calibration data, labels, pipelines).
std::string key_of(const Item& item, const std::string& input_sha256, ContentHashes& hashes) {
  json args = json::array();
  for (const std::string& a : item.args) {
    std::error_code ec;
    if (a.size() > 1 && a[0] != '-' && fs::exists(a, ec)) args.push_back({a, hashes.of(a)});
    else args.push_back(a);
  }
  const json key = {{"mopt", version_text()}, {"command", item.command}, {"args", args}, {"input", input_sha256},
                    {"input_name", fs::path(item.input).filename().string()}};
  return sha256_text(key.dump());
}

// The last "mopt: error: ..." line of a worker's log, for workers that left no outcome file.
std::string last_error_line(const std::string& log_path) {
  std::ifstream in(log_path);
  std::string line, last;
  while (std::getline(in, line)) {
    if (line.rfind("mopt: error: ", 0) == 0) last = line.substr(13);
  }
  return last;
}

// ------------------------------------------------------------------ the run

// What a finished worker did, from its exit, the outcome file it left (MOPT_OUTCOME_FILE) or its log, and
// the model and report it wrote: the status, message, gates, output hash and size, accuracy summary. The
// log is kept only when something went wrong.
void judge_worker(const batch::Exit& exit, const std::string& output, const std::string& log_path, double timeout, Record& r) {
  std::error_code ec;
  const std::string outcome_path = output + ".outcome.json";
  json worker = nullptr;
  {
    std::ifstream in(outcome_path);
    if (in) worker = json::parse(in, nullptr, false);
  }
  fs::remove(outcome_path, ec);
  const std::string error = worker.is_object() ? worker.value("error", "") : last_error_line(log_path);
  r.exit_code = exit.exit_code;
  if (exit.timed_out) {
    r.status = Status::Timeout;
    r.message = fmt::format("stopped after the time limit of {} s", timeout);
  } else if (exit.signal) {
    r.status = Status::Error;
    r.message = exit.signal == SIGKILL ? "the worker was killed (SIGKILL: out of memory?)"
                                       : fmt::format("the worker died of {}", batch::signal_name(exit.signal));
  } else if (exit.exit_code == kExitOk || exit.exit_code == kExitGate) {
    r.status = exit.exit_code == kExitOk ? Status::Ok : Status::GateFailed;
    if (worker.is_object()) r.failed_gates = worker.value("failed_gates", std::vector<std::string>{});
    if (!fs::is_regular_file(output, ec)) {
      r.status = Status::Error;
      r.message = fmt::format("the worker exited with {} but '{}' is not there", exit.exit_code, output);
    }
  } else if (worker.is_object() && worker.value("error_kind", "") == "unchanged") {
    r.status = Status::Unchanged;
    r.message = error;
  } else {
    r.status = Status::Error;
    r.message = error.empty() ? fmt::format("the worker exited with {}", exit.exit_code) : error;
  }
  if (r.status == Status::Ok || r.status == Status::GateFailed) {
    r.output_sha256 = sha256_file(output);
    r.output_bytes = batch::model_bytes(output);
    r.report = output + ".report.json";
    std::ifstream in(r.report);
    const json model_report = json::parse(in, nullptr, false);
    if (model_report.is_object()) r.accuracy = batch::accuracy_summary(model_report);
  }
  if (r.status == Status::Ok || r.status == Status::Unchanged) fs::remove(log_path, ec);
  else if (r.status != Status::GateFailed) r.message += fmt::format(" (log: {})", log_path);
}


struct Planned {
  Item item;
  std::string output, output_folder;
};

std::string describe(const Record& r) {
  const log::Paint paint = r.status == Status::Error || r.status == Status::Timeout ? log::Paint::Error
                           : r.status == Status::GateFailed                        ? log::Paint::Warning
                                                                                   : log::Paint::Good;
  std::string text = fmt::format("{} {}", log::paint(fmt::format("{:<11}", batch::to_string(r.status)), paint, stderr), r.input);
  if (!r.output_sha256.empty()) {
    text += fmt::format(" -> {} ({:.1f} s, {:.2f} -> {:.2f} MiB", r.output, r.seconds, r.input_bytes / 1048576.0, r.output_bytes / 1048576.0);
    if (r.accuracy.is_object() && r.accuracy["min_cosine"].is_number())
      text += fmt::format(", cosine {:.6f}", r.accuracy["min_cosine"].get<double>());
    text += ")";
  }
  if (!r.message.empty()) text += ": " + r.message;
  for (const std::string& g : r.failed_gates) text += "; gate " + g;
  return text;
}

void write_documents(const json& report, const std::string& report_path, const std::string& markdown_path) {
  report::write_json(report, report_path);
  if (!markdown_path.empty()) report::write_markdown(batch::markdown(report), markdown_path);
}

int finish(const batch::BatchOutcome& result, const std::vector<std::string>& command_line,
           std::chrono::system_clock::time_point started, int forced_exit, const std::string& report_path,
           const std::string& markdown_path) {
  // Each model's input and output sha256 are in its record, not in the header.
  report::Invocation invocation{command_line, started, forced_exit >= 0 ? forced_exit : batch::exit_status(result)};
  const json report = batch::to_json(result, report::header(invocation));
  write_documents(report, report_path, markdown_path);
  if (log::level() >= log::Level::Normal) fmt::print("{}report {}\n", batch::terminal_summary(report), report_path);
  return invocation.exit_status;
}

int run_merge(const BatchFlags& f, const std::vector<std::string>& paths, const std::vector<std::string>& command_line) {
  const auto started = std::chrono::system_clock::now();
  if (paths.empty()) usage_error("mopt batch merge needs the folders (or manifest files) of the shards");
  std::vector<fs::path> manifests;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> found;
      for (const auto& e : fs::directory_iterator(p, ec)) {
        const std::string name = e.path().filename().string();
        if (name.rfind("mopt-batch", 0) == 0 && e.path().extension() == ".jsonl") found.push_back(e.path());
      }
      if (found.empty()) fail("folder '{}' holds no batch manifest (mopt-batch*.jsonl)", p);
      std::sort(found.begin(), found.end());
      manifests.insert(manifests.end(), found.begin(), found.end());
    } else if (fs::is_regular_file(p, ec)) {
      manifests.emplace_back(p);
    } else {
      fail("'{}' does not exist", p);
    }
  }
  batch::BatchOutcome result;
  std::map<int, batch::Plan> plans;                 // the latest plan of each shard
  std::map<std::string, std::vector<Record>> done;  // output -> its records, in reading order
  int count = 0;
  std::string worklist;
  for (const fs::path& m : manifests) {
    batch::ManifestContents c = batch::read_manifest(m);
    for (const std::string& p : c.problems) {
      log::warn("{}", p);
      result.problems.push_back(p);
    }
    for (const batch::Plan& p : c.plans) {
      if (count && (p.shard_count != count || p.worklist_sha256 != worklist))
        fail("'{}' is from another batch: {} shards over worklist {}, others {} over {}", m.string(), p.shard_count,
             p.worklist_sha256.substr(0, 12), count, worklist.substr(0, 12));
      count = p.shard_count;
      worklist = p.worklist_sha256;
      plans[p.shard_index] = p;
    }
    for (const Record& r : c.records) done[r.output].push_back(r);
  }
  if (!count) fail("no manifest names its plan (the line a batch writes when it starts)");
  result.shard_count = count;
  std::vector<Record> records;
  for (int i = 0; i < count; ++i) {
    auto plan = plans.find(i);
    if (plan == plans.end()) {
      result.missing.push_back(fmt::format("shard {} of {}: no manifest", i, count));
      continue;
    }
    for (const std::string& output : plan->second.outputs) {
      auto it = done.find(output);
      const Record* own = nullptr;
      std::set<int> shards;
      if (it != done.end()) {
        for (const Record& r : it->second) {
          shards.insert(r.shard_index);
          if (r.shard_index == i) own = &r;  // the last line of the shard that was given it
        }
      }
      if (shards.size() > 1) result.duplicates.push_back(output);
      if (own) records.push_back(*own);
      else result.missing.push_back(output);
    }
  }
  std::sort(records.begin(), records.end(), [](const Record& a, const Record& b) {
    return std::tie(a.input, a.command, a.args) < std::tie(b.input, b.command, b.args);
  });
  result.records = std::move(records);
  const auto wall = std::chrono::duration<double>(std::chrono::system_clock::now() - started).count();
  result.wall_seconds = wall;
  for (const std::string& m : result.missing) log::warn("missing: {}", m);
  for (const std::string& d : result.duplicates) log::warn("done by more than one shard: {}", d);
  std::error_code ec;
  const std::string report_path = !f.report.empty() ? f.report
                                  : fs::is_directory(paths[0], ec) ? (fs::path(paths[0]) / "mopt-batch.report.json").string()
                                                                   : "mopt-batch.report.json";
  return finish(result, command_line, started, -1, report_path, f.markdown);
}

}  // namespace

bool is_batch_command(const std::string& name) {
  return std::find(kBatchCommands.begin(), kBatchCommands.end(), name) != kBatchCommands.end();
}

std::string batch_command_list() { return fmt::format("{}", fmt::join(kBatchCommands, ", ")); }

void add_batch_flags(CLI::App* cmd, BatchFlags& f) {
  cmd->add_option("work", f.work,
                  "COMMAND INPUT...: an optimizing command (quantize, convert, fuse, prune, clip, optimize) and the models: "
                  "files, folders (searched for *.onnx), globs or job files (.yaml/.json/.jsonl); or merge FOLDER...");
  cmd->add_option("-O,--output-dir", f.output_dir, "Folder for the outputs, mirroring the inputs' folders (created if needed)");
  cmd->add_option("-j,--jobs", f.jobs, "Worker processes at a time (default: 1)")->check(CLI::Range(1, 1024));
  cmd->add_option("--timeout", f.timeout, "Stop a model's worker after this many seconds (status timeout; default: none)")
      ->check(CLI::Range(0.0, 1e9));
  cmd->add_option("--max-memory", f.max_memory,
                  "Start a model only while the running ones' estimated peaks (2x model size + 256M each) stay under this "
                  "(like 8G; one model always runs)");
  cmd->add_option("--manifest", f.manifest, "The JSONL manifest (default: <output-dir>/mopt-batch[.shard-I-of-N].jsonl)");
  cmd->add_flag("--resume", f.resume, "Skip the models the manifest already holds a line for (same input, command and flags)");
  cmd->add_flag("--no-cache", f.no_cache,
                "Redo models whose input, flags, data and mopt are those of a finished line in the manifest (default: "
                "reuse it, status cached, when its output is still there)");
  cmd->add_option("--shard-index", f.shard_index,
                  "This shard of the worklist (default: $SLURM_ARRAY_TASK_ID, $JOB_COMPLETION_INDEX or $AWS_BATCH_JOB_ARRAY_INDEX)")
      ->check(CLI::Range(0, 1000000));
  cmd->add_option("--shard-count", f.shard_count,
                  "Shards in all (default: $SLURM_ARRAY_TASK_COUNT or $AWS_BATCH_JOB_ARRAY_SIZE; needed with $JOB_COMPLETION_INDEX)")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--report", f.report, "The batch report (default: <output-dir>/mopt-batch[.shard-I-of-N].report.json)");
  cmd->add_option("--markdown", f.markdown, "Also write the summary as Markdown; appended when FILE is $GITHUB_STEP_SUMMARY");
  cmd->add_flag("--dry-run", f.dry_run, "Check every model's command line, print the worklist with outputs and shards, run nothing");
}

std::vector<std::string> split_batch_args(CLI::App& app, CLI::App& batch_cmd, const std::vector<std::string>& args, BatchFlags& f) {
  std::vector<std::string> own = {args[0], args[1]};
  CLI::App* command = nullptr;
  bool positional_only = false, merge = false, first = true;
  for (size_t i = 2; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (positional_only || a.size() < 2 || a[0] != '-') {
      if (first && !positional_only) {
        first = false;
        merge = a == "merge";
        if (is_batch_command(a)) {
          command = app.get_subcommand(a);
        } else if (!merge && !batch::is_job_file(a)) {
          usage_error("mopt batch runs one of {} (or merge), not '{}'", batch_command_list(), a);
        }
      }
      own.push_back(a);
      continue;
    }
    if (a == "--") {
      positional_only = true;
      own.push_back(a);
      continue;
    }
    const std::string name = flag_name(a);
    auto take = [&](const CLI::Option* option, std::vector<std::string>& into) {
      into.push_back(a);
      if (value_follows(option, a) && i + 1 < args.size()) into.push_back(args[++i]);
    };
    if (const CLI::Option* option = batch_cmd.get_option_no_throw(name)) {
      take(option, own);
    } else if (const CLI::Option* command_option = command ? command->get_option_no_throw(name) : nullptr) {
      if (std::find(kRefusedFlags.begin(), kRefusedFlags.end(), name) != kRefusedFlags.end())
        usage_error("{} is not for mopt batch: the batch names each output below -O/--output-dir", name);
      take(command_option, f.command_flags);
    } else if (command) {
      usage_error("mopt {} has no option '{}' (see mopt {} --help)", command->get_name(), name, command->get_name());
    } else {
      usage_error("mopt batch has no option '{}' (a command's flags come after the command: mopt batch quantize DIR {})",
                  name, name);
    }
  }
  return own;
}

bool names_several_models(CLI::App& app, const std::vector<std::string>& args) {
  if (args.size() < 4 || !is_batch_command(args[1])) return false;
  const CLI::App* command = app.get_subcommand(args[1]);
  int models = 0;
  for (size_t i = 2; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") return models + static_cast<int>(args.size() - i - 1) > 1;
    if (a.size() < 2 || a[0] != '-') {
      ++models;
      continue;
    }
    const CLI::Option* option = command->get_option_no_throw(flag_name(a));
    // An option the command does not have: its parser names it (a value after it is not a second model).
    if (!option) return false;
    if (value_follows(option, a)) ++i;  // its value
  }
  return models > 1;
}

int run_batch_command(BatchFlags& f, const batch::ResolveFlags& resolve, Outcome& outcome) {
  const auto started = std::chrono::system_clock::now();
  const std::vector<std::string>& command_line = outcome.command_line;
  if (!f.work.empty() && f.work[0] == "merge") {
    if (!f.command_flags.empty() || !f.output_dir.empty()) usage_error("mopt batch merge takes the shards' folders, --report and --markdown");
    return run_merge(f, {f.work.begin() + 1, f.work.end()}, command_line);
  }
  if (outcome.tool_path.empty()) fail("not supported: mopt batch starts mopt worker processes; run it from the mopt tool");
  if (f.work.empty()) usage_error("give the command and the models: mopt batch quantize models/ -O out/");
  std::string command;
  std::vector<std::string> inputs = f.work;
  if (!batch::is_job_file(inputs[0])) {
    command = inputs[0];
    inputs.erase(inputs.begin());
  }
  if (inputs.empty()) usage_error("give the models: files, folders, globs or a job file");
  if (f.output_dir.empty()) usage_error("give the folder for the outputs: -O/--output-dir DIR");
  const std::optional<uint64_t> max_memory = parse_size(f.max_memory, "--max-memory");
  const Shard shard = shard_of(f);

  // The worklist, each model's command line checked and its output named, before any work.
  std::vector<Item> items = batch::expand(inputs, command, f.command_flags, f.output_dir, resolve);
  std::vector<Planned> planned;
  std::map<std::string, std::string> output_owner;
  const log::Level level = log::level();
  for (const Item& item : items) {
    const std::string folder = (fs::path(f.output_dir) / fs::path(item.relative).parent_path()).lexically_normal().string();
    std::vector<std::string> args = {"mopt", item.command, item.input, "-O", folder};
    args.insert(args.end(), item.args.begin(), item.args.end());
    Outcome check;
    check.print_errors = false;
    check.dry_run = true;
    const int code = run_tool(args, check);
    log::set_level(level);
    if (code != kExitOk) throw Error(fmt::format("{}: {}", item.origin == item.input ? item.input : item.origin + " (" + item.input + ")",
                                                 check.error), code == kExitUsage ? ErrorKind::Usage : ErrorKind::Failure);
    const std::string output = fs::path(check.output).lexically_normal().string();
    auto [it, fresh] = output_owner.emplace(output, item.input);
    if (!fresh) usage_error("'{}' and '{}' would both write '{}'", it->second, item.input, output);
    planned.push_back({item, output, folder});
  }
  std::string worklist_text;
  for (const Planned& p : planned) worklist_text += json({p.item.input, p.item.command, p.item.args}).dump() + "\n";
  const std::string worklist_sha256 = sha256_text(worklist_text);
  const std::vector<int> shards = batch::assign_shards(items, shard.count);
  std::vector<size_t> mine;
  for (size_t i = 0; i < planned.size(); ++i) {
    if (shards[i] == shard.index) mine.push_back(i);
  }
  if (f.dry_run) {
    for (size_t i = 0; i < planned.size(); ++i) {
      fmt::print("{}shard {} {} {} -> {}\n", shards[i] == shard.index ? "* " : "  ", shards[i], planned[i].item.command,
                 planned[i].item.input, planned[i].output);
    }
    if (shard.count == 1) fmt::print("{} models (not sharded)\n", planned.size());
    else fmt::print("{} models, {} in shard {} of {} (from {})\n", planned.size(), mine.size(), shard.index, shard.count, shard.source);
    return kExitOk;
  }

  // The output folder exists and takes files before any work.
  std::error_code ec;
  fs::create_directories(f.output_dir, ec);
  if (ec || !fs::is_directory(f.output_dir)) fail("cannot create output folder '{}': {}", f.output_dir, ec ? ec.message() : "not a folder");
  if (::access(f.output_dir.c_str(), W_OK) != 0) fail("output folder '{}' is not writable", f.output_dir);
  const std::string manifest_path =
      f.manifest.empty() ? (fs::path(f.output_dir) / ("mopt-batch" + shard_suffix(shard) + ".jsonl")).string() : f.manifest;
  const std::string report_path =
      f.report.empty() ? (fs::path(f.output_dir) / ("mopt-batch" + shard_suffix(shard) + ".report.json")).string() : f.report;

  batch::ManifestContents previous = batch::read_manifest(manifest_path);
  for (const std::string& p : previous.problems) log::warn("{}", p);
  std::map<std::string, Record> latest;
  for (const Record& r : previous.records) latest[r.output] = r;

  batch::BatchOutcome result;
  result.shard_count = shard.count;
  result.problems = previous.problems;
  std::map<size_t, Record> finished;  // by worklist index
  int exit_override = -1;
  try {
    batch::ManifestWriter manifest(manifest_path);
    batch::Plan plan{shard.index, shard.count, planned.size(), worklist_sha256, {}, now_utc()};
    for (size_t i : mine) plan.outputs.push_back(planned[i].output);
    manifest.append(batch::to_json(plan));
    log::info("mopt batch: {} models{} -> {} ({} at a time)", mine.size(),
              shard.count > 1 ? fmt::format(" of {} (shard {} of {}, from {})", planned.size(), shard.index, shard.count, shard.source) : "",
              f.output_dir, f.jobs);

    // What is already done: --resume keeps the manifest's lines; the cache reuses a finished output.
    ContentHashes hashes;
    std::vector<size_t> to_run;
    std::map<size_t, std::pair<std::string, std::string>> identity;  // index -> (input sha256, key)
    size_t count_done = 0;
    // A line per finished model, and the phase's status line (on a terminal redrawn below them: done/total,
    // failures, time left).
    size_t failures = 0;
    log::Phase phase("batch", mine.size(), "models");
    auto progress = [&](const Record& r) {
      ++count_done;
      failures += r.status == Status::Error || r.status == Status::Timeout || r.status == Status::GateFailed;
      log::info("[{}/{}] {}", count_done, mine.size(), describe(r));
      if (failures) phase.set_note(fmt::format("{} failed", failures));
      phase.set_done(count_done);
    };
    for (size_t i : mine) {
      const Planned& p = planned[i];
      auto prev = latest.find(p.output);
      if (f.resume && prev != latest.end() && prev->second.input == p.item.input && prev->second.command == p.item.command &&
          prev->second.args == p.item.args) {
        finished[i] = prev->second;
        ++count_done;
        continue;
      }
      const std::string input_sha = hashes.of(p.item.input);
      const std::string key = key_of(p.item, input_sha, hashes);
      identity[i] = {input_sha, key};
      if (!f.no_cache && prev != latest.end() && prev->second.key == key && batch::reusable(prev->second.status)) {
        const Record& old = prev->second;
        const bool output_intact = old.output_sha256.empty() ? !fs::exists(p.output, ec)
                                                             : fs::is_regular_file(p.output, ec) && hashes.of(p.output) == old.output_sha256;
        if (output_intact) {
          Record r = old;
          r.status = Status::Cached;
          r.message = fmt::format("same input, flags, data and mopt as the run finished at {}", old.finished_at);
          r.seconds = 0;
          r.finished_at = now_utc();
          r.shard_index = shard.index;
          r.shard_count = shard.count;
          manifest.append(batch::to_json(r));
          finished[i] = r;
          progress(r);
          continue;
        }
      }
      to_run.push_back(i);
    }
    phase.set_done(count_done);

    // The workers: the single command with -O, its outcome in a file beside the output.
    // The CPUs this process may use (a Slurm or container allocation), not the machine's.
    cpu_set_t allowed;
    const int cores = ::sched_getaffinity(0, sizeof(allowed), &allowed) == 0 ? std::max(1, CPU_COUNT(&allowed))
                                                                             : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::vector<batch::Task> tasks;
    for (size_t i : to_run) {
      const Planned& p = planned[i];
      batch::Task t;
      t.argv = {outcome.tool_path, p.item.command, p.item.input, "-O", p.output_folder};
      t.argv.insert(t.argv.end(), p.item.args.begin(), p.item.args.end());
      const std::string threads = std::to_string(std::max(1, cores / f.jobs));
      if (f.jobs > 1 && std::find(p.item.args.begin(), p.item.args.end(), "--threads") == p.item.args.end()) {
        t.argv.push_back("--threads");
        t.argv.push_back(threads);
      }
      fs::create_directories(p.output_folder, ec);
      if (ec) fail("cannot create output folder '{}': {}", p.output_folder, ec.message());
      t.log_path = p.output + ".log";
      t.env = {{"MOPT_OUTCOME_FILE", p.output + ".outcome.json"}};
      // OpenBLAS starts (and spins) a thread per core in every process: with several workers, their share.
      if (f.jobs > 1 && !std::getenv("OPENBLAS_NUM_THREADS")) t.env.emplace_back("OPENBLAS_NUM_THREADS", threads);
      // OpenMP's threads (the executor's and oneDNN's) spin about 3 ms after each parallel region by
      // default, taking the cores the other workers need: 3000 rounds (tens of microseconds) instead.
      if (f.jobs > 1 && !std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT"))
        t.env.emplace_back("GOMP_SPINCOUNT", "3000");
      t.memory = 2 * p.item.bytes + (256ull << 20);
      tasks.push_back(std::move(t));
    }
    const bool complete = batch::run_tasks(
        tasks, {f.jobs, max_memory.value_or(0), f.timeout}, [](size_t) {},
        [&](size_t task, const batch::Exit& exit) {
          const size_t i = to_run[task];
          const Planned& p = planned[i];
          Record r;
          r.input = p.item.input;
          r.output = p.output;
          r.command = p.item.command;
          r.args = p.item.args;
          r.input_sha256 = identity[i].first;
          r.key = identity[i].second;
          r.input_bytes = p.item.bytes;
          r.seconds = exit.seconds;
          r.mopt_version = MOPT_VERSION;
          r.shard_index = shard.index;
          r.shard_count = shard.count;
          judge_worker(exit, p.output, tasks[task].log_path, f.timeout, r);
          r.finished_at = now_utc();
          manifest.append(batch::to_json(r));
          finished[i] = r;
          progress(r);
        });
    if (!complete) {
      exit_override = kExitInfrastructure;
      log::warn("interrupted: {} of {} models not done; run the same command with --resume to finish them", mine.size() - finished.size(),
                mine.size());
    }
  } catch (const Error& e) {
    record_error(outcome, fmt::format("the batch could not go on: {}", e.what()));
    exit_override = kExitInfrastructure;
  }
  for (size_t i : mine) {
    auto it = finished.find(i);
    if (it != finished.end()) result.records.push_back(it->second);
    else result.missing.push_back(planned[i].output);
  }
  result.wall_seconds = std::chrono::duration<double>(std::chrono::system_clock::now() - started).count();
  const int code = finish(result, command_line, started, exit_override, report_path, f.markdown);
  outcome.report = report_path;
  return code;
}

}  // namespace mopt::cli
