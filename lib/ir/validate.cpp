// Structural checks of nodes against their operators' assumptions; see validate.h.
#include "ir/validate.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <set>
#include <vector>

#include "util/error.h"

namespace mopt::ir {
namespace {

// Spatial pads, strides and kernels beyond this are not a model anyone trained; they overflow size math.
constexpr int64_t kMaxWindow = int64_t{1} << 31;

std::optional<size_t> declared_rank(const Value* v) {
  if (v == nullptr || !v->has_type()) return std::nullopt;
  const onnx::TypeProto& t = v->info().type();
  if (!t.has_tensor_type() || !t.tensor_type().has_shape()) return std::nullopt;
  return static_cast<size_t>(t.tensor_type().shape().dim_size());
}

std::optional<size_t> constant_rank(const Value* v) {
  if (v == nullptr) return std::nullopt;
  if (const Tensor* t = v->constant()) return t->dims().size();
  if (const Tensor* t = v->initializer()) return t->dims().size();
  return declared_rank(v);
}

class Checker {
 public:
  Checker(const Node& node, int64_t opset) : node_(node), opset_(opset) {}

  [[noreturn]] void fail_with(const std::string& what) const {
    throw Error(fmt::format("{}: {}", label(node_), what));
  }

  const Attribute* attr(const char* name) const { return node_.attribute(name); }

  const Graph& graph_attr(const char* name) const {
    const Attribute* a = attr(name);
    if (a == nullptr || a->graph == nullptr) fail_with(fmt::format("graph attribute {} is required", name));
    return *a->graph;
  }

  std::optional<std::vector<int64_t>> ints(const char* name) const {
    const Attribute* a = attr(name);
    if (a == nullptr) return std::nullopt;
    if (a->proto.type() != onnx::AttributeProto::INTS && a->proto.ints_size() == 0 && a->proto.type() != onnx::AttributeProto::UNDEFINED)
      fail_with(fmt::format("attribute {} must be a list of integers", name));
    return std::vector<int64_t>(a->proto.ints().begin(), a->proto.ints().end());
  }

  std::optional<int64_t> integer(const char* name) const {
    const Attribute* a = attr(name);
    if (a == nullptr) return std::nullopt;
    if (a->proto.type() != onnx::AttributeProto::INT && a->proto.type() != onnx::AttributeProto::UNDEFINED)
      fail_with(fmt::format("attribute {} must be an integer", name));
    return a->proto.i();
  }

  void at_least(const char* name, int64_t minimum) const {
    if (std::optional<int64_t> v = integer(name); v && *v < minimum)
      fail_with(fmt::format("{}={} is not allowed (it must be at least {})", name, *v, minimum));
  }

  void sized(const char* name, const std::optional<std::vector<int64_t>>& values, size_t want, const std::string& why) const {
    if (values && values->size() != want)
      fail_with(fmt::format("{} has {} value{}; {} needs {}", name, values->size(), values->size() == 1 ? "" : "s", why, want));
  }

  void each_in(const char* name, const std::optional<std::vector<int64_t>>& values, int64_t lo, int64_t hi) const {
    if (!values) return;
    for (int64_t v : *values) {
      if (v < lo || v > hi) fail_with(fmt::format("{} holds {}, outside [{}, {}]", name, v, lo, hi));
    }
  }

  // A rank the model declares for input `index`, which the operator needs at least `minimum` of.
  std::optional<size_t> input_rank(size_t index, size_t minimum, const char* what) const {
    const std::optional<size_t> r = declared_rank(node_.input(index));
    if (r && *r < minimum) fail_with(fmt::format("{} has rank {}; it needs at least {}", what, *r, minimum));
    return r;
  }

  void axis_in_rank(const char* name, std::optional<size_t> rank, bool one_past = false) const {
    const std::optional<int64_t> axis = integer(name);
    if (!axis || !rank) return;
    const int64_t r = static_cast<int64_t>(*rank) + (one_past ? 1 : 0);
    if (*axis < -r || *axis >= r) fail_with(fmt::format("{}={} is outside [{}, {}] for a rank-{} input", name, *axis, -r, r - 1, *rank));
  }

  // Conv, ConvTranspose and the pools: the window attributes agree with each other and with the input.
  void window(bool weighted, bool transpose) const {
    const std::optional<size_t> x_rank = input_rank(0, 3, "the input (N, C, spatial...)");
    const auto kernel = ints("kernel_shape"), strides = ints("strides"), dilations = ints("dilations"), pads = ints("pads");
    std::optional<size_t> k;
    if (kernel) k = kernel->size();
    else if (weighted) {
      if (const std::optional<size_t> w = constant_rank(node_.input(1)); w && *w >= 2) k = *w - 2;
    }
    if (!k && x_rank) k = *x_rank - 2;
    if (!weighted && !kernel) fail_with("kernel_shape is required");
    if (k && *k == 0) fail_with("kernel_shape is empty; the operator needs at least one spatial dim");
    if (k && x_rank && *k != *x_rank - 2)
      fail_with(fmt::format("the kernel has {} spatial dim{} but the input has {}", *k, *k == 1 ? "" : "s", *x_rank - 2));
    if (k) {
      const std::string why = fmt::format("a {}-D window", *k);
      sized("strides", strides, *k, why);
      sized("dilations", dilations, *k, why);
      sized("pads", pads, 2 * *k, why);
      if (transpose) {
        sized("output_padding", ints("output_padding"), *k, why);
        const auto output_shape = ints("output_shape");
        if (output_shape && output_shape->size() != *k && output_shape->size() != *k + 2)
          fail_with(fmt::format("output_shape has {} values; {} needs {} (or {} with N and C)", output_shape->size(), why, *k, *k + 2));
        each_in("output_shape", output_shape, 0, kMaxWindow);
        each_in("output_padding", ints("output_padding"), 0, kMaxWindow);
      }
    }
    each_in("kernel_shape", kernel, 1, kMaxWindow);
    each_in("strides", strides, 1, kMaxWindow);
    each_in("dilations", dilations, 1, kMaxWindow);
    each_in("pads", pads, 0, kMaxWindow);
    if (weighted) at_least("group", 1);
    if (const Attribute* a = attr("auto_pad")) {
      static const std::set<std::string> modes = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
      if (!modes.count(a->proto.s())) fail_with(fmt::format("auto_pad '{}' is not NOTSET, SAME_UPPER, SAME_LOWER or VALID", printable(a->proto.s())));
    }
    if (weighted) {
      if (node_.input(1) == nullptr) fail_with("it has no weight input");
      if (const std::optional<size_t> w = constant_rank(node_.input(1)); w && x_rank && *w != *x_rank)
        fail_with(fmt::format("the weight has rank {} but the input has rank {}", *w, *x_rank));
    }
  }

  void run() const {
    const std::string& op = node_.op_type();
    if (!node_.is_default_domain()) return;
    if (op == "Conv") window(true, false);
    else if (op == "ConvTranspose") window(true, true);
    else if (op == "MaxPool" || op == "AveragePool" || op == "LpPool") window(false, false);
    else if (op == "ConvInteger" || op == "QLinearConv") {
      at_least("group", 1);
      each_in("strides", ints("strides"), 1, kMaxWindow);
      each_in("dilations", ints("dilations"), 1, kMaxWindow);
      each_in("pads", ints("pads"), 0, kMaxWindow);
      const auto kernel = ints("kernel_shape");
      each_in("kernel_shape", kernel, 1, kMaxWindow);
      if (kernel) {
        const std::string why = fmt::format("a {}-D window", kernel->size());
        sized("strides", ints("strides"), kernel->size(), why);
        sized("dilations", ints("dilations"), kernel->size(), why);
        sized("pads", ints("pads"), 2 * kernel->size(), why);
      }
    } else if (op == "DepthToSpace" || op == "SpaceToDepth") {
      if (!integer("blocksize")) fail_with("blocksize is required");
      at_least("blocksize", 1);
      if (const std::optional<size_t> r = declared_rank(node_.input(0)); r && *r != 4)
        fail_with(fmt::format("the input has rank {}; it needs rank 4 (N, C, H, W)", *r));
    } else if (op == "BatchNormalization") {
      input_rank(0, 2, "the input (N, C, ...)");
      for (size_t i = 1; i < 5 && i < node_.inputs().size(); ++i) {
        if (const std::optional<size_t> r = constant_rank(node_.input(i)); r && *r != 1)
          fail_with(fmt::format("input {} (scale, B, mean, var) has rank {}; it must be 1-D, one value per channel", i, *r));
      }
    } else if (op == "STFT") {  // ONNX 1.12's shape inference reads the signal's dims past a rank-1 input
      if (const std::optional<size_t> r = declared_rank(node_.input(0)); r && *r != 3)
        fail_with(fmt::format("the signal has rank {}; it needs rank 3 (batch, length, 1 or 2)", *r));
    } else if (op == "InstanceNormalization") {
      input_rank(0, 3, "the input (N, C, spatial...)");
    } else if (op == "LRN") {
      at_least("size", 1);
      input_rank(0, 3, "the input (N, C, spatial...)");
    } else if (op == "Gather" || op == "GatherElements") {
      axis_in_rank("axis", input_rank(0, 1, "the data input"));
    } else if (op == "Concat") {
      if (node_.inputs().empty()) fail_with("it has no inputs");
      if (!integer("axis")) fail_with("axis is required");
      for (size_t i = 0; i < node_.inputs().size(); ++i) axis_in_rank("axis", input_rank(i, 1, "an input"));
    } else if (op == "Split") {
      axis_in_rank("axis", input_rank(0, 1, "the input"));
      if (const auto split = ints("split")) each_in("split", split, 0, std::numeric_limits<int32_t>::max());
    } else if (op == "Softmax" || op == "LogSoftmax" || op == "Hardmax" || op == "Flatten" || op == "CumSum" ||
               op == "ArgMax" || op == "ArgMin") {
      axis_in_rank("axis", declared_rank(node_.input(0)), op == "Flatten");
    } else if (op == "Transpose") {
      const auto perm = ints("perm");
      const std::optional<size_t> r = declared_rank(node_.input(0));
      if (perm) {
        if (r && perm->size() != *r) fail_with(fmt::format("perm has {} values for a rank-{} input", perm->size(), *r));
        std::vector<int64_t> sorted = *perm;
        std::sort(sorted.begin(), sorted.end());
        for (size_t i = 0; i < sorted.size(); ++i) {
          if (sorted[i] != static_cast<int64_t>(i)) fail_with(fmt::format("perm [{}] is not a permutation of 0..{}", fmt::join(*perm, ","), perm->size() - 1));
        }
      }
    } else if (op == "LSTM" || op == "GRU" || op == "RNN") {
      if (!integer("hidden_size")) fail_with("hidden_size is required");
      at_least("hidden_size", 1);
      if (const Attribute* a = attr("direction")) {
        const std::string& d = a->proto.s();
        if (d != "forward" && d != "reverse" && d != "bidirectional")
          fail_with(fmt::format("direction '{}' is not forward, reverse or bidirectional", printable(d)));
      }
      input_rank(0, 3, "the input (seq, batch, features)");
    } else if (op == "OneHot") {
      if (const Value* values = node_.input(2)) {
        if (const Tensor* t = values->constant(); t && t->numel() != 2)
          fail_with(fmt::format("values holds {} elements; it must hold 2 (off, on)", t->numel()));
      }
    } else if (op == "Gemm") {
      for (size_t i = 0; i < 2; ++i) {
        if (const std::optional<size_t> r = constant_rank(node_.input(i)); r && *r != 2)
          fail_with(fmt::format("input {} has rank {}; Gemm multiplies 2-D matrices", i == 0 ? "A" : "B", *r));
      }
    } else if (op == "If") {
      graph_attr("then_branch");
      graph_attr("else_branch");
    } else if (op == "Loop") {
      const Graph& body = graph_attr("body");
      // Body inputs: iteration number, condition, then the carried values (the node's inputs after M and cond).
      const size_t carried = node_.inputs().size() >= 2 ? node_.inputs().size() - 2 : 0;
      if (body.inputs().size() != carried + 2)
        fail_with(fmt::format("the body takes {} inputs; with {} carried value(s) it needs {}", body.inputs().size(), carried, carried + 2));
      if (body.outputs().empty()) fail_with("the body has no outputs (it must return the condition)");
    } else if (op == "Scan") {
      const Graph& body = graph_attr("body");
      const std::optional<int64_t> scans = integer("num_scan_inputs");
      if (!scans) fail_with("num_scan_inputs is required");
      const int64_t first = opset_ < 9 ? 1 : 0;  // opset 8 leads with sequence_lens
      const int64_t inputs = static_cast<int64_t>(node_.inputs().size()) - first;
      if (*scans < 1 || *scans > inputs)
        fail_with(fmt::format("num_scan_inputs={} is outside [1, {}] for {} input(s)", *scans, inputs, inputs));
      if (static_cast<int64_t>(body.inputs().size()) != inputs)
        fail_with(fmt::format("the body takes {} inputs; the node gives it {}", body.inputs().size(), inputs));
      const int64_t states = inputs - *scans;
      if (static_cast<int64_t>(body.outputs().size()) < states)
        fail_with(fmt::format("the body returns {} outputs; it must return at least its {} state(s)", body.outputs().size(), states));
      for (const char* list : {"scan_input_axes", "scan_input_directions"}) sized(list, ints(list), static_cast<size_t>(*scans), "num_scan_inputs");
    }
    // Tile, Expand, Reshape: shapes come at run time; the kernels check them with overflow-checked sizes.
  }

 private:
  const Node& node_;
  int64_t opset_;
};

}  // namespace

std::string printable(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = s[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool valid = len > 0 && i + len <= n;
    for (size_t k = 1; valid && k < len; ++k) valid = (s[i + k] & 0xc0) == 0x80;
    if (!valid || (len == 1 && (c < 0x20 || c == 0x7f))) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
      continue;
    }
    out.append(text, i, len);
    i += len;
  }
  return out;
}

std::string label(const Node& node) {
  return node.name().empty() ? node.op_type() : fmt::format("{} '{}'", node.op_type(), printable(node.name()));
}

void validate_node(const Node& node, int64_t opset) { Checker(node, opset).run(); }

void validate_model(const Model& model) {
  model.for_each_graph([&](const Graph& g) {
    for (const Node* n : g.nodes()) validate_node(*n, model.opset(n->domain()));
  });
}

}  // namespace mopt::ir
