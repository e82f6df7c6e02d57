// fuse-matmul-add: turns a 2-D MatMul by a constant weight followed by the Add of a bias into Gemm.
//
//   Before:  a[M,K] -> MatMul(a, W[K,N]) -> t -> Add(t, c) -> y        c: [N], [1,N], [M,N] or scalar
//   After:   a[M,K] -> Gemm(a, W, c) -> y
//
// Gemm only takes 2-D A, so a's rank must be known to be 2 (from the model's types; run
// shape-inference first). The bias must broadcast to [M, N] without growing it (Gemm's C is
// unidirectional), and t must feed only the Add. Higher-rank MatMuls (transformer blocks) stay:
// flattening them would add two Reshapes, which is no gain.
#include "pass/pass.h"
#include "rewrite/rewrite.h"

namespace mopt::passes {
namespace {

using rewrite::rank_of;

class FuseMatMulAddPass : public pass::GraphPass {
 protected:
  bool run_on_graph(ir::Graph& graph, pass::PassContext& ctx) override {
    if (graph.model()->opset() < 7) return false;  // Gemm's broadcasting C needs opset 7
    bool changed = false;
    for (ir::Node* add : graph.nodes()) {
      if (add->dead() || !add->is_op("Add")) continue;
      for (size_t side = 0; side < 2; ++side) {
        ir::Value* t = add->input(side);
        ir::Node* matmul = t ? t->producer() : nullptr;
        if (matmul == nullptr || matmul->owner() != &graph || !matmul->is_op("MatMul")) continue;
        if (const char* why = fuse(graph, *matmul, *add, side)) {
          ctx.explain_skip(*add, why);
        } else {
          ctx.count("matmul-add-fused");
          changed = true;
        }
        break;
      }
    }
    return changed;
  }

 private:
  static const char* fuse(ir::Graph& graph, ir::Node& matmul, ir::Node& add, size_t side) {
    if (!rewrite::has_single_use(*matmul.output(0))) return "the MatMul output has other readers";
    const ir::Tensor* w = matmul.input(1) ? matmul.input(1)->constant() : nullptr;
    if (w == nullptr || w->dims().size() != 2) return "the MatMul weight is not a 2-D constant";
    if (rank_of(*matmul.input(0)) != std::optional<size_t>(2)) return "the MatMul input is not known to be 2-D";
    const int32_t dtype = w->dtype();
    if (dtype != ir::dtype::kFloat && dtype != ir::dtype::kDouble && dtype != ir::dtype::kFloat16)
      return "Gemm needs a float type";
    ir::Value* bias = add.input(1 - side);
    const ir::Tensor* c = bias ? bias->constant() : nullptr;
    if (c == nullptr || c->dtype() != dtype) return "the added operand is not a constant of the same type";
    const int64_t n = w->dims()[1];
    const std::vector<int64_t> cd = c->dims();
    std::optional<std::vector<int64_t>> a_shape = rewrite::static_shape(*matmul.input(0));
    const bool fits = cd.empty() || (cd.size() == 1 && (cd[0] == n || cd[0] == 1)) ||
                      (cd.size() == 2 && (cd[1] == n || cd[1] == 1) &&
                       (cd[0] == 1 || (a_shape && cd[0] == (*a_shape)[0])));
    if (!fits) return "the bias does not broadcast to [M, N] without growing it";
    ir::Node* gemm = graph.create_node("Gemm", {matmul.input(0), matmul.input(1), bias}, 1, &matmul, "",
                                       matmul.output(0)->name());
    if (!matmul.name().empty()) gemm->mutable_proto().set_name(matmul.name());
    graph.replace_all_uses(add.output(0), gemm->output(0));  // a fresh node output can take an output's name
    graph.erase(&add);
    graph.erase(&matmul);
    return nullptr;
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& FuseMatMulAddOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createFuseMatMulAdd(const pass::Options&) { return std::make_unique<FuseMatMulAddPass>(); }

}  // namespace mopt::passes
