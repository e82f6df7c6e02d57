// Protobuf wire-level handling of the parts of an ONNX model that hold tensor payloads, so that the
// payloads never pass through protobuf's parser or serializer:
//
//   load:  file (memory-mapped) --lift_payloads--> skeleton (small) + payload spans into the map
//   save:  skeleton with markers --expand_payloads--> chunks: skeleton pieces and payload spans
//
// In the skeleton, the raw_data of each tensor at a "payload position" is replaced by an 8-byte
// little-endian index into the payload list. Payload positions are the tensors the IR models:
//   ModelProto.graph -> GraphProto.initializer[*] and GraphProto.node[*].attribute[*].t, recursively
//   through attribute.g and attribute.graphs.
// Both directions use the same schema table, so reader and writer agree on what a marker is.
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <vector>

#include "ir/tensor.h"
#include "util/file.h"

namespace mopt::io::wire {

constexpr size_t kMarkerSize = 8;

// Throws mopt::Error("... truncated or malformed protobuf ...") on bad input.
std::string lift_payloads(std::span<const std::byte> model_bytes, std::vector<std::span<const std::byte>>& payloads);

std::string marker(uint64_t index);
// The payload index stored in a marker; throws if `raw_data` is not a marker.
uint64_t marker_index(const std::string& raw_data);

// The bytes of the full model: pieces of `skeleton` interleaved with payloads (which may be produced on
// demand: write them with ir::Bytes::stream). `arena` holds the small headers the chunks point into; keep
// it and `skeleton` alive while the chunks are used.
struct Expanded {
  std::vector<ir::Bytes> chunks;
  std::deque<std::string> arena;
  uint64_t size = 0;
};
void expand_payloads(const std::string& skeleton, const std::vector<ir::Bytes>& payloads, Expanded& out);

}  // namespace mopt::io::wire
