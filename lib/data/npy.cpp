// .npy/.npz/.pb readers and the .npy writer. Only little-endian, C-order arrays of the dtypes the
// executor knows are accepted; anything else is a clear error naming the file.
#include "data/npy.h"

#include <fmt/format.h>
#include <zlib.h>

#include <cstring>
#include <fstream>

#include "ir/proto.h"
#include "util/error.h"
#include "util/file.h"

namespace mopt::data {
namespace d = ir::dtype;
using exec::Array;

namespace {

// Regular files only (a FIFO or device must not block or stream forever), mapped, then copied once.
std::string read_all(const std::string& path) {
  const std::shared_ptr<const MappedFile> file = MappedFile::open(path);
  const std::span<const std::byte> bytes = file->bytes();
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

int32_t dtype_of_descr(const std::string& descr) {
  static const std::map<std::string, int32_t> table = {
      {"<f4", d::kFloat}, {"<f8", d::kDouble}, {"<f2", d::kFloat16}, {"<i8", d::kInt64}, {"<i4", d::kInt32},
      {"<i2", d::kInt16}, {"|i1", d::kInt8},   {"<u8", d::kUint64},  {"<u4", d::kUint32}, {"<u2", d::kUint16},
      {"|u1", d::kUint8}, {"|b1", d::kBool}};
  std::string key = descr;
  if (!key.empty() && key[0] == '=') key[0] = '<';
  auto it = table.find(key);
  return it == table.end() ? 0 : it->second;
}

const char* descr_of(int32_t dtype) {
  switch (dtype) {
    case d::kFloat: return "<f4";
    case d::kDouble: return "<f8";
    case d::kFloat16: return "<f2";
    case d::kInt64: return "<i8";
    case d::kInt32: return "<i4";
    case d::kInt16: return "<i2";
    case d::kInt8: return "|i1";
    case d::kUint64: return "<u8";
    case d::kUint32: return "<u4";
    case d::kUint16: return "<u2";
    case d::kUint8: return "|u1";
    case d::kBool: return "|b1";
    default: fail("cannot write {} arrays as .npy", d::name(dtype));
  }
}

// The text after "'key':" in a .npy header dict, with leading spaces skipped ("" if absent).
std::string header_value(const std::string& header, const std::string& key) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) return "";
  at = header.find(':', at);
  if (at == std::string::npos) return "";
  at = header.find_first_not_of(' ', at + 1);
  return at == std::string::npos ? "" : header.substr(at);
}

uint32_t le32(const unsigned char* p) { return p[0] | p[1] << 8 | p[2] << 16 | static_cast<uint32_t>(p[3]) << 24; }
uint16_t le16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint64_t le64(const unsigned char* p) { return le32(p) | static_cast<uint64_t>(le32(p + 4)) << 32; }

}  // namespace

Array parse_npy(const std::string& bytes, const std::string& what) {
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) fail("{}: not a .npy file", what);
  auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
  int major = u[6];
  size_t header_len = major == 1 ? le16(u + 8) : le32(u + 8);
  size_t start = major == 1 ? 10 : 12;
  if (start + header_len > bytes.size()) fail("{}: truncated .npy header", what);
  std::string header = bytes.substr(start, header_len);
  std::string descr_field = header_value(header, "descr");
  if (descr_field.size() < 2 || descr_field[0] != '\'' || descr_field.find('\'', 1) == std::string::npos) {
    fail("{}: .npy header has no descr", what);
  }
  std::string descr = descr_field.substr(1, descr_field.find('\'', 1) - 1);
  int32_t dtype = dtype_of_descr(descr);
  if (!dtype) fail("{}: unsupported .npy dtype '{}'", what, descr);
  if (header_value(header, "fortran_order").rfind("True", 0) == 0) fail("{}: Fortran-order arrays are not supported", what);
  std::string shape_field = header_value(header, "shape");
  if (shape_field.empty() || shape_field[0] != '(' || shape_field.find(')') == std::string::npos) {
    fail("{}: .npy header has no shape", what);
  }
  // "(3, 4)", "(5,)", "()": integers separated by commas, nothing else.
  exec::Shape shape;
  const std::string dims = shape_field.substr(1, shape_field.find(')') - 1);
  for (size_t i = 0; i < dims.size();) {
    const unsigned char c = static_cast<unsigned char>(dims[i]);
    if (c == ' ' || c == ',') {
      ++i;
      continue;
    }
    if (!std::isdigit(c)) fail("{}: malformed .npy shape '({})'", what, dims);
    int64_t dim = 0;
    for (; i < dims.size() && std::isdigit(static_cast<unsigned char>(dims[i])); ++i) {
      if (__builtin_mul_overflow(dim, 10, &dim) || __builtin_add_overflow(dim, dims[i] - '0', &dim))
        fail("{}: .npy shape '({})' has a dimension too large for any file", what, dims);
    }
    shape.push_back(dim);
  }
  // The declared size is checked against the file before anything is allocated.
  const size_t body = start + header_len;
  const uint64_t count = static_cast<uint64_t>(exec::numel(shape));
  uint64_t need = 0;
  if (__builtin_mul_overflow(count, static_cast<uint64_t>(exec::element_size(dtype)), &need) || bytes.size() - body < need) {
    fail("{}: truncated .npy data ({} bytes for shape {}, {} expected)", what, bytes.size() - body, exec::shape_string(shape),
         need ? fmt::format("{}", need) : "more than fit in memory");
  }
  Array a(dtype, shape);
  if (a.nbytes()) std::memcpy(a.bytes(), bytes.data() + body, a.nbytes());
  return a;
}

Array read_npy(const std::string& path) { return parse_npy(read_all(path), path); }

std::string encode_npy(const Array& array) {
  std::string shape;
  for (int64_t dim : array.shape()) shape += fmt::format("{}, ", dim);
  if (array.rank() > 1) shape.resize(shape.size() - 2);
  if (array.rank() == 1) shape.resize(shape.size() - 1);
  std::string header = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}", descr_of(array.dtype()), shape);
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(1);
  out += static_cast<char>(0);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(reinterpret_cast<const char*>(array.bytes()), array.nbytes());
  return out;
}

void write_npy(const std::string& path, const Array& array) {
  std::string bytes = encode_npy(array);
  AtomicFileWriter writer(path);
  writer.write(bytes);
  writer.commit();
}

std::map<std::string, Array> read_npz(const std::string& path) { return parse_npz(read_all(path), path); }

std::map<std::string, Array> parse_npz(const std::string& zip, const std::string& path) {
  auto* u = reinterpret_cast<const unsigned char*>(zip.data());
  // End of central directory: scan back for its signature.
  if (zip.size() < 22) fail("{}: not an .npz (zip) file", path);
  size_t eocd = std::string::npos;
  for (size_t i = zip.size() - 22 + 1; i-- > 0 && zip.size() - i <= 65557;) {
    if (le32(u + i) == 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd == std::string::npos) fail("{}: not an .npz (zip) file", path);
  uint64_t entries = le16(u + eocd + 10);
  uint64_t dir = le32(u + eocd + 16);
  if (dir == 0xffffffff && eocd >= 20 && le32(u + eocd - 20) == 0x07064b50) {  // zip64
    uint64_t z64 = le64(u + eocd - 20 + 8);
    if (z64 + 56 > zip.size()) fail("{}: corrupt zip64 directory", path);
    entries = le64(u + z64 + 32);
    dir = le64(u + z64 + 48);
  }
  std::map<std::string, Array> out;
  size_t p = dir;
  for (uint64_t e = 0; e < entries; ++e) {
    if (p > zip.size() || zip.size() - p < 46 || le32(u + p) != 0x02014b50) fail("{}: corrupt zip directory", path);
    uint16_t method = le16(u + p + 10);
    uint64_t csize = le32(u + p + 20), usize = le32(u + p + 24), local = le32(u + p + 42);
    uint16_t name_len = le16(u + p + 28), extra_len = le16(u + p + 30), comment_len = le16(u + p + 32);
    if (p + 46 + name_len + extra_len > zip.size()) fail("{}: corrupt zip directory", path);
    std::string name = zip.substr(p + 46, name_len);
    // zip64 extra field holds the 64-bit sizes/offset that are 0xffffffff above.
    const size_t extra_end = p + 46 + name_len + extra_len;
    for (size_t x = p + 46 + name_len; x + 4 <= extra_end;) {
      uint16_t id = le16(u + x), len = le16(u + x + 2);
      if (x + 4 + len > extra_end) fail("{}: corrupt zip extra field", path);
      if (id == 1) {
        size_t q = x + 4;
        auto take = [&](uint64_t& field) {
          if (field != 0xffffffff) return;
          if (q + 8 > x + 4 + len) fail("{}: corrupt zip64 field", path);
          field = le64(u + q);
          q += 8;
        };
        take(usize);
        take(csize);
        take(local);
      }
      x += 4 + len;
    }
    p += 46 + name_len + extra_len + comment_len;
    if (local > zip.size() || zip.size() - local < 30 || le32(u + local) != 0x04034b50) fail("{}: corrupt zip entry {}", path, name);
    size_t data = local + 30 + le16(u + local + 26) + le16(u + local + 28);
    if (data > zip.size() || csize > zip.size() - data) fail("{}: truncated zip entry {}", path, name);
    // Deflate expands at most ~1032:1: a larger claimed size is a lie, refused before allocating it.
    if (method == 8 && usize > csize * 1032 + 64) fail("{}: zip entry {} claims {} bytes from {} compressed", path, name, usize, csize);
    std::string member;
    if (method == 0) {
      member = zip.substr(data, csize);
    } else if (method == 8) {
      member.resize(usize);
      z_stream zs{};
      if (inflateInit2(&zs, -15) != Z_OK) fail("{}: zlib init failed", path);
      zs.next_in = const_cast<Bytef*>(u + data);
      zs.avail_in = static_cast<uInt>(csize);
      zs.next_out = reinterpret_cast<Bytef*>(member.data());
      zs.avail_out = static_cast<uInt>(usize);
      int rc = inflate(&zs, Z_FINISH);
      inflateEnd(&zs);
      if (rc != Z_STREAM_END) fail("{}: cannot inflate zip entry {}", path, name);
    } else {
      fail("{}: zip entry {} uses unsupported compression method {}", path, name, method);
    }
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0) name.resize(name.size() - 4);
    out[name] = parse_npy(member, path + ":" + name);
  }
  return out;
}

Array read_tensor_pb(const std::string& path, std::string* name) {
  onnx::TensorProto proto;
  std::string bytes = read_all(path);
  if (!proto.ParseFromString(bytes)) fail("{}: not a serialized onnx.TensorProto", path);
  if (name) *name = proto.name();
  std::string raw = proto.raw_data();
  proto.clear_raw_data();
  ir::Tensor t(proto);
  if (!raw.empty() || proto.data_type() != 0) {
    if (!raw.empty()) t.set_raw(ir::Bytes::take(std::move(raw)));
  }
  if (proto.data_type() == d::kString) fail("{}: string tensors are not supported", path);
  return Array::from_tensor(t);
}

}  // namespace mopt::data
