// fuse-matmul-add: turns a 2-D MatMul by a constant weight followed by the Add of a bias into Gemm.
//
//   Before:  a[M,K] -> MatMul(a, W[K,N]) -> t -> Add(t, c) -> y        c: [N], [1,N], [M,N] or scalar
//   After:   a[M,K] -> Gemm(a, W, c) -> y
//
// Gemm only takes 2-D A, so a's rank must be known to be 2 (from the model's types; run
// shape-inference first). The bias must broadcast to [M, N] without growing it (Gemm's C is
// unidirectional), and t must feed only the Add. Higher-rank MatMuls (transformer blocks) stay:
// flattening them would add two Reshapes, which is no gain.
#include "pass/rule.h"
#include "rewrite/rewrite.h"

namespace mopt::passes {
namespace {

using rewrite::rank_of;

struct MatMulAdd {
  ir::Node* matmul;
  ir::Value* bias;
};

class FuseMatMulAddRule : public pass::RewriteRule<MatMulAdd> {
 public:
  std::vector<std::string> anchors() const override { return {"Add"}; }
  std::string counter(const MatMulAdd&) const override { return "matmul-add-fused"; }
  std::string graph_refusal(const ir::Graph& graph) const override {
    return graph.model()->opset() < 7 ? "Gemm's broadcasting C needs opset 7" : "";
  }

  pass::Matched<MatMulAdd> match(const ir::Node& add) const override {
    for (size_t side = 0; side < 2; ++side) {
      ir::Value* t = add.input(side);
      ir::Node* matmul = t ? t->producer() : nullptr;
      if (matmul == nullptr || matmul->owner() != add.owner() || !matmul->is_op("MatMul")) continue;
      if (!rewrite::has_single_use(*matmul->output(0))) return pass::refuse("the MatMul output has other readers");
      const ir::Tensor* w = matmul->input(1) ? matmul->input(1)->constant() : nullptr;
      if (w == nullptr || w->dims().size() != 2) return pass::refuse("the MatMul weight is not a 2-D constant");
      if (rank_of(*matmul->input(0)) != std::optional<size_t>(2)) return pass::refuse("the MatMul input is not known to be 2-D");
      const int32_t dtype = w->dtype();
      if (dtype != ir::dtype::kFloat && dtype != ir::dtype::kDouble && dtype != ir::dtype::kFloat16)
        return pass::refuse("Gemm needs a float type");
      ir::Value* bias = add.input(1 - side);
      const ir::Tensor* c = bias ? bias->constant() : nullptr;
      if (c == nullptr || c->dtype() != dtype) return pass::refuse("the added operand is not a constant of the same type");
      const int64_t n = w->dims()[1];
      const std::vector<int64_t> cd = c->dims();
      std::optional<std::vector<int64_t>> a_shape = rewrite::static_shape(*matmul->input(0));
      const bool fits = cd.empty() || (cd.size() == 1 && (cd[0] == n || cd[0] == 1)) ||
                        (cd.size() == 2 && (cd[1] == n || cd[1] == 1) && (cd[0] == 1 || (a_shape && cd[0] == (*a_shape)[0])));
      if (!fits) return pass::refuse("the bias does not broadcast to [M, N] without growing it");
      return MatMulAdd{matmul, bias};
    }
    return pass::no_match();
  }

  void apply(ir::Graph& graph, ir::Node& add, const MatMulAdd& m) const override {
    ir::Node& matmul = *m.matmul;
    ir::Node* gemm = graph.create_node("Gemm", {matmul.input(0), matmul.input(1), m.bias}, 1, &matmul, "", matmul.output(0)->name());
    if (!matmul.name().empty()) gemm->mutable_proto().set_name(matmul.name());
    graph.replace_all_uses(add.output(0), gemm->output(0));  // a fresh node output can take an output's name
    graph.erase(&add);
    graph.erase(&matmul);
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& FuseMatMulAddOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createFuseMatMulAdd(const pass::Options&) { return pass::make_rule_pass<FuseMatMulAddRule>(); }

}  // namespace mopt::passes
