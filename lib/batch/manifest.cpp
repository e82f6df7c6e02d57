// Reading and appending batch manifest lines.
#include "batch/manifest.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "util/error.h"

namespace mopt::batch {

using nlohmann::json;

namespace {
const std::vector<std::pair<Status, const char*>> kStatusNames = {
    {Status::Ok, "ok"},           {Status::GateFailed, "gate-failed"}, {Status::Error, "error"},
    {Status::Unchanged, "unchanged"}, {Status::Cached, "cached"},     {Status::Timeout, "timeout"}};

template <typename T>
T field(const json& line, const char* name) {
  if (!line.contains(name)) fail("field '{}' is missing", name);
  try {
    return line.at(name).get<T>();
  } catch (const json::exception&) {
    fail("field '{}' has the wrong type", name);
  }
}
}  // namespace

std::string to_string(Status status) {
  for (const auto& [s, name] : kStatusNames) {
    if (s == status) return name;
  }
  return "error";
}

std::optional<Status> status_from(const std::string& text) {
  for (const auto& [s, name] : kStatusNames) {
    if (text == name) return s;
  }
  return std::nullopt;
}

bool reusable(Status status) {
  return status == Status::Ok || status == Status::GateFailed || status == Status::Unchanged || status == Status::Cached;
}

json to_json(const Record& r) {
  return {{"type", "model"},
          {"input", r.input},
          {"output", r.output},
          {"report", r.report.empty() ? json(nullptr) : json(r.report)},
          {"command", r.command},
          {"args", r.args},
          {"status", to_string(r.status)},
          {"exit_code", r.exit_code},
          {"message", r.message.empty() ? json(nullptr) : json(r.message)},
          {"failed_gates", r.failed_gates},
          {"key", r.key},
          {"input_sha256", r.input_sha256},
          {"output_sha256", r.output_sha256.empty() ? json(nullptr) : json(r.output_sha256)},
          {"input_bytes", r.input_bytes},
          {"output_bytes", r.output_bytes},
          {"accuracy", r.accuracy},
          {"seconds", r.seconds},
          {"finished_at", r.finished_at},
          {"mopt_version", r.mopt_version},
          {"shard", {{"index", r.shard_index}, {"count", r.shard_count}}}};
}

Record record_from_json(const json& line) {
  Record r;
  r.input = field<std::string>(line, "input");
  r.output = field<std::string>(line, "output");
  if (line.contains("report") && line["report"].is_string()) r.report = line["report"];
  r.command = field<std::string>(line, "command");
  r.args = field<std::vector<std::string>>(line, "args");
  const std::string status = field<std::string>(line, "status");
  const std::optional<Status> s = status_from(status);
  if (!s) fail("unknown status '{}'", status);
  r.status = *s;
  r.exit_code = field<int>(line, "exit_code");
  if (line.contains("message") && line["message"].is_string()) r.message = line["message"];
  r.failed_gates = field<std::vector<std::string>>(line, "failed_gates");
  r.key = field<std::string>(line, "key");
  r.input_sha256 = field<std::string>(line, "input_sha256");
  if (line.contains("output_sha256") && line["output_sha256"].is_string()) r.output_sha256 = line["output_sha256"];
  r.input_bytes = field<uint64_t>(line, "input_bytes");
  r.output_bytes = field<uint64_t>(line, "output_bytes");
  r.accuracy = line.value("accuracy", json(nullptr));
  r.seconds = field<double>(line, "seconds");
  r.finished_at = field<std::string>(line, "finished_at");
  r.mopt_version = field<std::string>(line, "mopt_version");
  const json shard = field<json>(line, "shard");
  r.shard_index = field<int>(shard, "index");
  r.shard_count = field<int>(shard, "count");
  return r;
}

json to_json(const Plan& p) {
  return {{"type", "plan"},
          {"shard", {{"index", p.shard_index}, {"count", p.shard_count}}},
          {"worklist_size", p.worklist_size},
          {"worklist_sha256", p.worklist_sha256},
          {"outputs", p.outputs},
          {"started_at", p.started_at}};
}

Plan plan_from_json(const json& line) {
  Plan p;
  const json shard = field<json>(line, "shard");
  p.shard_index = field<int>(shard, "index");
  p.shard_count = field<int>(shard, "count");
  p.worklist_size = field<uint64_t>(line, "worklist_size");
  p.worklist_sha256 = field<std::string>(line, "worklist_sha256");
  p.outputs = field<std::vector<std::string>>(line, "outputs");
  p.started_at = field<std::string>(line, "started_at");
  return p;
}

ManifestWriter::ManifestWriter(const std::filesystem::path& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);  // read: the last byte
  if (fd_ < 0) fail("cannot write manifest '{}': {}", path.string(), std::strerror(errno));
  // A line torn by a crash of an earlier run must not glue itself to the next one.
  const off_t size = ::lseek(fd_, 0, SEEK_END);
  if (size > 0) {
    char last = '\n';
    if (::pread(fd_, &last, 1, size - 1) == 1 && last != '\n' && ::write(fd_, "\n", 1) != 1)
      fail("cannot write manifest '{}': {}", path.string(), std::strerror(errno));
  }
}

ManifestWriter::~ManifestWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void ManifestWriter::append(const json& line) {
  const std::string text = line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot write manifest '{}': {}", path_.string(), std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd_) != 0) fail("cannot write manifest '{}': {}", path_.string(), std::strerror(errno));
}

ManifestContents read_manifest(const std::filesystem::path& path) {
  ManifestContents contents;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return contents;
  std::ifstream in(path);
  if (!in) fail("cannot read manifest '{}'", path.string());
  std::string text;
  size_t number = 0;
  while (std::getline(in, text)) {
    ++number;
    if (text.empty()) continue;
    const std::string where = fmt::format("{} line {}", path.string(), number);
    const json line = json::parse(text, nullptr, false);
    if (line.is_discarded() || !line.is_object()) {
      contents.problems.push_back(fmt::format("{}: not valid JSON (ignored)", where));
      continue;
    }
    try {
      const std::string type = line.value("type", "");
      if (type == "plan") contents.plans.push_back(plan_from_json(line));
      else if (type == "model") contents.records.push_back(record_from_json(line));
      else contents.problems.push_back(fmt::format("{}: unknown line type '{}' (ignored)", where, type));
    } catch (const Error& e) {
      contents.problems.push_back(fmt::format("{}: {} (ignored)", where, e.what()));
    }
  }
  return contents;
}

}  // namespace mopt::batch
