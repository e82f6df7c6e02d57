// Float Conv, ConvTranspose and MatMul through oneDNN primitives (see onednn.h).
//
// Each problem is planned once and cached: the primitive (JIT code for that shape, on the layouts oneDNN
// prefers, the source's for pointwise convolutions) and the reorders between the executor's arrays (plain
// NC[D]HW, or channels-last N[D]HWC where the executor keeps activations so: exec::Layout) and those layouts.
// Running a convolution is then the input reorder, the convolution and the output reorder, each only where
// the layouts differ (between channels-last convolutions on AVX-512, none);
// a constant weight is reordered on the first run only and kept in the node's state. oneDNN's scratchpad
// and the blocked copies come from the executor's buffer cache, so repeated runs allocate nothing new.
// MatMul runs on the plain row-major layouts, with no reorders.
//
// Threads: Debian builds oneDNN on OpenMP (libgomp), the runtime whose threads the executor's own
// parallel loops use too (parallel.cpp); the executor's thread count is passed to it before each call.
#include "exec/onednn.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "exec/array.h"
#include "exec/parallel.h"
#include "util/error.h"

extern "C" void omp_set_num_threads(int threads);  // libgomp, which parallel.cpp links as well

namespace mopt::exec {
namespace {

using dnnl::memory;
using tag = memory::format_tag;

std::atomic<bool> g_enabled{true};
std::atomic<int64_t> g_calls{0};
std::atomic<int64_t> g_weight_reorders{0};
// Below this many multiply-adds oneDNN's fixed cost per call (reorders, a parallel region) is more than
// the convolution: silero_vad's 1-D convolutions of 128 to 264K took 0.36 ms through it and 0.25 ms in
// the executor's own loops; squeezenet's smallest (1.5M) are faster through oneDNN.
std::atomic<int64_t> g_min_multiply_adds{int64_t{1} << 19};

// In double: the product of a malformed model's dims may not fit in 64 bits.
double multiply_adds(const ConvProblem& p, bool transposed) {
  double count = static_cast<double>(p.n) * static_cast<double>(p.m) * static_cast<double>(p.c / p.group);
  for (int i = 0; i < 3; ++i) count *= static_cast<double>(p.g.kernel[i]) * static_cast<double>(transposed ? p.g.in[i] : p.g.out[i]);
  return count;
}

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Plain (ONNX) and channels-last activation layouts by spatial rank 1..3.
tag activation_tag(int spatial) { return spatial == 1 ? tag::ncw : spatial == 2 ? tag::nchw : tag::ncdhw; }
tag channels_last_tag(int spatial) { return spatial == 1 ? tag::nwc : spatial == 2 ? tag::nhwc : tag::ndhwc; }
tag weight_tag(int spatial, bool grouped) {
  if (grouped) return spatial == 1 ? tag::goiw : spatial == 2 ? tag::goihw : tag::goidhw;
  return spatial == 1 ? tag::oiw : spatial == 2 ? tag::oihw : tag::oidhw;
}

// ONNX ConvTranspose weights are [C_in, M/group, k...], that is (g, i, o, k...) for oneDNN's (g, o, i, k...)
// dims; oneDNN's C++ API names no 1-D io tag, so the layout is given by strides for every rank.
memory::desc transposed_weight_desc(const memory::dims& dims, bool grouped) {
  const size_t first = grouped ? 1 : 0;  // index of the o dim; i follows it
  memory::dim kernel = 1;
  for (size_t i = first + 2; i < dims.size(); ++i) kernel *= dims[i];
  memory::dims strides(dims.size());
  for (size_t i = dims.size(); i-- > first + 2;) strides[i] = i + 1 == dims.size() ? 1 : strides[i + 1] * dims[i + 1];
  strides[first] = kernel;                             // o
  strides[first + 1] = dims[first] * kernel;           // i
  if (grouped) strides[0] = dims[1] * dims[2] * kernel;  // g
  return memory::desc(dims, memory::data_type::f32, strides);
}

memory::dims spatial_dims(const int64_t (&v)[3], int spatial, int64_t minus = 0) {
  memory::dims d;
  for (int i = 3 - spatial; i < 3; ++i) d.push_back(v[i] - minus);
  return d;
}

// A planned convolution: the primitive and the reorders to and from the layouts it chose. The "plain"
// descriptors are the layouts the executor's arrays have (src_plain and dst_plain may be channels-last).
struct Plan {
  memory::desc src_plain, weights_plain, bias_desc, dst_plain;
  memory::desc src, weights, dst, scratchpad;
  dnnl::primitive conv;
  std::optional<dnnl::reorder> src_in, weights_in, dst_out;
  Layout dst_layout = Layout::kPlain;
};

// The executor's layout for the destination: the primitive's own when that is plain, or channels-last and
// allowed (no reorder); otherwise channels-last where allowed, plain where not.
template <typename PrimitiveDesc>
void finish_plan(Plan& plan, const PrimitiveDesc& pd, const ConvProblem& p, const memory::dims& dst_dims) {
  dnnl::engine& engine = cpu_engine();
  plan.src = pd.src_desc();
  plan.weights = pd.weights_desc();
  plan.dst = pd.dst_desc();
  plan.scratchpad = pd.scratchpad_desc();
  const memory::desc plain(dst_dims, memory::data_type::f32, activation_tag(p.g.spatial));
  const memory::desc channels_last(dst_dims, memory::data_type::f32, channels_last_tag(p.g.spatial));
  const bool stays_channels_last = p.dst_channels_last_allowed && plan.dst != plain;
  plan.dst_plain = stays_channels_last ? channels_last : plain;
  plan.dst_layout = stays_channels_last ? Layout::kChannelsLast : Layout::kPlain;
  if (plan.src != plan.src_plain) plan.src_in = dnnl::reorder(dnnl::reorder::primitive_desc(engine, plan.src_plain, engine, plan.src));
  if (plan.weights != plan.weights_plain)
    plan.weights_in = dnnl::reorder(dnnl::reorder::primitive_desc(engine, plan.weights_plain, engine, plan.weights));
  if (plan.dst != plan.dst_plain) plan.dst_out = dnnl::reorder(dnnl::reorder::primitive_desc(engine, plan.dst, engine, plan.dst_plain));
}

// The primitive oneDNN picks for the problem, on the layouts it prefers, or null if it has none.
std::shared_ptr<Plan> make_plan(const ConvProblem& p, bool transposed, bool has_bias) {
  auto plan = std::make_shared<Plan>();
  const int s = p.g.spatial;
  const bool grouped = p.group > 1;
  const memory::dim g = p.group;
  // Transposed: the source is the small grid (`out`) and the destination the large image (`in`).
  memory::dims src_dims{p.n, p.c}, dst_dims{p.n, p.m};
  for (memory::dim d : spatial_dims(transposed ? p.g.out : p.g.in, s)) src_dims.push_back(d);
  for (memory::dim d : spatial_dims(transposed ? p.g.in : p.g.out, s)) dst_dims.push_back(d);
  memory::dims weight_dims = grouped ? memory::dims{g, p.m / g, p.c / g} : memory::dims{p.m, p.c};
  for (memory::dim d : spatial_dims(p.g.kernel, s)) weight_dims.push_back(d);
  memory::dims strides = spatial_dims(p.g.stride, s), dilates = spatial_dims(p.g.dilation, s, 1);
  memory::dims pad_l = spatial_dims(p.g.pad_begin, s), pad_r = spatial_dims(p.g.pad_end, s);
  if (transposed) {
    // ONNX folds output_padding (and an output_shape past the kernel's reach) into the image size;
    // oneDNN wants pads that produce it exactly: (grid - 1) * stride + window - pad_l - pad_r = image.
    for (size_t i = 0; i < pad_r.size(); ++i) {
      const int slot = 3 - s + static_cast<int>(i);
      const int64_t window = (p.g.kernel[slot] - 1) * p.g.dilation[slot] + 1;
      pad_r[i] = (p.g.out[slot] - 1) * p.g.stride[slot] + window - p.g.pad_begin[slot] - p.g.in[slot];
      if (pad_r[i] < 0) return nullptr;  // zeros past the kernel's reach: the kernel's own path writes them
    }
  }
  const memory::data_type f32 = memory::data_type::f32;
  const tag src_tag = p.src_channels_last ? channels_last_tag(s) : activation_tag(s);
  plan->src_plain = memory::desc(src_dims, f32, src_tag);
  plan->weights_plain = transposed ? transposed_weight_desc(weight_dims, grouped) : memory::desc(weight_dims, f32, weight_tag(s, grouped));
  plan->bias_desc = has_bias ? memory::desc({p.m}, f32, tag::x) : memory::desc();
  // A pointwise convolution (1x1 window, stride 1, no pads, one group) is a GEMM per image, W[m, c] x
  // X[c, pixels] over NC[D]HW or X[pixels, c] x W^T over channels-last, that needs no other layout: planned
  // on the source's layout for source and destination, oneDNN runs it as fast as on its blocked layout and
  // without reordering either (squeezenet's activation reorders fell from 2.6 to 1.0 ms a run, ppocrv4_det's
  // from 17 to 10 ms). Other convolutions get the layouts oneDNN prefers: on plain ones it would fall back
  // to im2col + GEMM, slower than the reorders.
  bool pointwise = !transposed && p.group == 1;
  for (int i = 0; i < 3; ++i) pointwise = pointwise && p.g.kernel[i] == 1 && p.g.stride[i] == 1 && p.g.pad_begin[i] == 0 && p.g.pad_end[i] == 0;
  const tag activations = pointwise ? src_tag : tag::any;
  const memory::desc src_any(src_dims, f32, activations), dst_any(dst_dims, f32, activations), weights_any(weight_dims, f32, tag::any);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // scratch from the buffer cache; plans run concurrently
  try {
    if (transposed) {
      dnnl::deconvolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::deconvolution_direct,
                                             src_any, weights_any, plan->bias_desc, dst_any, strides, dilates, pad_l, pad_r);
      dnnl::deconvolution_forward::primitive_desc pd(desc, attr, cpu_engine());
      plan->conv = dnnl::deconvolution_forward(pd);
      finish_plan(*plan, pd, p, dst_dims);
    } else {
      dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_any,
                                           weights_any, plan->bias_desc, dst_any, strides, dilates, pad_l, pad_r);
      dnnl::convolution_forward::primitive_desc pd(desc, attr, cpu_engine());
      plan->conv = dnnl::convolution_forward(pd);
      finish_plan(*plan, pd, p, dst_dims);
    }
  } catch (const dnnl::error&) {
    return nullptr;  // no implementation for this problem
  }
  return plan;
}

// Plans by problem and thread count (oneDNN splits work by the thread count it sees when planning); null
// for a problem oneDNN declined, so that it is not asked again. A model has a few dozen distinct problems;
// a cache is cleared if something ever plans hundreds.
template <typename P, typename Make>
std::shared_ptr<const P> cached_plan(std::map<std::vector<int64_t>, std::shared_ptr<const P>>& plans, std::mutex& mutex,
                                     std::vector<int64_t> key, Make make) {
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = plans.find(key); it != plans.end()) return it->second;
  }
  std::shared_ptr<const P> plan = make();
  std::lock_guard<std::mutex> lock(mutex);
  if (plans.size() >= 512) plans.clear();
  plans.emplace(std::move(key), plan);
  return plan;
}

std::shared_ptr<const Plan> plan_for(const ConvProblem& p, bool transposed, bool has_bias, int threads) {
  std::vector<int64_t> key{transposed, has_bias, threads, p.g.spatial, p.n, p.c, p.m, p.group, p.src_channels_last, p.dst_channels_last_allowed};
  for (const int64_t* v : {p.g.in, p.g.kernel, p.g.out, p.g.stride, p.g.dilation, p.g.pad_begin, p.g.pad_end}) key.insert(key.end(), v, v + 3);
  static std::mutex mutex;
  static std::map<std::vector<int64_t>, std::shared_ptr<const Plan>> plans;
  return cached_plan(plans, mutex, std::move(key), [&] { return make_plan(p, transposed, has_bias); });
}

// A constant weight reordered for one plan: what a Conv node's state holds (see dnnl_conv).
struct ReorderedWeights {
  std::shared_ptr<const Plan> plan;  // held, so that another plan cannot reuse its address
  const float* source = nullptr;
  Array data;
};

// Memory for `desc` in a buffer from the executor's buffer cache, held by `keep` until the call ends.
memory staged(const memory::desc& desc, std::vector<Array>& keep) {
  keep.push_back(Array::uninitialized(ir::dtype::kUint8, {static_cast<int64_t>(std::max<size_t>(desc.get_size(), 1))}));
  return memory(desc, cpu_engine(), keep.back().data<uint8_t>());
}

std::optional<Layout> run(const ConvProblem& p, bool transposed, const float* x, const float* w, const float* bias, float* y,
                          std::shared_ptr<void>* weight_state) {
  if (!g_enabled.load(std::memory_order_relaxed) || p.g.spatial < 1 || p.g.spatial > 3 || p.group < 1) return std::nullopt;
  if (transposed && (p.src_channels_last || p.dst_channels_last_allowed)) throw std::logic_error("dnnl ConvTranspose: plain layouts only");
  for (int64_t d : {p.n, p.c, p.m}) {
    if (d <= 0) return std::nullopt;
  }
  for (int i = 0; i < 3; ++i) {
    if (p.g.in[i] <= 0 || p.g.out[i] <= 0) return std::nullopt;
  }
  if (multiply_adds(p, transposed) < static_cast<double>(g_min_multiply_adds.load(std::memory_order_relaxed))) return std::nullopt;
  const int threads = thread_count();
  std::shared_ptr<const Plan> plan = plan_for(p, transposed, bias != nullptr, threads);
  if (!plan) return std::nullopt;
  dnnl::engine& engine = cpu_engine();
  dnnl::stream stream(engine);
  omp_set_num_threads(threads);
  std::vector<Array> keep;
  keep.reserve(4);
  memory src_plain(plan->src_plain, engine, const_cast<float*>(x));
  memory weights_plain(plan->weights_plain, engine, const_cast<float*>(w));
  memory dst_plain(plan->dst_plain, engine, y);
  memory src = plan->src_in ? staged(plan->src, keep) : src_plain;
  memory weights = weights_plain;
  bool reorder_weights = plan->weights_in.has_value();
  if (reorder_weights && weight_state) {
    auto* cached = static_cast<ReorderedWeights*>(weight_state->get());
    if (cached && cached->plan == plan && cached->source == w) {
      reorder_weights = false;
    } else {
      auto fresh = std::make_shared<ReorderedWeights>();
      fresh->plan = plan;
      fresh->source = w;
      fresh->data = Array::uninitialized(ir::dtype::kUint8, {static_cast<int64_t>(std::max<size_t>(plan->weights.get_size(), 1))});
      *weight_state = fresh;
      cached = fresh.get();
    }
    weights = memory(plan->weights, engine, cached->data.data<uint8_t>());
  } else if (reorder_weights) {
    weights = staged(plan->weights, keep);
  }
  memory dst = plan->dst_out ? staged(plan->dst, keep) : dst_plain;
  memory scratchpad = staged(plan->scratchpad, keep);
  try {
    if (plan->src_in) plan->src_in->execute(stream, src_plain, src);
    if (reorder_weights) {
      plan->weights_in->execute(stream, weights_plain, weights);
      g_weight_reorders.fetch_add(1, std::memory_order_relaxed);
    }
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst},
                                         {DNNL_ARG_SCRATCHPAD, scratchpad}};
    if (bias) args.emplace(DNNL_ARG_BIAS, memory(plan->bias_desc, engine, const_cast<float*>(bias)));
    plan->conv.execute(stream, args);
    if (plan->dst_out) plan->dst_out->execute(stream, dst, dst_plain);
    stream.wait();
  } catch (const dnnl::error& e) {  // a planned primitive failing to run (out of memory): y is part written
    if (weight_state) weight_state->reset();  // its reorder may not have finished
    fail("oneDNN could not run a {}: {}", transposed ? "ConvTranspose" : "Conv", e.what());
  }
  g_calls.fetch_add(1, std::memory_order_relaxed);
  return plan->dst_layout;
}

// ---- MatMul ----

struct MatMulPlan {
  memory::desc a, b, c, scratchpad;
  dnnl::primitive matmul;
};

// Row-major: the last dim contiguous.
memory::desc row_major(const memory::dims& dims) {
  memory::dims strides(dims.size());
  memory::dim stride = 1;
  for (size_t i = dims.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= dims[i];
  }
  return memory::desc(dims, memory::data_type::f32, strides);
}

std::shared_ptr<const MatMulPlan> make_matmul_plan(const MatMulProblem& p) {
  auto plan = std::make_shared<MatMulPlan>();
  memory::dims a(p.a_batch.begin(), p.a_batch.end()), b(p.b_batch.begin(), p.b_batch.end()), c(p.batch.begin(), p.batch.end());
  a.insert(a.end(), {p.m, p.k});
  b.insert(b.end(), {p.k, p.n});
  c.insert(c.end(), {p.m, p.n});
  plan->a = row_major(a);
  plan->b = row_major(b);
  plan->c = row_major(c);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  try {
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(plan->a, plan->b, plan->c), attr, cpu_engine());
    plan->scratchpad = pd.scratchpad_desc();
    plan->matmul = dnnl::matmul(pd);
  } catch (const dnnl::error&) {
    return nullptr;  // no implementation (a broadcast or a rank it does not take)
  }
  return plan;
}

}  // namespace

bool dnnl_matmul(const MatMulProblem& p, const float* a, const float* b, float* c) {
  if (!g_enabled.load(std::memory_order_relaxed) || p.batch.size() + 2 > DNNL_MAX_NDIMS) return false;
  if (p.a_batch.size() != p.batch.size() || p.b_batch.size() != p.batch.size()) return false;
  double work = static_cast<double>(p.m) * static_cast<double>(p.k) * static_cast<double>(p.n);
  for (int64_t d : p.batch) work *= static_cast<double>(d);
  if (p.m <= 0 || p.k <= 0 || p.n <= 0 || work < static_cast<double>(g_min_multiply_adds.load(std::memory_order_relaxed))) return false;
  for (size_t i = 0; i < p.batch.size(); ++i) {
    if (p.batch[i] <= 0) return false;
  }
  const int threads = thread_count();
  std::vector<int64_t> key{threads, p.m, p.k, p.n};
  for (const std::vector<int64_t>* v : {&p.batch, &p.a_batch, &p.b_batch}) key.insert(key.end(), v->begin(), v->end());
  static std::mutex mutex;
  static std::map<std::vector<int64_t>, std::shared_ptr<const MatMulPlan>> plans;
  std::shared_ptr<const MatMulPlan> plan = cached_plan(plans, mutex, std::move(key), [&] { return make_matmul_plan(p); });
  if (!plan) return false;
  dnnl::engine& engine = cpu_engine();
  dnnl::stream stream(engine);
  omp_set_num_threads(threads);
  std::vector<Array> keep;
  memory scratchpad = staged(plan->scratchpad, keep);
  try {
    plan->matmul.execute(stream, {{DNNL_ARG_SRC, memory(plan->a, engine, const_cast<float*>(a))},
                                  {DNNL_ARG_WEIGHTS, memory(plan->b, engine, const_cast<float*>(b))},
                                  {DNNL_ARG_DST, memory(plan->c, engine, c)},
                                  {DNNL_ARG_SCRATCHPAD, scratchpad}});
    stream.wait();
  } catch (const dnnl::error& e) {
    fail("oneDNN could not run a MatMul: {}", e.what());
  }
  g_calls.fetch_add(1, std::memory_order_relaxed);
  return true;
}

std::optional<Layout> dnnl_conv(const ConvProblem& p, const float* x, const float* w, const float* bias, float* y,
                                std::shared_ptr<void>* weight_state) {
  return run(p, false, x, w, bias, y, weight_state);
}

bool dnnl_conv_transpose(const ConvProblem& p, const float* x, const float* w, const float* bias, float* y,
                         std::shared_ptr<void>* weight_state) {
  return run(p, true, x, w, bias, y, weight_state).has_value();
}

bool dnnl_reorder_layout(const std::vector<int64_t>& shape, bool to_channels_last, const float* in, float* out) {
  if (!g_enabled.load(std::memory_order_relaxed) || shape.size() < 3 || shape.size() > 5) return false;
  for (int64_t d : shape) {
    if (d <= 0) return false;
  }
  const int spatial = static_cast<int>(shape.size()) - 2;
  const memory::dims dims(shape.begin(), shape.end());
  const memory::desc plain(dims, memory::data_type::f32, activation_tag(spatial));
  const memory::desc channels_last(dims, memory::data_type::f32, channels_last_tag(spatial));
  const memory::desc& from_desc = to_channels_last ? plain : channels_last;
  const memory::desc& to_desc = to_channels_last ? channels_last : plain;
  const int threads = thread_count();
  std::vector<int64_t> key{threads, to_channels_last};
  key.insert(key.end(), shape.begin(), shape.end());
  static std::mutex mutex;
  static std::map<std::vector<int64_t>, std::shared_ptr<const dnnl::reorder>> plans;
  std::shared_ptr<const dnnl::reorder> reorder = cached_plan(plans, mutex, std::move(key), [&]() -> std::shared_ptr<const dnnl::reorder> {
    try {
      return std::make_shared<const dnnl::reorder>(dnnl::reorder::primitive_desc(cpu_engine(), from_desc, cpu_engine(), to_desc));
    } catch (const dnnl::error&) {
      return nullptr;
    }
  });
  if (!reorder) return false;
  dnnl::engine& engine = cpu_engine();
  dnnl::stream stream(engine);
  omp_set_num_threads(threads);
  memory from(from_desc, engine, const_cast<float*>(in)), to(to_desc, engine, out);
  try {
    reorder->execute(stream, from, to);
    stream.wait();
  } catch (const dnnl::error& e) {
    fail("oneDNN could not reorder an activation: {}", e.what());
  }
  return true;
}

bool set_dnnl_enabled(bool enabled) { return g_enabled.exchange(enabled); }

int64_t set_dnnl_min_multiply_adds(int64_t count) { return g_min_multiply_adds.exchange(count); }

int64_t dnnl_calls() { return g_calls.load(); }

int64_t dnnl_weight_reorders() { return g_weight_reorders.load(); }

}  // namespace mopt::exec
