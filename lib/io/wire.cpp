// Wire-format scanner and writer for tensor payloads; see wire.h.
#include "io/wire.h"

#include <cstdint>
#include <cstring>

#include "util/error.h"

namespace mopt::io::wire {
namespace {

enum class Msg { Model, Graph, Node, Attribute, Tensor, Payload, None };

// Which fields lead to payload positions (field numbers from onnx.proto).
Msg child_kind(Msg parent, uint64_t field) {
  switch (parent) {
    case Msg::Model: return field == 7 ? Msg::Graph : Msg::None;                     // graph
    case Msg::Graph: return field == 1 ? Msg::Node : field == 5 ? Msg::Tensor : Msg::None;  // node, initializer
    case Msg::Node: return field == 5 ? Msg::Attribute : Msg::None;                  // attribute
    case Msg::Attribute:                                                            // t, g, graphs
      return field == 5 ? Msg::Tensor : (field == 6 || field == 11) ? Msg::Graph : Msg::None;
    case Msg::Tensor: return field == 9 ? Msg::Payload : Msg::None;                  // raw_data
    default: return Msg::None;
  }
}

constexpr int kMaxDepth = 100;  // protobuf's own default recursion limit

struct Reader {
  const std::byte* begin;
  const std::byte* p;
  const std::byte* end;

  [[noreturn]] void malformed(const char* what) const {
    fail("truncated or malformed protobuf ({} at byte {})", what, p - begin);
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) malformed("varint runs past the end");
      auto b = static_cast<uint8_t>(*p++);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    malformed("varint longer than 10 bytes");
  }
  // Skips a field's value; returns {value start, value length} for length-delimited fields.
  std::span<const std::byte> skip(uint32_t wire_type) {
    switch (wire_type) {
      case 0: varint(); return {};
      case 1: need(8); p += 8; return {};
      case 5: need(4); p += 4; return {};
      case 2: {
        uint64_t n = varint();
        need(n);
        std::span<const std::byte> value(p, n);
        p += n;
        return value;
      }
      default: malformed("unsupported wire type");
    }
  }
  void need(uint64_t n) {
    if (n > static_cast<uint64_t>(end - p)) malformed("field runs past the end");
  }
};

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void lift(Msg kind, std::span<const std::byte> msg, const std::byte* file_begin, std::string& out,
          std::vector<std::span<const std::byte>>& payloads, int depth) {
  if (depth > kMaxDepth) fail("truncated or malformed protobuf (nesting deeper than {})", kMaxDepth);
  Reader r{file_begin, msg.data(), msg.data() + msg.size()};
  while (r.p < r.end) {
    const std::byte* field_start = r.p;
    const uint64_t tag = r.varint();
    const uint64_t field = tag >> 3;
    const auto wire_type = static_cast<uint32_t>(tag & 7);
    if (field == 0) r.malformed("field number 0");
    std::span<const std::byte> value = r.skip(wire_type);
    const Msg child = wire_type == 2 ? child_kind(kind, field) : Msg::None;
    if (child == Msg::None) {
      out.append(reinterpret_cast<const char*>(field_start), static_cast<size_t>(r.p - field_start));
    } else if (child == Msg::Payload) {
      put_varint(out, tag);
      put_varint(out, kMarkerSize);
      out += marker(payloads.size());
      payloads.push_back(value);
    } else {
      std::string inner;
      lift(child, value, file_begin, inner, payloads, depth + 1);
      put_varint(out, tag);
      put_varint(out, inner.size());
      out += inner;
    }
  }
}

struct Expander {
  const std::vector<ir::Bytes>& payloads;
  Expanded& out;

  size_t last_verbatim = SIZE_MAX;  // the index of the last chunk of skeleton bytes

  // Skeleton bytes (they outlive the chunks; no owner needed), merged with the chunk before when it is
  // skeleton bytes that end where these begin.
  void verbatim(const std::byte* p, size_t n) {
    if (n == 0) return;
    if (!out.chunks.empty() && last_verbatim == out.chunks.size() - 1 && out.chunks.back().data() + out.chunks.back().size() == p) {
      out.chunks.back() = ir::Bytes(nullptr, {out.chunks.back().data(), out.chunks.back().size() + n});
    } else {
      out.chunks.emplace_back(nullptr, std::span<const std::byte>(p, n));
      last_verbatim = out.chunks.size() - 1;
    }
  }
  // A field header (tag and length) kept in the arena, so chunks can point at it.
  ir::Bytes header(uint64_t tag, uint64_t length) {
    std::string& h = out.arena.emplace_back();
    put_varint(h, tag);
    put_varint(h, length);
    return ir::Bytes(nullptr, {reinterpret_cast<const std::byte*>(h.data()), h.size()});
  }

  uint64_t expand(Msg kind, std::span<const std::byte> msg) {
    Reader r{msg.data(), msg.data(), msg.data() + msg.size()};
    uint64_t size = 0;
    while (r.p < r.end) {
      const std::byte* field_start = r.p;
      const uint64_t tag = r.varint();
      const auto wire_type = static_cast<uint32_t>(tag & 7);
      std::span<const std::byte> value = r.skip(wire_type);
      const Msg child = wire_type == 2 ? child_kind(kind, tag >> 3) : Msg::None;
      if (child == Msg::None) {
        verbatim(field_start, static_cast<size_t>(r.p - field_start));
        size += static_cast<uint64_t>(r.p - field_start);
      } else if (child == Msg::Payload) {
        const uint64_t index = marker_index(std::string(reinterpret_cast<const char*>(value.data()), value.size()));
        const ir::Bytes& payload = payloads.at(index);
        out.chunks.push_back(header(tag, payload.size()));
        size += out.chunks.back().size() + payload.size();
        if (!payload.empty()) out.chunks.push_back(payload);
      } else {
        // The header's length is known only after the child is expanded: reserve its slot first.
        const size_t slot = out.chunks.size();
        out.chunks.emplace_back();
        const uint64_t inner = expand(child, value);
        out.chunks[slot] = header(tag, inner);
        size += out.chunks[slot].size() + inner;
      }
    }
    return size;
  }
};

}  // namespace

std::string marker(uint64_t index) {
  std::string m(kMarkerSize, '\0');
  for (size_t i = 0; i < kMarkerSize; ++i) m[i] = static_cast<char>((index >> (8 * i)) & 0xff);
  return m;
}

uint64_t marker_index(const std::string& raw_data) {
  if (raw_data.size() != kMarkerSize) fail("internal error: tensor payload marker has {} bytes", raw_data.size());
  uint64_t index = 0;
  for (size_t i = 0; i < kMarkerSize; ++i) index |= static_cast<uint64_t>(static_cast<uint8_t>(raw_data[i])) << (8 * i);
  return index;
}

std::string lift_payloads(std::span<const std::byte> model_bytes, std::vector<std::span<const std::byte>>& payloads) {
  std::string skeleton;
  lift(Msg::Model, model_bytes, model_bytes.data(), skeleton, payloads, 0);
  return skeleton;
}

void expand_payloads(const std::string& skeleton, const std::vector<ir::Bytes>& payloads, Expanded& out) {
  Expander e{payloads, out};
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(skeleton.data()), skeleton.size());
  out.size = e.expand(Msg::Model, bytes);
}

}  // namespace mopt::io::wire
