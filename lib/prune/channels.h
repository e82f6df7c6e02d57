// Structured (channel) pruning: removes whole output channels of Conv (filters) and output features of
// Gemm, chosen by the L1 or L2 norm of their weights, and rewrites every reader of those channels so the
// model gets genuinely smaller and faster. A channel is removed only when every path from the producer
// to the channels' next weighted consumer is understood; otherwise the producer keeps all its channels
// and the summary says why.
#pragma once
#include <string>
#include <vector>

#include "ir/ir.h"

namespace mopt::prune {

struct ChannelConfig {
  double ratio = 0.25;  // fraction of each producer's channels removed
  bool l2 = false;      // rank channels by L2 instead of L1 norm
  std::vector<std::string> exclude_nodes;
};

struct ChannelRecord {
  std::string node;
  int64_t channels_before = 0, channels_after = 0;
};

struct ChannelSummary {
  std::vector<ChannelRecord> pruned;
  std::vector<std::pair<std::string, std::string>> kept;  // producer, why its channels stay
};

// Prunes the main graph in place. The model must not be used for shapes until shape inference runs
// again: shapes recorded for rewritten values are updated on the channel axis only.
ChannelSummary prune_channels(ir::Model& model, const ChannelConfig& config);

}  // namespace mopt::prune
