// Model statistics and compressed sizes; see stats.h.
#include "report/stats.h"

#include <fmt/format.h>
#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <thread>

#include "util/error.h"
#include "util/file.h"

namespace mopt::report {

std::string format_type(const onnx::TypeProto& type) {
  switch (type.value_case()) {
    case onnx::TypeProto::kTensorType: {
      const auto& t = type.tensor_type();
      std::string s = ir::dtype::name(t.elem_type());
      if (!t.has_shape()) return s + "[...]";
      std::vector<std::string> dims;
      for (const auto& d : t.shape().dim()) {
        dims.push_back(d.has_dim_value() ? std::to_string(d.dim_value()) : d.has_dim_param() ? d.dim_param() : "?");
      }
      return fmt::format("{}[{}]", s, fmt::join(dims, ","));
    }
    case onnx::TypeProto::kSequenceType: return "seq(" + format_type(type.sequence_type().elem_type()) + ")";
    case onnx::TypeProto::kOptionalType: return "optional(" + format_type(type.optional_type().elem_type()) + ")";
    case onnx::TypeProto::kMapType:
      return fmt::format("map({},{})", ir::dtype::name(type.map_type().key_type()), format_type(type.map_type().value_type()));
    case onnx::TypeProto::kSparseTensorType: return "sparse(" + ir::dtype::name(type.sparse_tensor_type().elem_type()) + ")";
    default: return "?";
  }
}

namespace {
void add_tensor(ModelStats& s, const ir::Tensor& t, const std::string& name, const char* kind) {
  const std::string dt = ir::dtype::name(t.dtype());
  const int64_t n = std::max<int64_t>(t.numel(), 0);
  const uint64_t bytes = t.nbytes();
  auto& d = s.by_dtype[dt];
  d.tensors++;
  d.elements += n;
  d.bytes += bytes;
  s.parameters += n;
  s.parameter_bytes += bytes;
  s.largest.push_back({name, dt, t.dims(), bytes, kind});
}

void collect_graph(ModelStats& s, const ir::Graph& g) {
  for (const ir::Value* v : g.initializers()) {
    s.initializers++;
    add_tensor(s, *v->initializer(), v->name(), "initializer");
  }
  for (const ir::Node* n : g.nodes()) {
    s.nodes++;
    s.op_histogram[n->is_default_domain() ? n->op_type() : n->domain() + "." + n->op_type()]++;
    if (n->is_op("Constant")) {
      s.constant_nodes++;
      if (const ir::Attribute* a = n->attribute("value"); a != nullptr && a->tensor)
        add_tensor(s, *a->tensor, n->output(0) ? n->output(0)->name() : n->name(), "constant-node");
    }
    for (const ir::Graph* sub : n->subgraphs()) {
      s.subgraphs++;
      collect_graph(s, *sub);
    }
  }
}
}  // namespace

ModelStats collect_stats(const ir::Model& model, size_t largest_count) {
  ModelStats s;
  s.ir_version = model.ir_version();
  for (const auto& op : model.proto().opset_import())
    s.opsets.emplace_back(op.domain().empty() ? "ai.onnx" : op.domain(), op.version());
  s.producer = model.proto().producer_name();
  if (!model.proto().producer_version().empty()) s.producer += " " + model.proto().producer_version();
  for (const ir::Value* v : model.graph().inputs()) {
    if (!v->initializer()) s.inputs.push_back({v->name(), v->has_type() ? format_type(v->info().type()) : "?"});
  }
  for (const ir::Value* v : model.graph().outputs())
    s.outputs.push_back({v->name(), v->has_type() ? format_type(v->info().type()) : "?"});
  collect_graph(s, model.graph());
  std::stable_sort(s.largest.begin(), s.largest.end(), [](const auto& a, const auto& b) { return a.bytes > b.bytes; });
  if (s.largest.size() > largest_count) s.largest.resize(largest_count);
  return s;
}

nlohmann::json to_json(const ModelStats& s) {
  using nlohmann::json;
  json j;
  j["ir_version"] = s.ir_version;
  j["opsets"] = json::object();
  for (const auto& [d, v] : s.opsets) j["opsets"][d] = v;
  j["producer"] = s.producer;
  auto io = [](const std::vector<IoSummary>& list) {
    json a = json::array();
    for (const auto& x : list) a.push_back({{"name", x.name}, {"type", x.type}});
    return a;
  };
  j["inputs"] = io(s.inputs);
  j["outputs"] = io(s.outputs);
  j["nodes"] = s.nodes;
  j["subgraphs"] = s.subgraphs;
  j["initializers"] = s.initializers;
  j["constant_nodes"] = s.constant_nodes;
  j["parameters"] = s.parameters;
  j["parameter_bytes"] = s.parameter_bytes;
  j["by_dtype"] = json::object();
  for (const auto& [d, st] : s.by_dtype)
    j["by_dtype"][d] = {{"tensors", st.tensors}, {"elements", st.elements}, {"bytes", st.bytes}};
  j["op_histogram"] = s.op_histogram;
  j["largest_tensors"] = json::array();
  for (const auto& t : s.largest)
    j["largest_tensors"].push_back({{"name", t.name}, {"dtype", t.dtype}, {"dims", t.dims}, {"bytes", t.bytes}, {"kind", t.kind}});
  return j;
}

namespace {

uint64_t compress_stream(const std::vector<std::filesystem::path>& files, int level) {
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> ctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  ZSTD_CCtx_setParameter(ctx.get(), ZSTD_c_compressionLevel, level);
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  ZSTD_CCtx_setParameter(ctx.get(), ZSTD_c_nbWorkers, static_cast<int>(threads));  // ignored if unsupported
  std::vector<char> out(ZSTD_CStreamOutSize());
  uint64_t total = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    auto file = MappedFile::open(files[f]);
    auto bytes = file->bytes();
    ZSTD_inBuffer in{bytes.data(), bytes.size(), 0};
    const bool last = f + 1 == files.size();
    for (;;) {
      ZSTD_outBuffer o{out.data(), out.size(), 0};
      const size_t remaining = ZSTD_compressStream2(ctx.get(), &o, &in, last ? ZSTD_e_end : ZSTD_e_continue);
      if (ZSTD_isError(remaining)) fail("zstd: {}", ZSTD_getErrorName(remaining));
      total += o.pos;
      if (last ? remaining == 0 : in.pos == in.size) break;
    }
  }
  return total;
}

// One file's estimate: `blocks` evenly spaced blocks of `block_bytes` (the first and last included), read
// with pread (no mapping: the sampled pages do not add to the process's memory) and compressed alone on the
// machine's cores; returns (compressed, sampled) bytes.
std::pair<uint64_t, uint64_t> compress_samples(const std::filesystem::path& path, int blocks, size_t block_bytes, int level) {
  const uint64_t size = std::filesystem::file_size(path);
  if (size <= block_bytes * static_cast<uint64_t>(blocks)) return {compress_stream({path}, level), size};
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open '{}': {}", path.string(), std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  const unsigned threads = std::max(1u, std::min(std::thread::hardware_concurrency(), static_cast<unsigned>(blocks)));
  std::vector<uint64_t> compressed(threads, 0), read(threads, 0);
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> ctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
      std::vector<char> in(block_bytes), out(ZSTD_compressBound(block_bytes));
      for (int b = static_cast<int>(t); b < blocks; b += static_cast<int>(threads)) {
        const uint64_t offset = (size - block_bytes) * static_cast<uint64_t>(b) / static_cast<uint64_t>(blocks - 1);
        size_t got = 0;
        while (got < block_bytes) {
          const ssize_t n = ::pread(fd, in.data() + got, block_bytes - got, static_cast<off_t>(offset + got));
          if (n <= 0) break;
          got += static_cast<size_t>(n);
        }
        const size_t n = ZSTD_compressCCtx(ctx.get(), out.data(), out.size(), in.data(), got, level);
        compressed[t] += ZSTD_isError(n) ? got : n;
        read[t] += got;
      }
    });
  }
  for (auto& w : workers) w.join();
  uint64_t sum = 0, sampled = 0;
  for (unsigned t = 0; t < threads; ++t) sum += compressed[t], sampled += read[t];
  if (sampled == 0) fail("cannot read '{}'", path.string());
  return {sum, sampled};
}

}  // namespace

uint64_t sample_block_bytes(uint64_t total_bytes) {
  return std::clamp<uint64_t>(std::bit_floor(std::max<uint64_t>(total_bytes / 512, 1)), 64u << 10, 1u << 20);
}

CompressedSize zstd_compressed_size(const std::vector<std::filesystem::path>& files, int level, uint64_t exact_up_to) {
  CompressedSize r;
  std::vector<uint64_t> sizes;
  for (const auto& f : files) {
    sizes.push_back(std::filesystem::file_size(f));
    r.total_bytes += sizes.back();
  }
  if (r.total_bytes <= exact_up_to) {
    r.bytes = compress_stream(files, level);
    r.sampled_bytes = r.total_bytes;
    return r;
  }
  double estimate = 0;
  const size_t block = static_cast<size_t>(sample_block_bytes(r.total_bytes));
  for (size_t f = 0; f < files.size(); ++f) {
    if (sizes[f] == 0) continue;
    const int blocks = std::max(2, static_cast<int>(std::lround(kSampleBlocks * static_cast<double>(sizes[f]) / static_cast<double>(r.total_bytes))));
    const auto [compressed, sampled] = compress_samples(files[f], blocks, block, level);
    r.sampled_bytes += sampled;
    estimate += static_cast<double>(sizes[f]) * static_cast<double>(compressed) / static_cast<double>(sampled);
  }
  r.sampled_bytes = std::min(r.sampled_bytes, r.total_bytes);
  r.bytes = static_cast<uint64_t>(std::llround(estimate));
  return r;
}

std::string human_bytes(uint64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (bytes < 1024) return fmt::format("{} B", bytes);
  if (bytes < 1024 * 1024) return fmt::format("{:.1f} KiB", b / 1024);
  if (bytes < uint64_t{1} << 30) return fmt::format("{:.2f} MiB", b / (1024 * 1024));
  return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
}

std::string human_count(int64_t count) {
  if (count < 10000) return std::to_string(count);
  if (count < 10'000'000) return fmt::format("{:.1f} K", static_cast<double>(count) / 1e3);
  return fmt::format("{:.2f} M", static_cast<double>(count) / 1e6);
}

}  // namespace mopt::report
