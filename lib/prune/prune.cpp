// Weight pruning; see prune.h.
#include "prune/prune.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>

#include "exec/array.h"
#include "rewrite/rewrite.h"
#include "rewrite/weight_layout.h"
#include "util/error.h"
#include "util/file.h"

namespace mopt::prune {
namespace {

// A weight chosen for pruning: the node reading it as input 1, and the axis its outputs reduce over.
struct Target {
  ir::Node* node;
  ir::Value* weight;
  size_t axis;
  double sparsity;
};

int64_t count_zeros(std::span<const float> v) { return std::count(v.begin(), v.end(), 0.0f); }

// Why `node` is not pruned (nullptr: it is), and its weight's reduction axis.
const char* reason_to_skip(const ir::Node& node, const PruneConfig& config, size_t* axis) {
  const ir::Value* w = node.input(1);
  const ir::Tensor* t = w ? w->constant() : nullptr;
  if (t == nullptr) return "the weight is not a constant";
  if (t->dtype() != ir::dtype::kFloat) return "the weight is not float32";
  const std::vector<int64_t> dims = t->dims();
  if (dims.size() < 2) return "the weight has fewer than 2 dimensions";
  if (w->uses().size() != 1) return "the weight is shared with other nodes";
  if (t->numel() < config.min_elements) return "the weight is smaller than min-elements";
  const std::optional<rewrite::WeightLayout> layout = rewrite::weight_layout(node, dims.size());
  if (!layout || node.op_type() == "ConvTranspose") return "not a Conv, MatMul or Gemm";
  *axis = layout->reduction_axis;
  if (config.method == Method::NM && dims[*axis] % config.m != 0)
    return "the reduction axis is not a multiple of m";
  return nullptr;
}

double sparsity_for(const ir::Node& node, const PruneConfig& config) {
  if (auto it = config.node_sparsity.find(node.name()); it != config.node_sparsity.end()) return it->second;
  if (auto it = config.op_sparsity.find(node.op_type()); it != config.op_sparsity.end()) return it->second;
  return config.sparsity;
}

void validate(const PruneConfig& config) {
  auto check = [](double s, const std::string& what) {
    if (!(s >= 0 && s < 1)) usage_error("{} must be in [0, 1), not {}", what, s);
  };
  check(config.sparsity, "sparsity");
  for (const auto& [op, s] : config.op_sparsity) check(s, "the sparsity of " + op);
  for (const auto& [node, s] : config.node_sparsity) check(s, "the sparsity of node " + node);
  if (config.method == Method::NM && !(config.n >= 1 && config.n < config.m && config.m <= 64))
    usage_error("N:M pruning needs 1 <= n < m <= 64, not {}:{}", config.n, config.m);
}

// The float32 payload of a weight, checked against its shape. It may be unaligned (a payload inside
// the mapped file): read it through for_each_block or memcpy.
ir::Bytes float_payload(const ir::Tensor& t) {
  ir::Bytes bytes = t.data();
  if (bytes.size() != static_cast<uint64_t>(t.numel()) * sizeof(float))
    fail("tensor '{}' holds {} bytes but its shape needs {}", t.name(), bytes.size(), static_cast<uint64_t>(t.numel()) * sizeof(float));
  return bytes;
}

// Calls fn(first, values) over a float payload in order, in blocks (mopt::for_each_block: read from the
// file when the payload lies in the mapped model, so the weight being replaced is never faulted in).
void for_each_block(const ir::Bytes& bytes, const std::function<void(size_t, std::span<const float>)>& fn) {
  mopt::for_each_block(bytes.span(), 1 << 20, [&](size_t offset, std::span<const std::byte> block) {
    fn(offset / sizeof(float), {reinterpret_cast<const float*>(block.data()), block.size() / sizeof(float)});
  });
}

}  // namespace

namespace {
// |v| as an unsigned integer: ordered as the magnitudes are (NaN above infinity).
uint32_t magnitude_bits(float v) { return std::bit_cast<uint32_t>(v) & 0x7fffffffu; }

// The first bucket at which `below` plus the counts up to and including it reach k; adds the counts of
// the buckets before it to `below`. Both radix selections below step through their histograms with it.
uint32_t bucket_reaching(const std::vector<uint64_t>& histogram, uint64_t k, uint64_t& below) {
  uint32_t b = 0;
  for (; below + histogram[b] < k; ++b) below += histogram[b];
  return b;
}
}  // namespace

SmallestZeroing::SmallestZeroing(uint64_t count) : count_(count), histogram_(65536) {}

void SmallestZeroing::histogram(std::span<const float> values) {
  total_ += values.size();
  for (float v : values) ++histogram_[magnitude_bits(v) >> 16];
}

void SmallestZeroing::select_bucket() {
  if (selected_) return;
  selected_ = true;
  count_ = std::min(count_, total_);
  if (count_ > 0) high_ = bucket_reaching(histogram_, count_, below_);
  std::fill(histogram_.begin(), histogram_.end(), 0);
}

int64_t SmallestZeroing::copy(std::span<const float> from, std::span<float> to) {
  select_bucket();
  if (count_ == 0) {
    std::copy(from.begin(), from.end(), to.begin());
    return count_zeros(from);
  }
  // Branch-free (it vectorizes); the few values in the selected bucket are histogrammed in a second look
  // at the same, cached, span.
  int64_t zeros = 0, in_bucket = 0;
  for (size_t i = 0; i < from.size(); ++i) {
    const uint32_t bits = magnitude_bits(from[i]);
    to[i] = (bits >> 16) < high_ ? 0.0f : from[i];
    zeros += bits == 0;
    in_bucket += (bits >> 16) == high_;
  }
  for (size_t i = 0; i < from.size() && in_bucket > 0; ++i) {
    const uint32_t bits = magnitude_bits(from[i]);
    if ((bits >> 16) == high_) ++histogram_[bits & 0xffffu], --in_bucket;
  }
  return zeros;
}

int64_t SmallestZeroing::finish(std::span<float> to) {
  if (!threshold_) {
    select_bucket();
    uint64_t below = below_;
    const uint32_t low = count_ > 0 ? bucket_reaching(histogram_, count_, below) : 0;
    threshold_ = count_ > 0 ? (high_ << 16) | low : 0;  // 0: nothing is below it
    ties_ = static_cast<int64_t>(count_) - static_cast<int64_t>(below);
  }
  return copy_pruned(to, to, *threshold_, ties_);
}

int64_t copy_pruned(std::span<const float> from, std::span<float> to, uint32_t threshold_bits, int64_t& ties) {
  // Branch-free over the values (it vectorizes); values at the threshold are rare and handled after.
  int64_t at_threshold = 0, zeros = 0;
  for (size_t i = 0; i < from.size(); ++i) {
    const uint32_t bits = magnitude_bits(from[i]);
    to[i] = bits < threshold_bits ? 0.0f : from[i];
    at_threshold += bits == threshold_bits;
    zeros += bits < threshold_bits || bits == 0;
  }
  if (at_threshold == 0 || ties <= 0) return zeros;
  for (size_t i = 0; i < to.size() && ties > 0; ++i) {
    if (magnitude_bits(to[i]) == threshold_bits) {
      zeros += threshold_bits != 0;  // a zero at a zero threshold was counted already
      to[i] = 0.0f, --ties;
    }
  }
  return zeros;
}

void zero_smallest(std::span<float> values, int64_t count) {
  SmallestZeroing zeroing(static_cast<uint64_t>(std::max<int64_t>(count, 0)));
  zeroing.histogram(values);
  zeroing.copy(values, values);
  zeroing.finish(values);
}

namespace {
// Calls fn(offset, stride) for every group of m consecutive values along `axis`.
template <typename Fn>
void for_each_group(const std::vector<int64_t>& dims, size_t axis, int64_t m, Fn&& fn) {
  int64_t outer = 1, inner = 1;
  for (size_t d = 0; d < axis; ++d) outer *= dims[d];
  for (size_t d = axis + 1; d < dims.size(); ++d) inner *= dims[d];
  const int64_t len = dims[axis];
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t g = 0; g + m <= len; g += m) {
      for (int64_t i = 0; i < inner; ++i) fn((o * len + g) * inner + i, inner);
    }
  }
}
}  // namespace

void prune_n_m(std::span<float> values, const std::vector<int64_t>& dims, size_t axis, int64_t n, int64_t m) {
  std::vector<int64_t> idx(static_cast<size_t>(m));
  for_each_group(dims, axis, m, [&](int64_t offset, int64_t stride) {
    for (int64_t j = 0; j < m; ++j) idx[static_cast<size_t>(j)] = offset + j * stride;
    // Largest magnitudes first; among equals the lower index (earlier in the group) is kept.
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) {
      return std::abs(values[static_cast<size_t>(a)]) > std::abs(values[static_cast<size_t>(b)]);
    });
    for (int64_t j = n; j < m; ++j) values[static_cast<size_t>(idx[static_cast<size_t>(j)])] = 0.0f;
  });
}

bool has_n_m_pattern(std::span<const float> values, const std::vector<int64_t>& dims, size_t axis, int64_t n, int64_t m) {
  if (dims[axis] % m != 0) return false;
  bool ok = true;
  for_each_group(dims, axis, m, [&](int64_t offset, int64_t stride) {
    int64_t nonzero = 0;
    for (int64_t j = 0; j < m; ++j) nonzero += values[static_cast<size_t>(offset + j * stride)] != 0.0f;
    ok = ok && nonzero <= n;
  });
  return ok;
}

PruneSummary prune_model(ir::Model& model, const PruneConfig& config) {
  validate(config);
  ir::Graph& graph = model.graph();
  PruneSummary summary;
  std::vector<Target> targets;
  for (ir::Node* node : graph.nodes()) {
    if (!node->is_default_domain() || !config.op_types.count(node->op_type())) continue;
    const std::string who = rewrite::describe(*node);
    if (config.exclude_nodes.count(node->name())) {
      summary.skipped.emplace_back(who, "excluded");
      continue;
    }
    size_t axis = 0;
    if (const char* why = reason_to_skip(*node, config, &axis)) {
      summary.skipped.emplace_back(who, why);
      continue;
    }
    targets.push_back({node, node->input(1), axis, sparsity_for(*node, config)});
  }
  if (config.skip_last && !targets.empty()) {
    summary.skipped.emplace_back(rewrite::describe(*targets.back().node), "the last layer (skip-last)");
    targets.pop_back();
  }
  if (config.skip_first && !targets.empty()) {
    summary.skipped.emplace_back(rewrite::describe(*targets.front().node), "the first layer (skip-first)");
    targets.erase(targets.begin());
  }

  // Global scope: one threshold over the tensors without an override, read where they lie (no copy).
  auto overridden = [&](const Target& t) {
    return config.node_sparsity.count(t.node->name()) || config.op_sparsity.count(t.node->op_type());
  };
  const bool shared_threshold = config.method == Method::Magnitude && config.global;
  // Global scope: one selection over the tensors without an override, read where they lie (no copy). Its
  // histogram round runs first over all of them; its last round runs after every copy (below).
  uint64_t total = 0;
  for (const Target& t : targets) total += shared_threshold && !overridden(t) ? static_cast<uint64_t>(t.weight->constant()->numel()) : 0;
  SmallestZeroing global(static_cast<uint64_t>(std::floor(config.sparsity * static_cast<double>(total))));
  if (shared_threshold) {
    for (const Target& t : targets) {
      if (!overridden(t)) for_each_block(float_payload(*t.weight->constant()), [&](size_t, std::span<const float> values) { global.histogram(values); });
    }
  }
  struct Finish {
    std::span<float> values;
    size_t record;
  };
  std::vector<Finish> global_finish;

  // One tensor at a time: the pruned copy replaces the original before the next is made, so the old
  // weights' pages can go back to the kernel (io::load_model) and the peak is one model plus one tensor.
  for (const Target& t : targets) {
    const ir::Tensor& weight = *t.weight->constant();
    const ir::Bytes from = float_payload(weight);
    const size_t n = from.size() / sizeof(float);
    exec::Array pruned = exec::Array::uninitialized_lasting(ir::dtype::kFloat, weight.dims());
    const std::span<float> to(pruned.data<float>(), n);
    int64_t zeros_before = 0, zeros_after = 0;
    if (shared_threshold && !overridden(t)) {
      for_each_block(from, [&](size_t first, std::span<const float> values) { zeros_before += global.copy(values, to.subspan(first, values.size())); });
      global_finish.push_back({to, summary.tensors.size()});  // zeros_after: counted by the last round
    } else if (config.method == Method::NM) {
      for_each_block(from, [&](size_t first, std::span<const float> values) { std::copy(values.begin(), values.end(), to.begin() + static_cast<ptrdiff_t>(first)); });
      zeros_before = count_zeros(to);
      prune_n_m(to, weight.dims(), t.axis, config.n, config.m);
      zeros_after = count_zeros(to);
    } else {
      SmallestZeroing layer(static_cast<uint64_t>(std::floor(t.sparsity * static_cast<double>(n))));
      for_each_block(from, [&](size_t, std::span<const float> values) { layer.histogram(values); });
      for_each_block(from, [&](size_t first, std::span<const float> values) { zeros_before += layer.copy(values, to.subspan(first, values.size())); });
      zeros_after = layer.finish(to);
    }

    TensorRecord r;
    r.node = rewrite::describe(*t.node);
    r.op_type = t.node->op_type();
    r.tensor = t.weight->name();
    r.elements = static_cast<int64_t>(n);
    r.zeros_before = zeros_before;
    r.zeros_after = zeros_after;
    r.target = config.method == Method::NM ? 1.0 - static_cast<double>(config.n) / static_cast<double>(config.m)
               : shared_threshold && !overridden(t) ? config.sparsity
                                                    : t.sparsity;
    if (config.method == Method::NM) r.axis = static_cast<int64_t>(t.axis);
    summary.elements += r.elements;
    summary.zeros_before += r.zeros_before;
    summary.tensors.push_back(r);
    ir::Value* old = t.weight;
    // The buffer moves into the graph's tensor; `to` still points at it for the global scope's last round.
    t.node->set_input(1, rewrite::add_constant(graph, old->name(), std::move(pruned)));
    rewrite::remove_unused_weights(graph, {old});
  }
  // The global scope's last round, in tensor order: the values left in the selected bucket.
  for (const Finish& f : global_finish) summary.tensors[f.record].zeros_after = global.finish(f.values);
  for (const TensorRecord& r : summary.tensors) summary.zeros_after += r.zeros_after;
  return summary;
}

nlohmann::json to_json(const PruneSummary& s, const PruneConfig& config) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const TensorRecord& r : s.tensors) {
    nlohmann::json t = {{"node", r.node},       {"op_type", r.op_type},
                        {"tensor", r.tensor},   {"elements", r.elements},
                        {"target", r.target},   {"sparsity_before", r.elements ? double(r.zeros_before) / double(r.elements) : 0.0},
                        {"sparsity", r.elements ? double(r.zeros_after) / double(r.elements) : 0.0}};
    if (r.axis >= 0) t["axis"] = r.axis;
    tensors.push_back(std::move(t));
  }
  nlohmann::json skipped = nlohmann::json::array();
  for (const auto& [node, why] : s.skipped) skipped.push_back({{"node", node}, {"reason", why}});
  nlohmann::json j = {
      {"method", config.method == Method::NM ? "nm" : "magnitude"},
      {"tensors", tensors},
      {"skipped", skipped},
      {"pruned_elements", s.elements},
      {"sparsity_of_pruned_tensors", s.elements ? double(s.zeros_after) / double(s.elements) : 0.0},
      {"note", "unstructured zeros keep the dense size of the file; they pay off after compression (see zstd_bytes) "
               "or on sparse kernels (N:M on sparse tensor cores)"},
  };
  if (config.method == Method::NM) j["pattern"] = fmt::format("{}:{}", config.n, config.m);
  else j["scope"] = config.global ? "global" : "layer";
  return j;
}

}  // namespace mopt::prune
