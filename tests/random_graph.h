// Random small ONNX graphs for differential testing of the rewrites: every graph is valid by construction
// (shapes are tracked), float32, opset 17, and made of the patterns the passes rewrite (Conv+BatchNorm,
// Conv+per-channel Add/Mul, MatMul+Add, Pad+Conv, Transpose/Reshape chains, no-ops, duplicated nodes,
// constant subexpressions, Shape->Gather, decomposed LayerNorm) mixed with ordinary operators. The same
// generator serves tests/test_differential.cpp (seeded, in CTest) and fuzz/fuzz_passes.cpp (choices taken
// from libFuzzer's bytes, so coverage guides the shapes of the graphs).
#pragma once
#include <fmt/format.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mopt::testing {

// Where the generator's decisions come from: next(n) returns a value in [0, n).
using Choices = std::function<uint32_t(uint32_t)>;

// Deterministic choices from a seed (splitmix64, the same on every platform and compiler).
inline Choices seeded_choices(uint64_t seed) {
  return [state = seed](uint32_t n) mutable -> uint32_t {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return n ? static_cast<uint32_t>(z % n) : 0;
  };
}

// Choices read from a byte string, one byte per decision, then zeros.
inline Choices byte_choices(const uint8_t* data, size_t size) {
  return [data, size, pos = size_t{0}](uint32_t n) mutable -> uint32_t {
    const uint32_t byte = pos < size ? data[pos++] : 0;
    return n ? byte % n : 0;
  };
}

namespace detail {

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
};

inline std::string dims(const std::vector<int64_t>& shape) {
  std::vector<std::string> parts;
  for (int64_t d : shape) parts.push_back(std::to_string(d));
  return fmt::format("{}", fmt::join(parts, ","));
}

inline int64_t count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

class Builder {
 public:
  explicit Builder(Choices choices) : pick_(std::move(choices)) {}

  std::string build() {
    const int64_t c = 1 + pick_(4), h = 3 + pick_(4), w = 3 + pick_(4);
    values_.push_back({"x", {1, c, h, w}});
    input_ = values_.back();
    const uint32_t steps = 2 + pick_(7);
    for (uint32_t i = 0; i < steps; ++i) step();
    // Outputs: the last value, and sometimes an earlier one (a graph output constrains the fusions).
    std::vector<Tensor> outputs{values_.back()};
    if (values_.size() > 2 && pick_(3) == 0) {
      const Tensor& extra = values_[1 + pick_(static_cast<uint32_t>(values_.size() - 2))];
      if (extra.name != outputs[0].name) outputs.push_back(extra);
    }
    std::vector<std::string> outs, inits;
    for (const Tensor& t : outputs) outs.push_back(fmt::format("float[{}] {}", dims(t.shape), t.name));
    for (const std::string& i : initializers_) inits.push_back(i);
    std::string text = fmt::format("<ir_version: 8, opset_import: [\"\" : 17]>\ng (float[{}] x) => ({})\n", dims(input_.shape),
                                   fmt::join(outs, ", "));
    if (!inits.empty()) text += fmt::format("<{}>\n", fmt::join(inits, ", "));
    text += "{\n" + body_ + "}\n";
    return text;
  }

 private:
  std::string fresh(const char* prefix) { return fmt::format("{}{}", prefix, next_id_++); }

  // A constant of `shape` with small values (some negative, none zero where a divisor could use it).
  std::string constant(const std::vector<int64_t>& shape, bool positive = false) {
    const std::string name = fresh("k");
    std::vector<std::string> vals;
    for (int64_t i = 0; i < count(shape); ++i) {
      const int q = static_cast<int>(pick_(9));  // 0..8
      const double v = positive ? 0.25 + 0.25 * q : (q - 4) * 0.25 + (q == 4 ? 0.125 : 0.0);
      vals.push_back(fmt::format("{}", v));
    }
    initializers_.push_back(fmt::format("float[{}] {} = {{{}}}", dims(shape), name, fmt::join(vals, ", ")));
    return name;
  }
  std::string ints(const std::vector<int64_t>& values) {
    const std::string name = fresh("s");
    std::vector<std::string> vals;
    for (int64_t v : values) vals.push_back(std::to_string(v));
    initializers_.push_back(fmt::format("int64[{}] {} = {{{}}}", values.size(), name, fmt::join(vals, ", ")));
    return name;
  }
  void emit(const std::string& line) { body_ += "  " + line + "\n"; }
  Tensor add(std::vector<int64_t> shape, const char* prefix = "v") {
    values_.push_back({fresh(prefix), std::move(shape)});
    return values_.back();
  }
  // A recent value (the last ones more often, so chains form).
  const Tensor& operand() {
    const uint32_t n = static_cast<uint32_t>(values_.size());
    return values_[pick_(2) == 0 ? n - 1 : pick_(n)];
  }

  void step() {
    const Tensor a = operand();
    const bool image = a.shape.size() == 4;
    const uint32_t kind = pick_(image ? 16 : 9);
    if (image) {
      image_step(a, kind);
    } else {
      matrix_step(a, kind);
    }
  }

  void image_step(const Tensor& a, uint32_t kind) {
    const int64_t c = a.shape[1], h = a.shape[2], w = a.shape[3];
    switch (kind) {
      case 0: case 1: {  // Conv, with bias sometimes, padding and stride sometimes
        const int64_t m = 1 + pick_(4), k = 1 + 2 * pick_(2), pad = pick_(2) ? k / 2 : 0, stride = pick_(4) == 0 ? 2 : 1;
        const int64_t oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
        if (h + 2 * pad < k || w + 2 * pad < k) return;
        const std::string weight = constant({m, c, k, k});
        const std::string bias = pick_(2) ? ", " + constant({m}) : "";
        const Tensor y = add({1, m, oh, ow});
        emit(fmt::format("{} = Conv <pads = [{p}, {p}, {p}, {p}], strides = [{s}, {s}]> ({}, {}{})", y.name, a.name, weight,
                         bias, fmt::arg("p", pad), fmt::arg("s", stride)));
        return;
      }
      case 2: {  // BatchNormalization (inference)
        const Tensor y = add(a.shape);
        emit(fmt::format("{} = BatchNormalization <epsilon = 0.001> ({}, {}, {}, {}, {})", y.name, a.name, constant({c}),
                         constant({c}), constant({c}), constant({c}, true)));
        return;
      }
      case 3: {  // per-channel Add or Mul (either operand order)
        const std::string k = constant({c, 1, 1});
        const char* op = pick_(2) ? "Add" : "Mul";
        const Tensor y = add(a.shape);
        emit(pick_(2) ? fmt::format("{} = {}({}, {})", y.name, op, a.name, k) : fmt::format("{} = {}({}, {})", y.name, op, k, a.name));
        return;
      }
      case 4: {  // activation
        static const char* kOps[] = {"Relu", "Sigmoid", "Tanh", "LeakyRelu"};
        const Tensor y = add(a.shape);
        emit(fmt::format("{} = {}({})", y.name, kOps[pick_(4)], a.name));
        return;
      }
      case 5: {  // no-ops: Identity, Dropout, Cast to float, x + 0, x * 1
        const Tensor y = add(a.shape);
        switch (pick_(5)) {
          case 0: emit(fmt::format("{} = Identity({})", y.name, a.name)); break;
          case 1: emit(fmt::format("{} = Dropout({})", y.name, a.name)); break;
          case 2: emit(fmt::format("{} = Cast <to = 1> ({})", y.name, a.name)); break;
          case 3: {
            const std::string zero = fresh("k");
            initializers_.push_back(fmt::format("float[1] {} = {{0}}", zero));
            emit(fmt::format("{} = Add({}, {})", y.name, a.name, zero));
            break;
          }
          default: {
            const std::string one = fresh("k");
            initializers_.push_back(fmt::format("float[1] {} = {{1}}", one));
            emit(fmt::format("{} = Mul({}, {})", y.name, one, a.name));
          }
        }
        return;
      }
      case 6: {  // Transpose, sometimes undone right away
        static const std::vector<std::vector<int64_t>> kPerms = {{0, 1, 3, 2}, {0, 2, 3, 1}, {0, 3, 1, 2}, {0, 1, 2, 3}};
        const std::vector<int64_t>& perm = kPerms[pick_(4)];
        std::vector<int64_t> shape;
        for (int64_t p : perm) shape.push_back(a.shape[p]);
        const Tensor y = add(shape);
        emit(fmt::format("{} = Transpose <perm = [{}]> ({})", y.name, dims(perm), a.name));
        if (pick_(2)) {
          std::vector<int64_t> inverse(4);
          for (int i = 0; i < 4; ++i) inverse[perm[i]] = i;
          const Tensor z = add(a.shape);
          emit(fmt::format("{} = Transpose <perm = [{}]> ({})", z.name, dims(inverse), y.name));
        }
        return;
      }
      case 7: {  // flatten to a matrix: Reshape by a constant, by Shape->Gather, or Flatten
        const Tensor y = add({1, c * h * w});
        switch (pick_(3)) {
          case 0: emit(fmt::format("{} = Reshape({}, {})", y.name, a.name, ints({1, -1}))); break;
          case 1: {
            const std::string shape = fresh("t"), first = fresh("t"), target = fresh("t");
            emit(fmt::format("{} = Shape({})", shape, a.name));
            emit(fmt::format("{} = Gather <axis = 0> ({}, {})", first, shape, ints({0})));
            emit(fmt::format("{} = Concat <axis = 0> ({}, {})", target, first, ints({-1})));
            emit(fmt::format("{} = Reshape({}, {})", y.name, a.name, target));
            break;
          }
          default: emit(fmt::format("{} = Flatten({})", y.name, a.name));
        }
        return;
      }
      case 8: {  // a constant Pad of the spatial axes (then often a Conv or pool reads it)
        const int64_t p = 1;
        const Tensor y = add({1, c, h + 2 * p, w + 2 * p});
        emit(fmt::format("{} = Pad({}, {})", y.name, a.name, ints({0, 0, p, p, 0, 0, p, p})));
        return;
      }
      case 9: {  // pooling
        if (pick_(2) || h < 2 || w < 2) {
          const Tensor y = add({1, c, 1, 1});
          emit(fmt::format("{} = GlobalAveragePool({})", y.name, a.name));
        } else {
          const Tensor y = add({1, c, h - 1, w - 1});
          emit(fmt::format("{} = {} <kernel_shape = [2, 2]> ({})", y.name, pick_(2) ? "MaxPool" : "AveragePool", a.name));
        }
        return;
      }
      case 10: {  // the same node twice, both read (common subexpressions)
        const Tensor y1 = add(a.shape), y2 = add(a.shape), s = add(a.shape);
        emit(fmt::format("{} = Relu({})", y1.name, a.name));
        emit(fmt::format("{} = Relu({})", y2.name, a.name));
        emit(fmt::format("{} = Add({}, {})", s.name, y1.name, y2.name));
        return;
      }
      case 11: {  // a constant subexpression feeding a per-channel Mul (constant folding)
        const std::string k1 = constant({c, 1, 1}), k2 = constant({c, 1, 1}, true), folded = fresh("t");
        emit(fmt::format("{} = Div({}, {})", folded, k1, k2));
        const Tensor y = add(a.shape);
        emit(fmt::format("{} = Mul({}, {})", y.name, a.name, folded));
        return;
      }
      case 12: {  // Concat along the channels with a same-shaped value, or with itself
        std::string other = a.name;
        for (const Tensor& t : values_) {
          if (t.shape == a.shape && t.name != a.name && pick_(2)) other = t.name;
        }
        const Tensor y = add({1, 2 * c, h, w});
        emit(fmt::format("{} = Concat <axis = 1> ({}, {})", y.name, a.name, other));
        return;
      }
      case 13: {  // element-wise with another value of the same shape
        for (const Tensor& t : values_) {
          if (t.shape == a.shape && t.name != a.name) {
            const std::string other = t.name;  // add() may move the values
            const Tensor y = add(a.shape);
            emit(fmt::format("{} = {}({}, {})", y.name, pick_(2) ? "Add" : "Mul", a.name, other));
            return;
          }
        }
        return;
      }
      case 14: {  // Reshape there and back (fuse-consecutive), or Unsqueeze + Squeeze
        const std::string y = fresh("t");  // rank 3: not offered to later steps
        emit(fmt::format("{} = Reshape({}, {})", y, a.name, ints({1, c, h * w})));
        const Tensor z = add(a.shape);
        emit(fmt::format("{} = Reshape({}, {})", z.name, y, ints(a.shape)));
        return;
      }
      default: {  // Conv followed by the pattern that folds into it (BN, Add, Mul)
        const int64_t m = 1 + pick_(3);
        const Tensor y = add({1, m, h, w});
        emit(fmt::format("{} = Conv <pads = [1, 1, 1, 1]> ({}, {})", y.name, a.name, constant({m, c, 3, 3})));
        const Tensor z = add(y.shape);
        if (pick_(2)) {
          emit(fmt::format("{} = BatchNormalization ({}, {}, {}, {}, {})", z.name, y.name, constant({m}), constant({m}),
                           constant({m}), constant({m}, true)));
        } else {
          emit(fmt::format("{} = {}({}, {})", z.name, pick_(2) ? "Add" : "Mul", y.name, constant({m, 1, 1})));
        }
        return;
      }
    }
  }

  void matrix_step(const Tensor& a, uint32_t kind) {
    const int64_t n = a.shape[0], k = a.shape[1];
    switch (kind) {
      case 0: case 1: {  // MatMul by a constant, then often a bias Add (fuse-matmul-add)
        const int64_t m = 1 + pick_(6);
        const Tensor y = add({n, m});
        emit(fmt::format("{} = MatMul({}, {})", y.name, a.name, constant({k, m})));
        if (pick_(3)) {
          const Tensor z = add({n, m});
          emit(fmt::format("{} = Add({}, {})", z.name, y.name, constant({m})));
        }
        return;
      }
      case 2: {  // Gemm, sometimes transposed
        const int64_t m = 1 + pick_(6);
        const bool trans = pick_(2);
        const Tensor y = add({n, m});
        emit(fmt::format("{} = Gemm <transB = {}> ({}, {}, {})", y.name, trans ? 1 : 0, a.name,
                         constant(trans ? std::vector<int64_t>{m, k} : std::vector<int64_t>{k, m}), constant({m})));
        return;
      }
      case 3: {  // activation or Softmax
        static const char* kOps[] = {"Relu", "Sigmoid", "Tanh", "Softmax"};
        const Tensor y = add(a.shape);
        emit(fmt::format("{} = {}({})", y.name, kOps[pick_(4)], a.name));
        return;
      }
      case 4: {  // decomposed layer normalization over the last axis (fuse-layernorm)
        const std::string mean = fresh("t"), centered = fresh("t"), square = fresh("t"), var = fresh("t"), shifted = fresh("t"),
                          root = fresh("t"), normed = fresh("t"), scaled = fresh("t");
        const std::string two = fresh("k"), eps = fresh("k");
        initializers_.push_back(fmt::format("float {} = {{2}}", two));
        initializers_.push_back(fmt::format("float {} = {{0.00001}}", eps));
        emit(fmt::format("{} = ReduceMean <axes = [-1]> ({})", mean, a.name));
        emit(fmt::format("{} = Sub({}, {})", centered, a.name, mean));
        emit(fmt::format("{} = Pow({}, {})", square, centered, two));
        emit(fmt::format("{} = ReduceMean <axes = [-1]> ({})", var, square));
        emit(fmt::format("{} = Add({}, {})", shifted, var, eps));
        emit(fmt::format("{} = Sqrt({})", root, shifted));
        emit(fmt::format("{} = Div({}, {})", normed, centered, root));
        emit(fmt::format("{} = Mul({}, {})", scaled, normed, constant({k})));
        const Tensor y = add(a.shape);
        emit(fmt::format("{} = Add({}, {})", y.name, scaled, constant({k})));
        return;
      }
      case 5: {  // Transpose twice (fuse-consecutive, eliminate-nops)
        const Tensor y = add({k, n});
        emit(fmt::format("{} = Transpose <perm = [1, 0]> ({})", y.name, a.name));
        const Tensor z = add(a.shape);
        emit(fmt::format("{} = Transpose <perm = [1, 0]> ({})", z.name, y.name));
        return;
      }
      case 6: {  // Unsqueeze then Squeeze
        const std::string y = fresh("t");  // rank 3: not offered to later steps
        emit(fmt::format("{} = Unsqueeze({}, {})", y, a.name, ints({1})));
        const Tensor z = add(a.shape);
        emit(fmt::format("{} = Squeeze({}, {})", z.name, y, ints({1})));
        return;
      }
      case 7: {  // per-column Add/Mul by a constant
        const Tensor y = add(a.shape);
        emit(fmt::format("{} = {}({}, {})", y.name, pick_(2) ? "Add" : "Mul", a.name, constant({k})));
        return;
      }
      default: {  // Slice of the columns
        if (k < 2) return;
        const Tensor y = add({n, k - 1});
        emit(fmt::format("{} = Slice({}, {}, {}, {})", y.name, a.name, ints({1}), ints({k}), ints({1})));
        return;
      }
    }
  }

  Choices pick_;
  std::vector<Tensor> values_;
  Tensor input_;
  std::vector<std::string> initializers_;
  std::string body_;
  int next_id_ = 0;
};

}  // namespace detail

// The passes that must keep what a graph computes, as the differential test and fuzzer run them. fuse-gelu
// (opset >= 20, beyond ONNX 1.12's checker) and fold-input-normalization run only inside `fuse`: the
// generator does not make their patterns.
inline const std::vector<std::string> kOutputKeepingPasses = {
    "eliminate-dead-code", "eliminate-nops", "eliminate-common-subexpressions", "fold-constants", "simplify-shapes",
    "fold-batchnorm", "fold-channel-ops-into-conv", "fuse-matmul-add", "fuse-pad-into-conv",
    "fuse-consecutive", "fuse-layernorm", "shape-inference", "fuse"};

// The pipeline that runs `pass` in those checks: after shape inference (some fusions need the ranks it
// records), or the whole fuse group.
inline std::string differential_pipeline(const std::string& pass) {
  return pass == "fuse" || pass == "shape-inference" ? pass : "shape-inference," + pass;
}

// ONNX text of one random graph (see the top of this file).
inline std::string random_graph(Choices choices) { return detail::Builder(std::move(choices)).build(); }

}  // namespace mopt::testing
