// Shared test helpers: models from ONNX text syntax, graph printing for golden comparisons, temp dirs.
#pragma once
#include <onnx/defs/parser.h>
#include <onnx/defs/printer.h>
#include <google/protobuf/util/message_differencer.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "data/feeds.h"
#include "eval/accuracy.h"
#include "exec/executor.h"
#include "io/model_io.h"
#include "ir/proto.h"
#include "pass/manager.h"
#include "rewrite/rewrite.h"
#include "util/error.h"

namespace mopt::test {

namespace fs = std::filesystem;

inline onnx::ModelProto parse_proto(const std::string& text) {
  onnx::ModelProto proto;
  auto status = onnx::OnnxParser::Parse(proto, text.c_str());
  if (!status.IsOK()) throw std::runtime_error("bad ONNX text in test: " + status.ErrorMessage() + "\n" + text);
  return proto;
}

// An array of `dtype` and `shape` holding `values` (as T's bytes).
template <typename T>
exec::Array array(int32_t dtype, exec::Shape shape, std::vector<T> values) {
  exec::Array a(dtype, shape);
  if (static_cast<int64_t>(values.size()) != a.numel()) throw std::runtime_error("test array: values do not fill the shape");
  if (!values.empty()) std::memcpy(a.bytes(), values.data(), values.size() * sizeof(T));
  return a;
}

// Parses ONNX text and loads it through the real loader (serialized bytes -> wire reader -> IR).
inline std::unique_ptr<ir::Model> parse_model(const std::string& text) {
  return io::load_model_from_bytes(parse_proto(text).SerializeAsString());
}

// The tests' one output comparison: eval::scaled_max_difference (NaN-aware), as --verify-numerics uses.
inline double scaled_max_diff(const exec::Array& expected, const exec::Array& actual) {
  return eval::scaled_max_difference(expected, actual);
}

// Runs both models on seeded random inputs (shaped from `before`'s inputs) and returns "" when every
// output agrees within max|diff| <= tolerance * max(1, max|expected|); otherwise what differs. Sets
// *ran = false (and returns "") when the executor cannot run the model or its inputs have no shape.
inline std::string output_difference(const ir::Model& before, const ir::Model& after, double tolerance = 1e-6,
                                     bool* ran = nullptr, int seeds = 2) {
  if (ran) *ran = false;
  std::vector<data::Feeds> samples;
  try {
    if (!exec::unsupported_operators(before).empty()) return "";
    // Inputs the rewrite made static (convert's shapes/batch) get data of that shape for both models.
    data::ShapeOverrides shapes;
    for (const ir::Value* v : after.graph().inputs()) {
      if (std::optional<std::vector<int64_t>> dims = rewrite::static_shape(*v)) shapes.shapes[v->name()] = *dims;
    }
    for (int s = 0; s < seeds; ++s) samples.push_back(data::random_feeds(before, shapes, static_cast<uint64_t>(s)));
  } catch (const Error&) {
    return "";
  }
  eval::Outputs a = eval::run_samples(before, samples, 1);
  std::vector<data::Feeds> renamed;  // by position where the rewrite renamed inputs (rename-values)
  for (const data::Feeds& f : samples) renamed.push_back(data::feeds_for(after, before, f));
  eval::Outputs b = eval::run_samples(after, renamed, 1);
  if (ran) *ran = true;
  if (a.names.size() != b.names.size()) return "different number of outputs";
  for (size_t s = 0; s < samples.size(); ++s) {
    for (size_t o = 0; o < a.names.size(); ++o) {
      const exec::Array& x = a.per_sample[s][o];
      const exec::Array& y = b.per_sample[s][o];
      // A float16/bfloat16 conversion without kept I/O types may turn a float output into a 16-bit one.
      const bool to_16bit = x.dtype() == ir::dtype::kFloat && exec::is_16bit_float(y.dtype());
      if ((x.dtype() != y.dtype() && !to_16bit) || x.shape() != y.shape()) return "output '" + a.names[o] + "' changed type or shape";
      const double worst = scaled_max_diff(x, y);
      if (!(worst <= tolerance)) {
        return fmt::format("output '{}' differs by up to {} of max(1, max|output|) (tolerance {})", a.names[o], worst, tolerance);
      }
    }
  }
  return "";
}

inline std::string print_graph(const ir::Model& model) {
  std::ostringstream os;
  os << ir::export_model(model).graph();
  return os.str();
}

// Tensors written in ONNX text come as typed fields (float_data, ...), rewritten ones as raw_data: compare
// the bytes, not the encoding. Likewise an empty domain equals an unset one.
inline void to_raw(onnx::TensorProto& t) {
  if (t.has_raw_data() || t.data_type() == ir::dtype::kString || t.data_location() == onnx::TensorProto::EXTERNAL) return;
  const ir::Bytes bytes = ir::Tensor(t).data();
  t.clear_float_data();
  t.clear_int32_data();
  t.clear_int64_data();
  t.clear_double_data();
  t.clear_uint64_data();
  t.set_raw_data(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

inline void tensors_to_raw(onnx::GraphProto& g) {
  for (auto& t : *g.mutable_initializer()) to_raw(t);
  for (auto& n : *g.mutable_node()) {
    if (n.domain().empty()) n.clear_domain();  // the text parser sets domain "", new nodes leave it unset
    n.clear_name();                            // generated; not compared
    for (auto& a : *n.mutable_attribute()) {
      if (a.has_t()) to_raw(*a.mutable_t());
      if (a.has_g()) tensors_to_raw(*a.mutable_g());
      for (auto& sub : *a.mutable_graphs()) tensors_to_raw(sub);
    }
  }
}

// Differences between two models' graphs, field by field (node names aside: they are generated), or ""
// when equal. The ONNX text printer leaves out initializers and value_info, so it cannot judge this.
inline std::string graph_difference(const ir::Model& actual, const ir::Model& expected) {
  onnx::ModelProto a = ir::export_model(actual), e = ir::export_model(expected);
  tensors_to_raw(*a.mutable_graph());
  tensors_to_raw(*e.mutable_graph());
  google::protobuf::util::MessageDifferencer differencer;
  differencer.IgnoreField(onnx::NodeProto::descriptor()->FindFieldByName("name"));
  std::string diff;
  differencer.ReportDifferencesToString(&diff);
  differencer.Compare(e.graph(), a.graph());
  return diff;
}

// Live nodes of type `op` in every graph of the model (subgraphs included).
inline int64_t count_op(const ir::Model& m, const std::string& op) {
  int64_t n = 0;
  m.for_each_graph([&](const ir::Graph& g) {
    for (const ir::Node* node : g.nodes()) n += node->op_type() == op;
  });
  return n;
}

inline pass::PipelineResult run(ir::Model& model, const std::string& pipeline) {
  pass::ManagerOptions options;
  options.verify_each = true;
  return pass::run_pipeline(pass::parse_pipeline(pipeline), model, options);
}

inline int64_t counter(const pass::PipelineResult& r, const std::string& name) {
  int64_t total = 0;
  for (const auto& p : r.passes) {
    for (const auto& [k, v] : p.counters) total += k == name ? v : 0;
  }
  return total;
}

// A fresh empty folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "mopt-test-XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

inline void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The message of the mopt::Error that `fn` throws, or "" if it throws none.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace mopt::test
