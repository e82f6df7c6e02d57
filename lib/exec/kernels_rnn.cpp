// Recurrent kernels: RNN, GRU and LSTM (forward, reverse, bidirectional; sequence_lens; initial states;
// LSTM peepholes, input_forget and clip; layout 0 and 1). The input projection of all time steps is one
// GEMM; each step adds a GEMM with the recurrence weights.
#include <fmt/format.h>

#include <cmath>

#include "exec/dispatch.h"
#include "exec/gemm.h"
#include "exec/kernel.h"

namespace mopt::exec {
namespace {

constexpr int64_t kLatest = 21;
enum class Cell { RNN, GRU, LSTM };

using Activation = float (*)(float);
float sigmoid(float v) { return v >= 0 ? 1.0f / (1.0f + std::exp(-v)) : std::exp(v) / (1.0f + std::exp(v)); }
float tanh_f(float v) { return std::tanh(v); }
float relu(float v) { return v > 0 ? v : 0.0f; }

Activation activation(const KernelContext& ctx, const std::string& name) {
  if (name == "Sigmoid") return sigmoid;
  if (name == "Tanh") return tanh_f;
  if (name == "Relu") return relu;
  ctx.error(fmt::format("not supported: recurrent activation '{}'", name));
}

void recurrent_kernel(KernelContext& ctx, Cell cell) {
  const int64_t gates = cell == Cell::LSTM ? 4 : (cell == Cell::GRU ? 3 : 1);
  const Array& x_in = ctx.input(0);
  const Array& w = ctx.input(1);
  const Array& r = ctx.input(2);
  if (x_in.dtype() != ir::dtype::kFloat) ctx.error("not supported: recurrent ops on non-float32 data");
  int64_t layout = ctx.attr_int("layout", 0);
  if (x_in.rank() != 3) ctx.error("X must be 3-D");
  if (w.rank() != 3 || r.rank() != 3) ctx.error("W and R must be 3-D");
  int64_t seq = layout ? x_in.dim(1) : x_in.dim(0), batch = layout ? x_in.dim(0) : x_in.dim(1), input = x_in.dim(2);
  int64_t hidden = ctx.attr_int("hidden_size", r.dim(2));
  std::string direction = ctx.attr_string("direction", "forward");
  int64_t dirs = direction == "bidirectional" ? 2 : 1;
  if (w.dim(0) != dirs || w.dim(1) != gates * hidden || w.dim(2) != input) ctx.error("W has the wrong shape");
  // Every optional input is indexed by direction, batch and hidden size below: its shape must be exact.
  auto expect = [&](const Array* a, const Shape& shape, const char* name) {
    if (a == nullptr) return;
    if (a->dtype() != ir::dtype::kFloat) ctx.error(fmt::format("{} must be float32", name));
    if (a->shape() != shape)
      ctx.error(fmt::format("{} has shape {}; it must be {}", name, shape_string(a->shape()), shape_string(shape)));
  };
  expect(&w, w.shape(), "W");
  expect(&r, {dirs, gates * hidden, hidden}, "R");
  expect(ctx.optional_input(3), {dirs, 2 * gates * hidden}, "B");
  expect(ctx.optional_input(5), {dirs, batch, hidden}, "initial_h");
  if (cell == Cell::LSTM) {
    expect(ctx.optional_input(6), {dirs, batch, hidden}, "initial_c");
    expect(ctx.optional_input(7), {dirs, 3 * hidden}, "P");
  }
  if (const Array* sl = ctx.optional_input(4); sl && sl->numel() != batch)
    ctx.error(fmt::format("sequence_lens holds {} entries for a batch of {}", sl->numel(), batch));
  float clip = ctx.attr_float("clip", 0.0f);
  bool input_forget = ctx.attr_int("input_forget", 0) != 0;
  bool linear_before_reset = ctx.attr_int("linear_before_reset", 0) != 0;

  std::vector<std::string> names = ctx.attr_strings("activations");
  size_t per_dir = cell == Cell::LSTM ? 3 : (cell == Cell::GRU ? 2 : 1);
  if (names.empty()) {
    if (cell == Cell::LSTM) names = {"Sigmoid", "Tanh", "Tanh"};
    else if (cell == Cell::GRU) names = {"Sigmoid", "Tanh"};
    else names = {"Tanh"};
  }
  if (names.size() == per_dir && dirs == 2) names.insert(names.end(), names.begin(), names.end());
  if (names.size() != per_dir * static_cast<size_t>(dirs)) ctx.error("wrong number of activations");
  if (ctx.has_attr("activation_alpha") || ctx.has_attr("activation_beta")) ctx.error("not supported: activation_alpha/beta");

  // X in [seq, batch, input] order.
  Array x = x_in;
  if (layout) {
    x = Array(x_in.dtype(), {seq, batch, input});
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t t = 0; t < seq; ++t)
        std::copy_n(x_in.data<float>() + (b * seq + t) * input, input, x.data<float>() + (t * batch + b) * input);
  }
  std::vector<int64_t> lens(static_cast<size_t>(batch), seq);
  if (const Array* sl = ctx.optional_input(4)) lens = sl->to_int64s();
  for (int64_t l : lens) {
    if (l < 0 || l > seq) ctx.error("sequence_lens entry out of range");
  }
  const Array* bias = ctx.optional_input(3);
  const Array* h0 = ctx.optional_input(5);
  const Array* c0 = cell == Cell::LSTM ? ctx.optional_input(6) : nullptr;
  const Array* peep = cell == Cell::LSTM ? ctx.optional_input(7) : nullptr;

  Array y(x.dtype(), {seq, dirs, batch, hidden});
  Array y_h(x.dtype(), {dirs, batch, hidden});
  Array y_c(x.dtype(), {dirs, batch, hidden});
  const int64_t gh = gates * hidden;
  std::vector<float> xw(static_cast<size_t>(seq * batch * gh));
  std::vector<float> hr(static_cast<size_t>(batch * gh));
  std::vector<float> h(static_cast<size_t>(batch * hidden)), c(static_cast<size_t>(batch * hidden));
  std::vector<float> rh(static_cast<size_t>(batch * hidden));  // GRU: r * H_prev
  for (int64_t dir = 0; dir < dirs; ++dir) {
    bool reverse = direction == "reverse" || dir == 1;
    Activation f = activation(ctx, names[static_cast<size_t>(dir) * per_dir]);
    Activation g = per_dir > 1 ? activation(ctx, names[static_cast<size_t>(dir) * per_dir + 1]) : nullptr;
    Activation hact = per_dir > 2 ? activation(ctx, names[static_cast<size_t>(dir) * per_dir + 2]) : nullptr;
    const float* wd = w.data<float>() + dir * gh * input;
    const float* rd = r.data<float>() + dir * gh * hidden;
    const float* wb = bias ? bias->data<float>() + dir * 2 * gh : nullptr;
    const float* rb = wb ? wb + gh : nullptr;
    const float* pd = peep ? peep->data<float>() + dir * 3 * hidden : nullptr;
    // All input projections at once: [seq*batch, input] x W^T.
    gemm<float>(false, true, seq * batch, gh, input, 1.0f, x.data<float>(), input, wd, input, 0.0f, xw.data(), gh);
    for (int64_t i = 0; i < batch * hidden; ++i) {
      h[static_cast<size_t>(i)] = h0 ? h0->data<float>()[dir * batch * hidden + i] : 0.0f;
      c[static_cast<size_t>(i)] = c0 ? c0->data<float>()[dir * batch * hidden + i] : 0.0f;
    }
    for (int64_t step = 0; step < seq; ++step) {
      // Recurrence: H_prev x R^T (for GRU without linear_before_reset only the z and r gates here).
      int64_t rec_gates = (cell == Cell::GRU && !linear_before_reset) ? 2 : gates;
      gemm<float>(false, true, batch, rec_gates * hidden, hidden, 1.0f, h.data(), hidden, rd, hidden, 0.0f, hr.data(), gh);
      for (int64_t b = 0; b < batch; ++b) {
        int64_t len = lens[static_cast<size_t>(b)];
        if (step >= len) continue;
        int64_t t = reverse ? len - 1 - step : step;
        const float* xg = xw.data() + (t * batch + b) * gh;
        float* hg = hr.data() + b * gh;
        auto pre = [&](int64_t gate, int64_t j, bool with_rec) {
          float v = xg[gate * hidden + j] + (with_rec ? hg[gate * hidden + j] : 0.0f);
          if (wb) v += wb[gate * hidden + j] + (with_rec ? rb[gate * hidden + j] : 0.0f);
          return v;
        };
        auto clipped = [&](float v) { return clip > 0 ? std::clamp(v, -clip, clip) : v; };
        float* hb = h.data() + b * hidden;
        float* cb = c.data() + b * hidden;
        if (cell == Cell::RNN) {
          for (int64_t j = 0; j < hidden; ++j) hb[j] = f(clipped(pre(0, j, true)));
        } else if (cell == Cell::LSTM) {
          for (int64_t j = 0; j < hidden; ++j) {  // gate order i, o, f, c
            float cp = cb[j];
            float ig = f(clipped(pre(0, j, true) + (pd ? pd[j] * cp : 0.0f)));
            float fg = input_forget ? 1.0f - ig : f(clipped(pre(2, j, true) + (pd ? pd[2 * hidden + j] * cp : 0.0f)));
            float cand = g(clipped(pre(3, j, true)));
            float cn = fg * cp + ig * cand;
            float og = f(clipped(pre(1, j, true) + (pd ? pd[hidden + j] * cn : 0.0f)));
            cb[j] = cn;
            hb[j] = og * hact(cn);
          }
        } else {  // GRU, gate order z, r, h
          std::vector<float> z(static_cast<size_t>(hidden)), rg(static_cast<size_t>(hidden));
          for (int64_t j = 0; j < hidden; ++j) {
            z[static_cast<size_t>(j)] = f(clipped(pre(0, j, true)));
            rg[static_cast<size_t>(j)] = f(clipped(pre(1, j, true)));
          }
          std::vector<float> cand(static_cast<size_t>(hidden));
          if (linear_before_reset) {
            for (int64_t j = 0; j < hidden; ++j) {
              float rec = hg[2 * hidden + j] + (rb ? rb[2 * hidden + j] : 0.0f);
              cand[static_cast<size_t>(j)] = xg[2 * hidden + j] + (wb ? wb[2 * hidden + j] : 0.0f) + rg[static_cast<size_t>(j)] * rec;
            }
          } else {
            for (int64_t j = 0; j < hidden; ++j) rh[static_cast<size_t>(j)] = rg[static_cast<size_t>(j)] * hb[j];
            for (int64_t j = 0; j < hidden; ++j) {
              float rec = 0;
              const float* row = rd + (2 * hidden + j) * hidden;
              for (int64_t k = 0; k < hidden; ++k) rec += rh[static_cast<size_t>(k)] * row[k];
              cand[static_cast<size_t>(j)] = xg[2 * hidden + j] + (wb ? wb[2 * hidden + j] + rb[2 * hidden + j] : 0.0f) + rec;
            }
          }
          for (int64_t j = 0; j < hidden; ++j) {
            float hn = g(clipped(cand[static_cast<size_t>(j)]));
            float zj = z[static_cast<size_t>(j)];
            hb[j] = (1.0f - zj) * hn + zj * hb[j];
          }
        }
        std::copy_n(hb, hidden, y.data<float>() + ((t * dirs + dir) * batch + b) * hidden);
      }
    }
    std::copy(h.begin(), h.end(), y_h.data<float>() + dir * batch * hidden);
    std::copy(c.begin(), c.end(), y_c.data<float>() + dir * batch * hidden);
  }
  if (layout) {  // Y as [batch, seq, dirs, hidden], states as [batch, dirs, hidden]
    Array yl(y.dtype(), {batch, seq, dirs, hidden});
    for (int64_t t = 0; t < seq; ++t)
      for (int64_t dd = 0; dd < dirs; ++dd)
        for (int64_t b = 0; b < batch; ++b)
          std::copy_n(y.data<float>() + ((t * dirs + dd) * batch + b) * hidden, hidden, yl.data<float>() + ((b * seq + t) * dirs + dd) * hidden);
    auto states = [&](const Array& s) {
      Array o(s.dtype(), {batch, dirs, hidden});
      for (int64_t dd = 0; dd < dirs; ++dd)
        for (int64_t b = 0; b < batch; ++b)
          std::copy_n(s.data<float>() + (dd * batch + b) * hidden, hidden, o.data<float>() + (b * dirs + dd) * hidden);
      return o;
    };
    y = yl;
    y_h = states(y_h);
    y_c = states(y_c);
  }
  ctx.set_output(0, std::move(y));
  ctx.set_output(1, std::move(y_h));
  if (cell == Cell::LSTM) ctx.set_output(2, std::move(y_c));
}

}  // namespace

void register_rnn_kernels(KernelRegistry& r) {
  r.add({"", "RNN", 7, kLatest, [](KernelContext& ctx) { recurrent_kernel(ctx, Cell::RNN); }});
  r.add({"", "GRU", 7, kLatest, [](KernelContext& ctx) { recurrent_kernel(ctx, Cell::GRU); }});
  r.add({"", "LSTM", 7, kLatest, [](KernelContext& ctx) { recurrent_kernel(ctx, Cell::LSTM); }});
}

}  // namespace mopt::exec
