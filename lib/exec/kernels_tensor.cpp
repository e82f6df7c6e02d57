// Data-movement kernels: constants, shapes, reshapes, transposes, slicing, gathering, padding, and
// the index-producing ops (ArgMax, TopK, NonZero). They move element bytes and so work on every dtype,
// float16 included, without converting.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "exec/broadcast.h"
#include "exec/dispatch.h"
#include "exec/kernel.h"
#include "exec/parallel.h"

namespace mopt::exec {
namespace {

constexpr int64_t kLatest = 21;
namespace d = ir::dtype;

// Calls f(U{}) with an unsigned integer type as wide as one element, for dtype-agnostic copies.
template <typename F>
decltype(auto) visit_bits(int32_t dtype, F&& f) {
  switch (element_size(dtype)) {
    case 1: return f(uint8_t{});
    case 2: return f(uint16_t{});
    case 4: return f(uint32_t{});
    case 8: return f(uint64_t{});
    default: fail("not supported: {} tensors in the executor", ir::dtype::name(dtype));
  }
}

std::vector<int64_t> strides_of(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
  return st;
}

Array constant_kernel_value(KernelContext& ctx) {
  const ir::Node& n = ctx.node();
  for (const ir::Attribute& a : n.attributes()) {
    const std::string& name = a.name();
    if (name == "value" && a.tensor) return Array::from_tensor(*a.tensor);
    if (name == "value_float") return Array::scalar<float>(d::kFloat, a.proto.f());
    if (name == "value_int") return Array::scalar<int64_t>(d::kInt64, a.proto.i());
    if (name == "value_floats") return Array::vector<float>(d::kFloat, {a.proto.floats().begin(), a.proto.floats().end()});
    if (name == "value_ints") return Array::vector<int64_t>(d::kInt64, {a.proto.ints().begin(), a.proto.ints().end()});
  }
  ctx.error("not supported: Constant without a tensor, float(s) or int(s) value (sparse and string constants)");
}

void shape_kernel(KernelContext& ctx) {
  const Shape& s = ctx.input(0).shape();
  int64_t rank = static_cast<int64_t>(s.size());
  int64_t start = ctx.attr_int("start", 0), end = ctx.attr_int("end", rank);
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  end = std::clamp<int64_t>(end, 0, rank);
  std::vector<int64_t> dims;
  for (int64_t i = start; i < end; ++i) dims.push_back(s[static_cast<size_t>(i)]);
  ctx.set_output(0, Array::vector<int64_t>(d::kInt64, dims));
}

void reshape_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  std::vector<int64_t> target;
  if (ctx.opset() < 5) {
    target = ctx.attr_ints("shape");
  } else {
    target = ctx.input(1).to_int64s();
  }
  bool allow_zero = ctx.attr_int("allowzero", 0) != 0;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == 0 && !allow_zero) {
      if (i >= x.shape().size()) ctx.error("a 0 in the target shape has no input dimension to copy");
      target[i] = x.dim(static_cast<int64_t>(i));
    }
    if (target[i] == -1) {
      if (infer >= 0) ctx.error("more than one -1 in the target shape");
      infer = static_cast<int64_t>(i);
    } else if (target[i] < 0) {
      ctx.error(fmt::format("invalid dimension {} in the target shape", target[i]));
    } else if (__builtin_mul_overflow(known, target[i], &known)) {
      ctx.error(fmt::format("the target shape {} has more elements than any tensor", shape_string(target)));
    }
  }
  if (infer >= 0) {
    if (known == 0 || x.numel() % known != 0) {
      ctx.error(fmt::format("cannot reshape {} to {}", shape_string(x.shape()), shape_string(target)));
    }
    target[static_cast<size_t>(infer)] = x.numel() / known;
  }
  if (numel(target) != x.numel()) ctx.error(fmt::format("cannot reshape {} to {}", shape_string(x.shape()), shape_string(target)));
  ctx.set_output(0, x.reshaped(target));
}

void flatten_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  int64_t axis = ctx.attr_int("axis", 1);
  if (axis < 0) axis += x.rank();
  if (axis < 0 || axis > x.rank()) ctx.error(fmt::format("axis {} out of range", axis));
  int64_t outer = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.dim(i);
  ctx.set_output(0, x.reshaped({outer, outer == 0 ? 0 : x.numel() / outer}));
}

std::vector<int64_t> axes_from(KernelContext& ctx, size_t input_index, int64_t since_input) {
  if (ctx.opset() >= since_input) {
    const Array* a = ctx.optional_input(input_index);
    return a ? a->to_int64s() : std::vector<int64_t>{};
  }
  return ctx.attr_ints("axes");
}

void squeeze_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  std::vector<int64_t> axes = axes_from(ctx, 1, 13);
  std::vector<bool> drop(x.shape().size(), false);
  if (axes.empty()) {
    for (size_t i = 0; i < drop.size(); ++i) drop[i] = x.shape()[i] == 1;
  }
  for (int64_t a : axes) {
    int64_t axis = normalize_axis(ctx, a, x.rank());
    if (x.dim(axis) != 1) ctx.error(fmt::format("cannot squeeze axis {} of size {}", a, x.dim(axis)));
    drop[static_cast<size_t>(axis)] = true;
  }
  Shape s;
  for (size_t i = 0; i < drop.size(); ++i) {
    if (!drop[i]) s.push_back(x.shape()[i]);
  }
  ctx.set_output(0, x.reshaped(s));
}

void unsqueeze_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  std::vector<int64_t> axes = axes_from(ctx, 1, 13);
  int64_t rank = x.rank() + static_cast<int64_t>(axes.size());
  std::vector<bool> added(static_cast<size_t>(rank), false);
  for (int64_t a : axes) {
    int64_t axis = normalize_axis(ctx, a, rank);
    if (added[static_cast<size_t>(axis)]) ctx.error("duplicate axis");
    added[static_cast<size_t>(axis)] = true;
  }
  Shape s;
  size_t j = 0;
  for (size_t i = 0; i < added.size(); ++i) s.push_back(added[i] ? 1 : x.shape()[j++]);
  ctx.set_output(0, x.reshaped(s));
}

// y (shaped as x's dims in `perm` order; every element is written) = x transposed. Output dims of size 1
// are dropped and neighbours that stay neighbours in x merged, so (0, 2, 1, 3) on [B, T, H, D] moves rows
// of D values; rows are spread over the executor's threads.
template <typename U>
void transpose_into(const Array& x, const std::vector<int64_t>& perm, Array& y) {
  const int64_t total = y.numel();
  if (total == 0) return;
  const U* in = x.data<U>();
  U* out = y.data<U>();
  const std::vector<int64_t> in_strides = strides_of(x.shape());
  std::vector<int64_t> dims, st;  // per merged output dimension: its size and its stride in x
  for (size_t i = 0; i < perm.size(); ++i) {
    const int64_t dim = y.shape()[i], stride = in_strides[static_cast<size_t>(perm[i])];
    if (dim == 1) continue;
    if (!dims.empty() && st.back() == stride * dim) {
      dims.back() *= dim;
      st.back() = stride;
    } else {
      dims.push_back(dim);
      st.push_back(stride);
    }
  }
  if (dims.empty()) {
    out[0] = in[0];
    return;
  }
  const size_t rank = dims.size();
  const int64_t inner = dims[rank - 1], inner_stride = st[rank - 1], rows = total / inner;
  parallel_for(rows, inner, [&](int64_t first, int64_t last) {
    std::vector<int64_t> index(rank, 0);  // of row `first`, in the outer dims
    int64_t offset = 0;
    for (int64_t r = first, k = static_cast<int64_t>(rank) - 2; k >= 0; --k) {
      index[static_cast<size_t>(k)] = r % dims[static_cast<size_t>(k)];
      r /= dims[static_cast<size_t>(k)];
      offset += index[static_cast<size_t>(k)] * st[static_cast<size_t>(k)];
    }
    for (int64_t row = first; row < last; ++row) {
      U* dst = out + row * inner;
      if (inner_stride == 1) {
        std::copy(in + offset, in + offset + inner, dst);
      } else {
        for (int64_t j = 0; j < inner; ++j) dst[j] = in[offset + j * inner_stride];
      }
      for (size_t k = rank - 1; k-- > 0;) {
        ++index[k];
        offset += st[k];
        if (index[k] < dims[k]) break;
        offset -= st[k] * dims[k];
        index[k] = 0;
      }
    }
  });
}

void transpose_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  std::vector<int64_t> perm = ctx.attr_ints("perm");
  if (perm.empty()) {
    for (int64_t i = x.rank() - 1; i >= 0; --i) perm.push_back(i);
  }
  if (static_cast<int64_t>(perm.size()) != x.rank()) ctx.error("perm does not match the input rank");
  Shape s;
  std::vector<bool> seen(perm.size(), false);
  for (int64_t& p : perm) {
    p = normalize_axis(ctx, p, x.rank());
    if (seen[static_cast<size_t>(p)]) ctx.error("perm repeats an axis");
    seen[static_cast<size_t>(p)] = true;
    s.push_back(x.dim(p));
  }
  Array y = Array::uninitialized(x.dtype(), s);
  visit_bits(x.dtype(), [&]<typename U>(U) { transpose_into<U>(x, perm, y); });
  ctx.set_output(0, std::move(y));
}

// Rows of the inputs copied in turn into each output row. Channels-last inputs concatenated along the
// channels (axis 1) or the batch stay channels-last: physically [N, D..., C], the output rows are then the
// positions N x D..., each the inputs' channel vectors in turn.
void concat_kernel(KernelContext& ctx) {
  const Array& first = ctx.input(0);
  int64_t axis = normalize_axis(ctx, ctx.attr_int("axis", ctx.opset() < 4 ? 1 : 0), first.rank());
  bool channels_last = axis <= 1;
  for (size_t i = 0; i < ctx.input_count(); ++i) channels_last = channels_last && ctx.input(i).channels_last();
  std::vector<const Array*> inputs;
  for (size_t i = 0; i < ctx.input_count(); ++i) inputs.push_back(channels_last ? &ctx.input(i) : &ctx.plain_input(i));
  Shape s = first.shape();
  s[static_cast<size_t>(axis)] = 0;
  for (const Array* a : inputs) {
    if (a->dtype() != first.dtype() || a->rank() != first.rank()) ctx.error("inputs differ in type or rank");
    for (int64_t k = 0; k < a->rank(); ++k) {
      if (k != axis && a->dim(k) != first.dim(k)) {
        ctx.error(fmt::format("input shapes {} and {} differ off the concat axis", shape_string(first.shape()),
                              shape_string(a->shape())));
      }
    }
    s[static_cast<size_t>(axis)] += a->dim(axis);
  }
  Array y = Array::uninitialized(first.dtype(), s);  // the inputs' rows tile every output row
  if (channels_last) y = y.with_layout(Layout::kChannelsLast);
  int64_t outer = 1;
  for (int64_t k = 0; k < axis; ++k) outer *= s[static_cast<size_t>(k)];
  if (channels_last && axis == 1) outer = s[1] ? y.numel() / s[1] : 0;
  size_t esize = element_size(first.dtype());
  size_t out_row = static_cast<size_t>(y.numel() / std::max<int64_t>(outer, 1)) * esize;
  parallel_for(outer, static_cast<int64_t>(out_row / std::max<size_t>(esize, 1)), [&](int64_t begin, int64_t end) {
    size_t offset = 0;
    for (const Array* a : inputs) {
      size_t row = static_cast<size_t>(a->numel() / std::max<int64_t>(outer, 1)) * esize;
      for (int64_t o = begin; o < end && row; ++o) {
        std::memcpy(y.bytes() + static_cast<size_t>(o) * out_row + offset, a->bytes() + static_cast<size_t>(o) * row, row);
      }
      offset += row;
    }
  });
  ctx.set_output(0, std::move(y));
}

// Copies a slab [start, start+len) along `axis` of x.
Array slab(const Array& x, int64_t axis, int64_t start, int64_t len) {
  Shape s = x.shape();
  s[static_cast<size_t>(axis)] = len;
  Array y(x.dtype(), s);
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < axis; ++k) outer *= x.dim(k);
  for (int64_t k = axis + 1; k < x.rank(); ++k) inner *= x.dim(k);
  size_t esize = element_size(x.dtype());
  size_t chunk = static_cast<size_t>(len * inner) * esize;
  for (int64_t o = 0; o < outer && chunk; ++o) {
    std::memcpy(y.bytes() + static_cast<size_t>(o) * chunk,
                x.bytes() + (static_cast<size_t>((o * x.dim(axis) + start) * inner)) * esize, chunk);
  }
  return y;
}

void split_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  int64_t axis = normalize_axis(ctx, ctx.attr_int("axis", 0), x.rank());
  std::vector<int64_t> sizes;
  if (ctx.opset() >= 13) {
    if (const Array* s = ctx.optional_input(1)) sizes = s->to_int64s();
  } else if (ctx.opset() == 2 || ctx.opset() >= 11) {
    sizes = ctx.attr_ints("split");
  } else {
    if (const Array* s = ctx.optional_input(1)) sizes = s->to_int64s();
    if (sizes.empty()) sizes = ctx.attr_ints("split");
  }
  int64_t total = x.dim(axis);
  size_t n = ctx.output_count();
  if (sizes.empty()) {
    if (ctx.opset() >= 18 && ctx.has_attr("num_outputs")) n = static_cast<size_t>(ctx.attr_int("num_outputs", 1));
    int64_t chunk = (total + static_cast<int64_t>(n) - 1) / static_cast<int64_t>(n);
    if (ctx.opset() < 18 && total % static_cast<int64_t>(n) != 0) {
      ctx.error(fmt::format("axis of size {} does not split evenly into {} outputs", total, n));
    }
    for (size_t i = 0; i < n; ++i) sizes.push_back(std::max<int64_t>(0, std::min(chunk, total - chunk * static_cast<int64_t>(i))));
  }
  if (sizes.size() != ctx.output_count()) ctx.error("split sizes do not match the number of outputs");
  if (std::accumulate(sizes.begin(), sizes.end(), int64_t{0}) != total) ctx.error("split sizes do not add up to the axis size");
  int64_t start = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    ctx.set_output(i, slab(x, axis, start, sizes[i]));
    start += sizes[i];
  }
}

void slice_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  std::vector<int64_t> starts, ends, axes, steps;
  if (ctx.opset() < 10) {
    starts = ctx.attr_ints("starts");
    ends = ctx.attr_ints("ends");
    axes = ctx.attr_ints("axes");
  } else {
    starts = ctx.input(1).to_int64s();
    ends = ctx.input(2).to_int64s();
    if (const Array* a = ctx.optional_input(3)) axes = a->to_int64s();
    if (const Array* s = ctx.optional_input(4)) steps = s->to_int64s();
  }
  if (axes.empty()) {
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  }
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size()) {
    ctx.error("starts, ends, axes and steps differ in length");
  }
  const size_t rank = x.shape().size();
  std::vector<int64_t> begin(rank, 0), step(rank, 1), count(x.shape());
  for (size_t i = 0; i < axes.size(); ++i) {
    size_t a = static_cast<size_t>(normalize_axis(ctx, axes[i], x.rank()));
    int64_t dim = x.shape()[a], st = steps[i];
    if (st == 0) ctx.error("slice step cannot be 0");
    // A step longer than the axis takes one element, whatever its size: clamped so the count arithmetic
    // below cannot overflow (or negate INT64_MIN).
    if (st > dim) st = std::max<int64_t>(dim, 1);
    if (st < -dim) st = -std::max<int64_t>(dim, 1);
    int64_t s = starts[i], e = ends[i];
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    if (st > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      count[a] = e > s ? (e - s + st - 1) / st : 0;
    } else {
      s = std::clamp<int64_t>(s, 0, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      count[a] = s > e ? (s - e + (-st) - 1) / (-st) : 0;
    }
    begin[a] = s;
    step[a] = st;
  }
  Array y(x.dtype(), count);
  if (y.numel() > 0) {
    std::vector<int64_t> in_st = strides_of(x.shape());
    visit_bits(x.dtype(), [&]<typename U>(U) {
      const U* in = x.data<U>();
      U* out = y.data<U>();
      if (rank == 0) {
        out[0] = in[0];
        return;
      }
      std::vector<int64_t> index(rank, 0);
      int64_t base = 0;
      for (size_t k = 0; k < rank; ++k) base += begin[k] * in_st[k];
      const int64_t inner = count[rank - 1], inner_step = step[rank - 1] * in_st[rank - 1];
      int64_t offset = base;
      for (int64_t o = 0; o < y.numel(); o += inner) {
        for (int64_t j = 0; j < inner; ++j) out[o + j] = in[offset + j * inner_step];
        for (size_t k = rank - 1; k-- > 0;) {
          ++index[k];
          offset += step[k] * in_st[k];
          if (index[k] < count[k]) break;
          offset -= step[k] * in_st[k] * count[k];
          index[k] = 0;
        }
      }
    });
  }
  ctx.set_output(0, std::move(y));
}

int64_t checked_index(KernelContext& ctx, int64_t i, int64_t dim) {
  if (i < 0) i += dim;
  if (i < 0 || i >= dim) ctx.error(fmt::format("index {} is out of range for a dimension of size {}", i, dim));
  return i;
}

void gather_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  std::vector<int64_t> idx = ctx.input(1).to_int64s();
  int64_t axis = normalize_axis(ctx, ctx.attr_int("axis", 0), x.rank());
  Shape s;
  for (int64_t k = 0; k < axis; ++k) s.push_back(x.dim(k));
  for (int64_t dd : ctx.input(1).shape()) s.push_back(dd);
  for (int64_t k = axis + 1; k < x.rank(); ++k) s.push_back(x.dim(k));
  Array y = Array::uninitialized(x.dtype(), s);  // every (outer, index) chunk is copied below
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < axis; ++k) outer *= x.dim(k);
  for (int64_t k = axis + 1; k < x.rank(); ++k) inner *= x.dim(k);
  size_t chunk = static_cast<size_t>(inner) * element_size(x.dtype());
  int64_t dim = x.dim(axis);
  for (auto& i : idx) i = checked_index(ctx, i, dim);
  for (int64_t o = 0; o < outer; ++o) {
    for (size_t j = 0; j < idx.size(); ++j) {
      std::memcpy(y.bytes() + (static_cast<size_t>(o) * idx.size() + j) * chunk,
                  x.bytes() + static_cast<size_t>(o * dim + idx[j]) * chunk, chunk);
    }
  }
  ctx.set_output(0, std::move(y));
}

// Shared by GatherElements and ScatterElements: for each element of `ind`, the flat offset in x it
// addresses (its own coordinates, with the index value along `axis`).
std::vector<int64_t> element_offsets(KernelContext& ctx, const Array& x, const Array& ind) {
  int64_t axis = normalize_axis(ctx, ctx.attr_int("axis", 0), x.rank());
  if (ind.rank() != x.rank()) ctx.error("indices must have the data's rank");
  for (int64_t k = 0; k < x.rank(); ++k) {
    if (k != axis && ind.dim(k) > x.dim(k))
      ctx.error(fmt::format("indices have {} entries on axis {} but the data has {}", ind.dim(k), k, x.dim(k)));
  }
  std::vector<int64_t> idx = ind.to_int64s();
  std::vector<int64_t> xs = strides_of(x.shape()), is = strides_of(ind.shape());
  std::vector<int64_t> offsets(idx.size());
  for (int64_t i = 0; i < ind.numel(); ++i) {
    int64_t rem = i, off = 0;
    for (int64_t k = 0; k < ind.rank(); ++k) {
      int64_t c = rem / is[static_cast<size_t>(k)];
      rem %= is[static_cast<size_t>(k)];
      if (k == axis) c = checked_index(ctx, idx[static_cast<size_t>(i)], x.dim(axis));
      off += c * xs[static_cast<size_t>(k)];
    }
    offsets[static_cast<size_t>(i)] = off;
  }
  return offsets;
}

void gather_elements_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  const Array& ind = ctx.input(1);
  std::vector<int64_t> offsets = element_offsets(ctx, x, ind);
  Array y(x.dtype(), ind.shape());
  size_t esize = element_size(x.dtype());
  for (size_t i = 0; i < offsets.size(); ++i) {
    std::memcpy(y.bytes() + i * esize, x.bytes() + static_cast<size_t>(offsets[i]) * esize, esize);
  }
  ctx.set_output(0, std::move(y));
}

void scatter_elements_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  const Array& ind = ctx.input(1);
  const Array& upd = ctx.input(2);
  std::string reduction = ctx.attr_string("reduction", "none");
  if (reduction != "none") ctx.error(fmt::format("not supported: ScatterElements reduction '{}'", reduction));
  if (upd.shape() != ind.shape() || upd.dtype() != x.dtype()) ctx.error("updates must match the indices' shape and the data's type");
  std::vector<int64_t> offsets = element_offsets(ctx, x, ind);
  Array y = x.clone();
  size_t esize = element_size(x.dtype());
  for (size_t i = 0; i < offsets.size(); ++i) {
    std::memcpy(y.bytes() + static_cast<size_t>(offsets[i]) * esize, upd.bytes() + i * esize, esize);
  }
  ctx.set_output(0, std::move(y));
}

// Shared by GatherND and ScatterND: for each index tuple, the flat offset of the addressed slice.
std::vector<int64_t> nd_offsets(KernelContext& ctx, const Array& x, const Array& ind, int64_t batch_dims,
                                int64_t& slice_elems, Shape& out_prefix) {
  std::vector<int64_t> idx = ind.to_int64s();
  int64_t k = ind.dim(ind.rank() - 1);
  if (k > x.rank() - batch_dims) ctx.error("index tuples are longer than the data's rank");
  std::vector<int64_t> xs = strides_of(x.shape());
  slice_elems = 1;
  for (int64_t i = batch_dims + k; i < x.rank(); ++i) slice_elems *= x.dim(i);
  out_prefix.assign(ind.shape().begin(), ind.shape().end() - 1);
  int64_t tuples = numel(out_prefix);
  int64_t per_batch = 1;
  for (int64_t i = batch_dims; i < ind.rank() - 1; ++i) per_batch *= ind.dim(i);
  std::vector<int64_t> offsets(static_cast<size_t>(tuples));
  for (int64_t t = 0; t < tuples; ++t) {
    int64_t batch = per_batch ? t / per_batch : 0, off = 0, rem = batch;
    for (int64_t b = batch_dims - 1; b >= 0; --b) {
      off += (rem % x.dim(b)) * xs[static_cast<size_t>(b)];
      rem /= x.dim(b);
    }
    for (int64_t j = 0; j < k; ++j) {
      int64_t a = batch_dims + j;
      off += checked_index(ctx, idx[static_cast<size_t>(t * k + j)], x.dim(a)) * xs[static_cast<size_t>(a)];
    }
    offsets[static_cast<size_t>(t)] = off;
  }
  return offsets;
}

void gather_nd_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  const Array& ind = ctx.input(1);
  int64_t batch_dims = ctx.attr_int("batch_dims", 0);
  int64_t slice = 0;
  Shape s;
  std::vector<int64_t> offsets = nd_offsets(ctx, x, ind, batch_dims, slice, s);
  for (int64_t i = batch_dims + ind.dim(ind.rank() - 1); i < x.rank(); ++i) s.push_back(x.dim(i));
  Array y(x.dtype(), s);
  size_t chunk = static_cast<size_t>(slice) * element_size(x.dtype());
  for (size_t t = 0; t < offsets.size(); ++t) {
    std::memcpy(y.bytes() + t * chunk, x.bytes() + static_cast<size_t>(offsets[t]) * element_size(x.dtype()), chunk);
  }
  ctx.set_output(0, std::move(y));
}

void scatter_nd_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  const Array& ind = ctx.input(1);
  const Array& upd = ctx.input(2);
  std::string reduction = ctx.attr_string("reduction", "none");
  if (reduction != "none") ctx.error(fmt::format("not supported: ScatterND reduction '{}'", reduction));
  int64_t slice = 0;
  Shape s;
  std::vector<int64_t> offsets = nd_offsets(ctx, x, ind, 0, slice, s);
  Array y = x.clone();
  size_t esize = element_size(x.dtype());
  size_t chunk = static_cast<size_t>(slice) * esize;
  if (upd.numel() != static_cast<int64_t>(offsets.size()) * slice) ctx.error("updates have the wrong shape");
  for (size_t t = 0; t < offsets.size(); ++t) {
    std::memcpy(y.bytes() + static_cast<size_t>(offsets[t]) * esize, upd.bytes() + t * chunk, chunk);
  }
  ctx.set_output(0, std::move(y));
}

// Materializes x broadcast to `shape`.
Array broadcast_to(KernelContext& ctx, const Array& x, const Shape& shape) {
  Shape out = broadcast_shapes(ctx, {&x.shape(), &shape});
  Array y(x.dtype(), out);
  size_t esize = element_size(x.dtype());
  Shape ones(out.size(), 1);
  visit_bits(x.dtype(), [&]<typename U>(U) {
    const U* in = x.data<U>();
    U* o = y.data<U>();
    for_each_broadcast_row<1>(out, {&x.shape()},
                              [&](int64_t off, int64_t n, const std::array<int64_t, 1>& io, const std::array<int64_t, 1>& st) {
                                if (st[0] == 1) {
                                  std::memcpy(o + off, in + io[0], static_cast<size_t>(n) * esize);
                                } else {
                                  std::fill(o + off, o + off + n, in[io[0]]);
                                }
                              });
  });
  return y;
}

void tile_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  std::vector<int64_t> repeats = ctx.input(1).to_int64s();
  if (static_cast<int64_t>(repeats.size()) != x.rank()) ctx.error("repeats must have one entry per input dimension");
  Shape s;
  for (int64_t k = 0; k < x.rank(); ++k) {
    int64_t dim = 0;
    const int64_t r = repeats[static_cast<size_t>(k)];
    if (r < 0) ctx.error(fmt::format("repeats holds {}; repeats must not be negative", r));
    if (__builtin_mul_overflow(x.dim(k), r, &dim)) ctx.error(fmt::format("repeats {} on axis {} overflow the output size", r, k));
    s.push_back(dim);
  }
  Array y(x.dtype(), s);
  std::vector<int64_t> xs = strides_of(x.shape()), ys = strides_of(s);
  size_t esize = element_size(x.dtype());
  for (int64_t i = 0; i < y.numel(); ++i) {
    int64_t rem = i, off = 0;
    for (int64_t k = 0; k < x.rank(); ++k) {
      int64_t c = rem / ys[static_cast<size_t>(k)];
      rem %= ys[static_cast<size_t>(k)];
      off += (c % x.dim(k)) * xs[static_cast<size_t>(k)];
    }
    std::memcpy(y.bytes() + static_cast<size_t>(i) * esize, x.bytes() + static_cast<size_t>(off) * esize, esize);
  }
  ctx.set_output(0, std::move(y));
}

void constant_of_shape_kernel(KernelContext& ctx) {
  std::vector<int64_t> shape = ctx.input(0).to_int64s();
  const ir::Attribute* a = ctx.node().attribute("value");
  if (!a || !a->tensor) {
    ctx.set_output(0, Array(d::kFloat, shape));
    return;
  }
  Array v = Array::from_tensor(*a->tensor);
  if (v.numel() != 1) ctx.error("value must hold one element");
  Array y(v.dtype(), shape);
  size_t esize = element_size(v.dtype());
  for (int64_t i = 0; i < y.numel(); ++i) std::memcpy(y.bytes() + static_cast<size_t>(i) * esize, v.bytes(), esize);
  ctx.set_output(0, std::move(y));
}

void range_kernel(KernelContext& ctx) {
  const Array& start = ctx.input(0);
  visit<kFloats | kSignedInts>(start.dtype(), "Range", [&]<typename T>(T) {
    for (size_t i = 0; i < 3; ++i) {
      if (ctx.scalar_input(i, "start, limit and delta").dtype() != start.dtype()) ctx.error("start, limit and delta differ in type");
    }
    T s = start.data<T>()[0], limit = ctx.input(1).data<T>()[0], delta = ctx.input(2).data<T>()[0];
    if (delta == 0) ctx.error("delta cannot be 0");
    double n = std::ceil((static_cast<double>(limit) - static_cast<double>(s)) / static_cast<double>(delta));
    int64_t count = std::max<int64_t>(0, static_cast<int64_t>(n));
    Array y(start.dtype(), {count});
    for (int64_t i = 0; i < count; ++i) y.data<T>()[i] = static_cast<T>(s + static_cast<T>(i) * delta);
    ctx.set_output(0, std::move(y));
  });
}

void pad_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  std::vector<int64_t> pads;
  std::string mode = ctx.attr_string("mode", "constant");
  double value = 0;
  Array constant;
  if (ctx.opset() < 11) {
    pads = ctx.attr_ints(ctx.opset() < 2 ? "paddings" : "pads");
    value = ctx.attr_float("value", 0.0f);
  } else {
    pads = ctx.input(1).to_int64s();
    if (const Array* c = ctx.optional_input(2); c && c->numel() > 0) constant = *c;
  }
  const int64_t rank = x.rank();
  std::vector<int64_t> axes;
  if (const Array* a = ctx.opset() >= 18 ? ctx.optional_input(3) : nullptr) {
    for (int64_t ax : a->to_int64s()) axes.push_back(normalize_axis(ctx, ax, rank));
  } else {
    for (int64_t k = 0; k < rank; ++k) axes.push_back(k);
  }
  if (pads.size() != 2 * axes.size()) ctx.error("pads must have two entries per padded axis");
  std::vector<int64_t> before(static_cast<size_t>(rank), 0), after(static_cast<size_t>(rank), 0);
  for (size_t i = 0; i < axes.size(); ++i) {
    before[static_cast<size_t>(axes[i])] = pads[i];
    after[static_cast<size_t>(axes[i])] = pads[i + axes.size()];
  }
  Shape s;
  for (int64_t k = 0; k < rank; ++k) {
    int64_t dim = 0;
    if (__builtin_add_overflow(x.dim(k), before[static_cast<size_t>(k)], &dim) ||
        __builtin_add_overflow(dim, after[static_cast<size_t>(k)], &dim))
      ctx.error(fmt::format("pads on axis {} overflow the output size", k));
    if (dim < 0) ctx.error("negative pads remove more than the dimension");
    s.push_back(dim);
  }
  if (mode != "constant" && mode != "reflect" && mode != "edge" && mode != "wrap") {
    ctx.error(fmt::format("not supported: Pad mode '{}'", mode));
  }
  if (mode == "wrap" && ctx.opset() < 19) ctx.error("Pad mode 'wrap' needs opset 19");
  Array y(x.dtype(), s);
  // Fill value.
  Array fill = constant.defined() ? constant : cast(Array::scalar<double>(d::kDouble, value), x.dtype());
  std::vector<int64_t> xs = strides_of(x.shape()), ys = strides_of(s);
  size_t esize = element_size(x.dtype());
  for (int64_t i = 0; i < y.numel(); ++i) {
    int64_t rem = i, off = 0;
    bool inside = true;
    for (int64_t k = 0; k < rank; ++k) {
      int64_t c = rem / ys[static_cast<size_t>(k)] - before[static_cast<size_t>(k)];
      rem %= ys[static_cast<size_t>(k)];
      int64_t dim = x.dim(k);
      if (c < 0 || c >= dim) {
        if (mode == "constant" || dim == 0) {
          inside = false;
          break;
        }
        if (mode == "edge") {
          c = std::clamp<int64_t>(c, 0, dim - 1);
        } else if (mode == "wrap") {
          c = ((c % dim) + dim) % dim;
        } else {  // reflect
          if (dim == 1) {
            c = 0;
          } else {
            int64_t period = 2 * (dim - 1);
            c = ((c % period) + period) % period;
            if (c >= dim) c = period - c;
          }
        }
      }
      off += c * xs[static_cast<size_t>(k)];
    }
    std::memcpy(y.bytes() + static_cast<size_t>(i) * esize,
                inside ? x.bytes() + static_cast<size_t>(off) * esize : fill.bytes(), esize);
  }
  ctx.set_output(0, std::move(y));
}

void trilu_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  int64_t k = ctx.has_input(1) ? ctx.scalar_input(1, "k").to_int64s()[0] : 0;
  bool upper = ctx.attr_int("upper", 1) != 0;
  if (x.rank() < 2) ctx.error("input must have rank >= 2");
  Array y = x.clone();
  int64_t rows = x.dim(x.rank() - 2), cols = x.dim(x.rank() - 1);
  size_t esize = element_size(x.dtype());
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t c = i % cols, r = (i / cols) % rows;
    bool keep = upper ? (c - r >= k) : (c - r <= k);
    if (!keep) std::memset(y.bytes() + static_cast<size_t>(i) * esize, 0, esize);
  }
  ctx.set_output(0, std::move(y));
}

void nonzero_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  std::vector<double> v = x.to_doubles();
  std::vector<int64_t> hits;
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (v[static_cast<size_t>(i)] != 0) hits.push_back(i);
  }
  int64_t rank = std::max<int64_t>(x.rank(), 1);
  Array y(d::kInt64, {rank, static_cast<int64_t>(hits.size())});
  std::vector<int64_t> st = x.rank() ? strides_of(x.shape()) : std::vector<int64_t>{1};
  for (size_t j = 0; j < hits.size(); ++j) {
    int64_t rem = hits[j];
    for (int64_t k = 0; k < rank; ++k) {
      y.data<int64_t>()[k * static_cast<int64_t>(hits.size()) + static_cast<int64_t>(j)] = x.rank() ? rem / st[static_cast<size_t>(k)] : 0;
      rem %= st[static_cast<size_t>(k)];
    }
  }
  ctx.set_output(0, std::move(y));
}

void arg_kernel(KernelContext& ctx, bool max) {
  const Array& x = ctx.input(0);
  int64_t axis = normalize_axis(ctx, ctx.attr_int("axis", 0), x.rank());
  bool keep = ctx.attr_int("keepdims", 1) != 0;
  bool last = ctx.attr_int("select_last_index", 0) != 0;
  int64_t outer = 1, inner = 1, n = x.dim(axis);
  for (int64_t k = 0; k < axis; ++k) outer *= x.dim(k);
  for (int64_t k = axis + 1; k < x.rank(); ++k) inner *= x.dim(k);
  Shape s = x.shape();
  if (keep) s[static_cast<size_t>(axis)] = 1;
  else s.erase(s.begin() + axis);
  Array y(d::kInt64, s);
  visit<kNumbers>(x.dtype(), max ? "ArgMax" : "ArgMin", [&]<typename T>(T) {
    const T* in = x.data<T>();
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t i = 0; i < inner; ++i) {
        int64_t best = 0;
        T bv = in[o * n * inner + i];
        for (int64_t j = 1; j < n; ++j) {
          T v = in[(o * n + j) * inner + i];
          bool better = max ? (v > bv || (last && v == bv)) : (v < bv || (last && v == bv));
          if (better) {
            bv = v;
            best = j;
          }
        }
        y.data<int64_t>()[o * inner + i] = best;
      }
    }
  });
  ctx.set_output(0, std::move(y));
}

void topk_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  if (ctx.opset() >= 10 && ctx.input(1).numel() != 1)
    ctx.error(fmt::format("K must hold one value, not {}", ctx.input(1).numel()));
  int64_t k = ctx.opset() < 10 ? ctx.attr_int("k", 1) : ctx.input(1).to_int64s()[0];
  int64_t axis = normalize_axis(ctx, ctx.attr_int("axis", -1), x.rank());
  bool largest = ctx.attr_int("largest", 1) != 0;
  int64_t outer = 1, inner = 1, n = x.dim(axis);
  if (k < 0 || k > n) ctx.error(fmt::format("k={} is out of range for an axis of size {}", k, n));
  for (int64_t a = 0; a < axis; ++a) outer *= x.dim(a);
  for (int64_t a = axis + 1; a < x.rank(); ++a) inner *= x.dim(a);
  Shape s = x.shape();
  s[static_cast<size_t>(axis)] = k;
  Array values(x.dtype(), s), indices(d::kInt64, s);
  visit<kNumbers>(x.dtype(), "TopK", [&]<typename T>(T) {
    const T* in = x.data<T>();
    std::vector<int64_t> order(static_cast<size_t>(n));
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t i = 0; i < inner; ++i) {
        auto at = [&](int64_t j) { return in[(o * n + j) * inner + i]; };
        std::iota(order.begin(), order.end(), 0);
        // Ties keep the lower index first, as ONNX requires. NaN ranks above every number (first for
        // largest, last for smallest), so the comparison stays a strict weak order.
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
          const T va = at(a), vb = at(b);
          if constexpr (std::is_floating_point_v<T>) {
            if (std::isnan(va) || std::isnan(vb)) return largest ? !std::isnan(vb) : !std::isnan(va);
          }
          return largest ? va > vb : va < vb;
        });
        for (int64_t j = 0; j < k; ++j) {
          values.data<T>()[(o * k + j) * inner + i] = at(order[static_cast<size_t>(j)]);
          indices.data<int64_t>()[(o * k + j) * inner + i] = order[static_cast<size_t>(j)];
        }
      }
    }
  });
  ctx.set_output(0, std::move(values));
  ctx.set_output(1, std::move(indices));
}

void cumsum_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  int64_t axis = normalize_axis(ctx, ctx.scalar_input(1, "axis").to_int64s()[0], x.rank());
  bool exclusive = ctx.attr_int("exclusive", 0) != 0, reverse = ctx.attr_int("reverse", 0) != 0;
  int64_t outer = 1, inner = 1, n = x.dim(axis);
  for (int64_t a = 0; a < axis; ++a) outer *= x.dim(a);
  for (int64_t a = axis + 1; a < x.rank(); ++a) inner *= x.dim(a);
  Array y(x.dtype(), x.shape());
  visit<kNumbers>(x.dtype(), "CumSum", [&]<typename T>(T) {
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t i = 0; i < inner; ++i) {
        T acc = 0;
        for (int64_t jj = 0; jj < n; ++jj) {
          int64_t j = reverse ? n - 1 - jj : jj;
          int64_t at = (o * n + j) * inner + i;
          if (exclusive) {
            y.data<T>()[at] = acc;
            acc = static_cast<T>(acc + x.data<T>()[at]);
          } else {
            acc = static_cast<T>(acc + x.data<T>()[at]);
            y.data<T>()[at] = acc;
          }
        }
      }
    }
  });
  ctx.set_output(0, std::move(y));
}

void onehot_kernel(KernelContext& ctx) {
  std::vector<int64_t> idx = cast(ctx.input(0), d::kInt64).to_int64s();
  int64_t depth = static_cast<int64_t>(ctx.scalar_input(1, "depth").to_doubles()[0]);
  const Array& values = ctx.input(2);
  if (depth < 1) ctx.error(fmt::format("depth must be positive, got {}", depth));
  if (values.numel() != 2) ctx.error(fmt::format("values must hold [off, on], not {} values", values.numel()));
  const Shape& is = ctx.input(0).shape();
  int64_t rank = static_cast<int64_t>(is.size()) + 1;
  int64_t axis = normalize_axis(ctx, ctx.attr_int("axis", -1), rank);
  Shape s(is);
  s.insert(s.begin() + axis, depth);
  Array y(values.dtype(), s);
  size_t esize = element_size(values.dtype());
  int64_t outer = 1, inner = 1;
  for (int64_t a = 0; a < axis; ++a) outer *= s[static_cast<size_t>(a)];
  for (int64_t a = axis + 1; a < rank; ++a) inner *= s[static_cast<size_t>(a)];
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j = 0; j < depth; ++j) {
      for (int64_t i = 0; i < inner; ++i) {
        int64_t v = idx[static_cast<size_t>(o * inner + i)];
        if (v < 0) v += depth;
        const std::byte* src = values.bytes() + (v == j ? esize : 0);
        std::memcpy(y.bytes() + static_cast<size_t>((o * depth + j) * inner + i) * esize, src, esize);
      }
    }
  }
  ctx.set_output(0, std::move(y));
}

void depth_space_kernel(KernelContext& ctx, bool to_space) {
  const Array& x = ctx.input(0);
  if (x.rank() != 4) ctx.error("input must be 4-D");
  int64_t b = ctx.attr_int("blocksize", 1);
  int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3);
  Array y;
  if (to_space) {
    bool crd = ctx.attr_string("mode", "DCR") == "CRD";
    int64_t oc = c / (b * b);
    // View as 6-D and transpose.
    Array v = crd ? x.reshaped({n, oc, b, b, h, w}) : x.reshaped({n, b, b, oc, h, w});
    std::vector<int64_t> perm = crd ? std::vector<int64_t>{0, 1, 4, 2, 5, 3} : std::vector<int64_t>{0, 3, 4, 1, 5, 2};
    Shape ts;
    for (int64_t p : perm) ts.push_back(v.dim(p));
    y = Array(x.dtype(), ts);
    visit_bits(x.dtype(), [&]<typename U>(U) { transpose_into<U>(v, perm, y); });
    y = y.reshaped({n, oc, h * b, w * b});
  } else {
    Array v = x.reshaped({n, c, h / b, b, w / b, b});
    std::vector<int64_t> perm{0, 3, 5, 1, 2, 4};
    Shape ts;
    for (int64_t p : perm) ts.push_back(v.dim(p));
    y = Array(x.dtype(), ts);
    visit_bits(x.dtype(), [&]<typename U>(U) { transpose_into<U>(v, perm, y); });
    y = y.reshaped({n, c * b * b, h / b, w / b});
  }
  ctx.set_output(0, std::move(y));
}

void eye_like_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  if (x.rank() != 2) ctx.error("input must be 2-D");
  int32_t dtype = static_cast<int32_t>(ctx.attr_int("dtype", x.dtype()));
  int64_t k = ctx.attr_int("k", 0);
  Array y(dtype, x.shape());
  Array one = cast(Array::scalar<double>(d::kDouble, 1.0), dtype);
  size_t esize = element_size(dtype);
  for (int64_t r = 0; r < x.dim(0); ++r) {
    int64_t c = r + k;
    if (c >= 0 && c < x.dim(1)) std::memcpy(y.bytes() + static_cast<size_t>(r * x.dim(1) + c) * esize, one.bytes(), esize);
  }
  ctx.set_output(0, std::move(y));
}

void add(KernelRegistry& r, const char* op, int64_t since, KernelFn fn) { r.add({"", op, since, kLatest, std::move(fn), false}); }
// Kernels that compare or add values: float16 goes through float32.
void add_math(KernelRegistry& r, const char* op, int64_t since, KernelFn fn) { r.add({"", op, since, kLatest, std::move(fn), true}); }

}  // namespace

void register_tensor_kernels(KernelRegistry& r) {
  add(r, "Constant", 1, [](KernelContext& ctx) { ctx.set_output(0, constant_kernel_value(ctx)); });
  // Identity and Dropout pass their input on as it is, channels-last too (KernelDef::channels_last): so that
  // removing them (eliminate-nops) leaves the layouts, and with them the convolutions' sums, as they were.
  r.add({"", "Identity", 1, kLatest, [](KernelContext& ctx) { ctx.set_output(0, ctx.input(0)); }, false, true});
  r.add({"", "Dropout", 1, kLatest, [](KernelContext& ctx) {
    // Inference: outputs the input; the mask is all true. training_mode=true is refused.
    if (ctx.has_input(2) && ctx.scalar_input(2, "training_mode").to_doubles()[0] != 0) {
      ctx.error("not supported: Dropout in training mode");
    }
    if (ctx.opset() < 7 && ctx.attr_int("is_test", 0) == 0) ctx.error("not supported: Dropout with is_test=0");
    const Array& x = ctx.input(0);
    ctx.set_output(0, x);
    if (ctx.wants_output(1)) {
      Array mask(d::kBool, x.shape());
      std::memset(mask.bytes(), 1, static_cast<size_t>(mask.numel()));
      ctx.set_output(1, std::move(mask));
    }
  }, false, true});
  add(r, "Shape", 1, shape_kernel);
  add(r, "Size", 1, [](KernelContext& ctx) { ctx.set_output(0, Array::scalar<int64_t>(d::kInt64, ctx.input(0).numel())); });
  add(r, "Reshape", 5, reshape_kernel);
  add(r, "Flatten", 1, flatten_kernel);
  add(r, "Squeeze", 1, squeeze_kernel);
  add(r, "Unsqueeze", 1, unsqueeze_kernel);
  add(r, "Transpose", 1, transpose_kernel);
  r.add({"", "Concat", 4, kLatest, concat_kernel, false, true});  // reads channels-last (KernelDef::channels_last)
  add(r, "Split", 2, split_kernel);
  add(r, "Slice", 1, slice_kernel);
  add(r, "Gather", 1, gather_kernel);
  add(r, "GatherElements", 11, gather_elements_kernel);
  add(r, "GatherND", 11, gather_nd_kernel);
  add(r, "ScatterElements", 11, scatter_elements_kernel);
  add(r, "ScatterND", 11, scatter_nd_kernel);
  add(r, "Expand", 8, [](KernelContext& ctx) {
    ctx.set_output(0, broadcast_to(ctx, ctx.input(0), ctx.input(1).to_int64s()));
  });
  add(r, "Tile", 6, tile_kernel);
  add(r, "ConstantOfShape", 9, constant_of_shape_kernel);
  add_math(r, "Range", 11, range_kernel);
  add(r, "Pad", 2, pad_kernel);
  add(r, "Trilu", 14, trilu_kernel);
  add(r, "NonZero", 9, nonzero_kernel);
  add_math(r, "ArgMax", 1, [](KernelContext& ctx) { arg_kernel(ctx, true); });
  add_math(r, "ArgMin", 1, [](KernelContext& ctx) { arg_kernel(ctx, false); });
  add_math(r, "TopK", 1, topk_kernel);
  add_math(r, "CumSum", 11, cumsum_kernel);
  add(r, "OneHot", 9, onehot_kernel);
  add(r, "DepthToSpace", 1, [](KernelContext& ctx) { depth_space_kernel(ctx, true); });
  add(r, "SpaceToDepth", 1, [](KernelContext& ctx) { depth_space_kernel(ctx, false); });
  add(r, "EyeLike", 9, eye_like_kernel);
}

}  // namespace mopt::exec
