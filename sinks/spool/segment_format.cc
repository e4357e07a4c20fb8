#include "sinks/spool/segment_format.h"

#include <cstring>

#include <zlib.h>

namespace crm::sinks::spool::format {

std::uint32_t crc32(std::uint32_t crc, std::string_view bytes) noexcept {
  // zlib takes uInt lengths; feed large inputs in slices.
  const auto* p = reinterpret_cast<const Bytef*>(bytes.data());
  std::size_t n = bytes.size();
  uLong c = crc;
  while (n > 0) {
    const uInt chunk = n > (1u << 30) ? (1u << 30) : static_cast<uInt>(n);
    c = ::crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<std::uint32_t>(c);
}

std::uint32_t frame_crc(std::string_view payload) noexcept {
  char length[4];
  store_le32(length, static_cast<std::uint32_t>(payload.size()));
  return crc32(crc32(0, {length, 4}), payload);
}

void encode_frame_header(std::string_view payload, char* out) noexcept {
  store_le32(out, static_cast<std::uint32_t>(payload.size()));
  store_le32(out + 4, frame_crc(payload));
}

void encode_segment_header(std::uint64_t segment_id, char* out) noexcept {
  std::memcpy(out, segment_magic.data(), 8);
  store_le32(out + 8, segment_version);
  store_le32(out + 12, static_cast<std::uint32_t>(segment_header_size));
  store_le64(out + 16, segment_id);
  store_le32(out + 24, 0);
  store_le32(out + 28, crc32(0, {out, 28}));
}

std::optional<std::string> check_segment_header(std::string_view header, std::uint64_t segment_id) {
  if (header.size() < segment_header_size) return "the header is truncated";
  if (header.substr(0, 8) != segment_magic) return "the magic is not TCGSPOOL (not a spool segment)";
  if (load_le32(header.data() + 28) != crc32(0, header.substr(0, 28))) return "the header CRC does not match";
  if (const auto v = load_le32(header.data() + 8); v != segment_version) {
    return "unsupported segment version " + std::to_string(v);
  }
  if (load_le32(header.data() + 12) != segment_header_size) return "unexpected header size";
  if (const auto id = load_le64(header.data() + 16); id != segment_id) {
    return "the header names segment " + std::to_string(id) + ", not the file's segment";
  }
  return std::nullopt;
}

std::string segment_file_name(std::uint64_t segment_id) {
  std::string digits = std::to_string(segment_id);
  return std::string(20 - digits.size(), '0') + digits + ".seg";
}

bool parse_segment_file_name(std::string_view name, std::uint64_t& segment_id) noexcept {
  if (name.size() != 24 || name.substr(20) != ".seg") return false;
  std::uint64_t id = 0;
  for (std::size_t i = 0; i < 20; ++i) {
    const char c = name[i];
    if (c < '0' || c > '9') return false;
    const std::uint64_t digit = static_cast<std::uint64_t>(c - '0');
    if (id > (UINT64_MAX - digit) / 10) return false;
    id = id * 10 + digit;
  }
  segment_id = id;
  return true;
}

void encode_checkpoint(std::uint64_t segment_id, std::uint64_t offset, char* out) noexcept {
  std::memcpy(out, checkpoint_magic.data(), 8);
  store_le32(out + 8, checkpoint_version);
  store_le64(out + 12, segment_id);
  store_le64(out + 20, offset);
  store_le32(out + 28, crc32(0, {out, 28}));
}

bool decode_checkpoint(std::string_view bytes, std::uint64_t& segment_id, std::uint64_t& offset) noexcept {
  if (bytes.size() != checkpoint_size) return false;
  if (bytes.substr(0, 8) != checkpoint_magic) return false;
  if (load_le32(bytes.data() + 8) != checkpoint_version) return false;
  if (load_le32(bytes.data() + 28) != crc32(0, bytes.substr(0, 28))) return false;
  segment_id = load_le64(bytes.data() + 12);
  offset = load_le64(bytes.data() + 20);
  return true;
}

}  // namespace crm::sinks::spool::format
