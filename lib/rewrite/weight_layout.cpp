// Weight layouts; see weight_layout.h.
#include "rewrite/weight_layout.h"

#include "rewrite/rewrite.h"

namespace mopt::rewrite {

std::optional<WeightLayout> weight_layout(const ir::Node& node, size_t weight_rank) {
  if (!node.is_default_domain() || weight_rank < 2) return std::nullopt;
  const std::string& op = node.op_type();
  if (op == "Conv") return weight_rank >= 3 ? std::optional<WeightLayout>({0, 1}) : std::nullopt;
  if (op == "ConvTranspose") return weight_rank >= 3 ? std::optional<WeightLayout>({1, 0}) : std::nullopt;
  if (op == "MatMul") return WeightLayout{weight_rank - 1, weight_rank - 2};
  if (op == "Gemm" && weight_rank == 2) {
    return attr_int(node, "transB", 0) != 0 ? WeightLayout{0, 1} : WeightLayout{1, 0};
  }
  return std::nullopt;
}

}  // namespace mopt::rewrite
