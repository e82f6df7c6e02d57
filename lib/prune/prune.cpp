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

constexpr size_t kBlockFloats = 64 << 10;  // 256 KB blocks: a block and its pruned copy stay in the cache

// Calls fn(first, values) over a float payload in order, in blocks of kBlockFloats (read from the file
// when the payload lies in the mapped model, so the weight being replaced is never faulted in).
void for_each_block(const ir::Bytes& bytes, const std::function<void(size_t, std::span<const float>)>& fn) {
  for_each_float_block(bytes.span(), kBlockFloats, fn);
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

MagnitudeSelection::MagnitudeSelection(uint64_t count) : count_(count), histogram_(65536) {}

int64_t MagnitudeSelection::histogram(std::span<const float> values) {
  total_ += values.size();
  int64_t zeros = 0;
  for (float v : values) {
    const uint32_t bits = magnitude_bits(v);
    ++histogram_[bits >> 16];
    zeros += bits == 0;
  }
  return zeros;
}

void MagnitudeSelection::select_bucket() {
  if (selected_) return;
  selected_ = true;
  count_ = std::min(count_, total_);
  if (count_ > 0) high_ = bucket_reaching(histogram_, count_, below_);
  std::fill(histogram_.begin(), histogram_.end(), 0);
}

void MagnitudeSelection::refine(std::span<const float> values) {
  select_bucket();
  if (count_ == 0) return;
  for (float v : values) {
    const uint32_t bits = magnitude_bits(v);
    if ((bits >> 16) == high_) ++histogram_[bits & 0xffffu];
  }
}

Cut MagnitudeSelection::cut() {
  select_bucket();
  if (count_ == 0) return {};  // threshold 0: nothing is below it
  uint64_t below = below_;
  const uint32_t low = bucket_reaching(histogram_, count_, below);
  return {(high_ << 16) | low, static_cast<int64_t>(count_ - below)};
}

int64_t copy_pruned(std::span<const float> from, std::span<float> to, Cut& cut) {
  // Branch-free over the values (it vectorizes); values at the threshold are rare and handled after.
  const uint32_t threshold = cut.threshold_bits;
  int64_t at_threshold = 0, zeros = 0;
  for (size_t i = 0; i < from.size(); ++i) {
    const uint32_t bits = magnitude_bits(from[i]);
    to[i] = bits < threshold ? 0.0f : from[i];
    at_threshold += bits == threshold;
    zeros += bits < threshold || bits == 0;
  }
  if (at_threshold == 0 || cut.ties <= 0) return zeros;
  for (size_t i = 0; i < to.size() && cut.ties > 0; ++i) {
    if (magnitude_bits(to[i]) == threshold) {
      zeros += threshold != 0;  // a zero at a zero threshold was counted already
      to[i] = 0.0f, --cut.ties;
    }
  }
  return zeros;
}

void zero_smallest(std::span<float> values, int64_t count) {
  MagnitudeSelection selection(static_cast<uint64_t>(std::max<int64_t>(count, 0)));
  selection.histogram(values);
  selection.refine(values);
  Cut cut = selection.cut();
  copy_pruned(values, values, cut);
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

namespace {
// The float32 payload `source` with `cut` applied, made while it is read: a writer streams it block by
// block to the file, so a pruned model costs no memory for its new weights (ir::Bytes::produced).
ir::Bytes pruned_payload(const ir::Bytes& source, Cut cut) {
  return ir::Bytes::produced(source.size(), [source, cut](const ir::ByteSink& sink) {
    Cut left = cut;
    std::vector<float> out(std::min(source.size() / sizeof(float), kBlockFloats));
    for_each_block(source, [&](size_t, std::span<const float> values) {
      copy_pruned(values, std::span(out).first(values.size()), left);
      sink(std::as_bytes(std::span(out).first(values.size())));
    });
  });
}
}  // namespace

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

  // Global scope: one selection over the tensors without an override, each round over all of them in
  // order, read where they lie (no copy).
  auto overridden = [&](const Target& t) {
    return config.node_sparsity.count(t.node->name()) || config.op_sparsity.count(t.node->op_type());
  };
  const bool shared_threshold = config.method == Method::Magnitude && config.global;
  auto in_global = [&](const Target& t) { return shared_threshold && !overridden(t); };
  uint64_t total = 0;
  for (const Target& t : targets) total += in_global(t) ? static_cast<uint64_t>(t.weight->constant()->numel()) : 0;
  MagnitudeSelection global(static_cast<uint64_t>(std::floor(config.sparsity * static_cast<double>(total))));
  std::vector<int64_t> global_zeros_before(targets.size());  // by target
  Cut global_cut;
  if (total > 0) {
    for (const Target& t : targets) {
      if (in_global(t)) for_each_block(ir::float32_payload(*t.weight->constant()), [&](size_t, std::span<const float> v) { global_zeros_before[static_cast<size_t>(&t - targets.data())] += global.histogram(v); });
    }
    for (const Target& t : targets) {
      if (in_global(t)) for_each_block(ir::float32_payload(*t.weight->constant()), [&](size_t, std::span<const float> v) { global.refine(v); });
    }
    global_cut = global.cut();
  }

  for (const Target& t : targets) {
    const ir::Tensor& weight = *t.weight->constant();
    const ir::Bytes from = ir::float32_payload(weight);
    const size_t n = from.size() / sizeof(float);
    int64_t zeros_before = 0, zeros_after = 0;
    ir::Tensor pruned;
    if (config.method == Method::NM) {
      exec::Array values = exec::Array::uninitialized_lasting(ir::dtype::kFloat, weight.dims());
      const std::span<float> to(values.data<float>(), n);
      for_each_block(from, [&](size_t first, std::span<const float> block) { std::copy(block.begin(), block.end(), to.begin() + static_cast<ptrdiff_t>(first)); });
      zeros_before = count_zeros(to);
      prune_n_m(to, weight.dims(), t.axis, config.n, config.m);
      zeros_after = count_zeros(to);
      pruned = std::move(values).into_tensor(t.weight->name());
    } else {
      Cut cut;
      if (in_global(t)) {
        // The ties left to this tensor are those the tensors before it did not take: count them here.
        zeros_before = global_zeros_before[static_cast<size_t>(&t - targets.data())];
        cut = global_cut;
        std::vector<float> scratch(std::min<size_t>(n, kBlockFloats));
        for_each_block(from, [&](size_t, std::span<const float> block) { zeros_after += copy_pruned(block, std::span(scratch).first(block.size()), global_cut); });
      } else {
        MagnitudeSelection layer(static_cast<uint64_t>(std::floor(t.sparsity * static_cast<double>(n))));
        for_each_block(from, [&](size_t, std::span<const float> block) { zeros_before += layer.histogram(block); });
        for_each_block(from, [&](size_t, std::span<const float> block) { layer.refine(block); });
        cut = layer.cut();
        // The cut zeroes the count smallest: the zeros first, then as many more as count exceeds them.
        zeros_after = std::max(zeros_before, static_cast<int64_t>(layer.count()));
      }
      pruned.mutable_proto().set_data_type(ir::dtype::kFloat);
      for (int64_t d : weight.dims()) pruned.mutable_proto().add_dims(d);
      pruned.set_raw(pruned_payload(from, cut));
    }

    TensorRecord r;
    r.node = rewrite::describe(*t.node);
    r.op_type = t.node->op_type();
    r.tensor = t.weight->name();
    r.elements = static_cast<int64_t>(n);
    r.zeros_before = zeros_before;
    r.zeros_after = zeros_after;
    r.target = config.method == Method::NM ? 1.0 - static_cast<double>(config.n) / static_cast<double>(config.m)
               : in_global(t)                ? config.sparsity
                                             : t.sparsity;
    if (config.method == Method::NM) r.axis = static_cast<int64_t>(t.axis);
    summary.elements += r.elements;
    summary.zeros_before += r.zeros_before;
    summary.tensors.push_back(r);
    ir::Value* old = t.weight;
    t.node->set_input(1, rewrite::add_constant(graph, old->name(), std::move(pruned)));
    rewrite::remove_unused_weights(graph, {old});
  }
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
