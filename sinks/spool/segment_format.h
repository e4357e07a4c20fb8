// The spool's on-disk format: segment header, record frame and checkpoint file. Shared by the log and
// by tests that build or damage files on purpose. All integers are little-endian. Checksums are
// zlib's CRC-32 (ISO-HDLC polynomial 0x04C11DB7, the one gzip uses), not CRC-32C.
//
//   segment file  NNNNNNNNNNNNNNNNNNNN.seg  (20-digit decimal id, ids consecutive)
//     header  [0,8) magic "TCGSPOOL" [8,12) version [12,16) header size (32) [16,24) segment id
//             [24,28) reserved, zero   [28,32) CRC-32 of bytes [0,28)
//     frames  [0,4) payload length N   [4,8) CRC-32 of (length bytes, payload)   [8,8+N) payload
//   checkpoint file  `checkpoint` (replaced atomically by swapping it with `checkpoint.spare`; earlier versions
//                    renamed `checkpoint.tmp` over it)
//             [0,8) magic "TCGSCKPT" [8,12) version [12,20) segment id [20,28) offset
//             [28,32) CRC-32 of bytes [0,28)
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace crm::sinks::spool::format {

inline constexpr std::string_view segment_magic = "TCGSPOOL";
inline constexpr std::string_view checkpoint_magic = "TCGSCKPT";
inline constexpr std::uint32_t segment_version = 1;
inline constexpr std::uint32_t checkpoint_version = 1;
inline constexpr std::size_t segment_header_size = 32;
inline constexpr std::size_t frame_header_size = 8;
inline constexpr std::size_t checkpoint_size = 32;
inline constexpr std::string_view checkpoint_file_name = "checkpoint";
inline constexpr std::string_view checkpoint_temp_file_name = "checkpoint.tmp";
inline constexpr std::string_view lock_file_name = "lock";
// Allocated beforehand, rewritten in place and swapped with `checkpoint` (the old one becomes the spare), so
// that checkpointing needs no free block; its contents are never read.
inline constexpr std::string_view checkpoint_spare_file_name = "checkpoint.spare";

inline void store_le32(char* out, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(v >> (8 * i));
}
inline void store_le64(char* out, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(v >> (8 * i));
}
inline std::uint32_t load_le32(const char* in) noexcept {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  return v;
}
inline std::uint64_t load_le64(const char* in) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  return v;
}

// zlib crc32 over `bytes`, continuing from `crc` (start with 0).
std::uint32_t crc32(std::uint32_t crc, std::string_view bytes) noexcept;

// The frame CRC covers the length field too, so a damaged length is caught even when it still
// points inside the file.
std::uint32_t frame_crc(std::string_view payload) noexcept;
void encode_frame_header(std::string_view payload, char* out) noexcept;  // writes frame_header_size bytes

struct frame_header {
  std::uint32_t length;
  std::uint32_t crc;
};
inline frame_header decode_frame_header(const char* in) noexcept { return {load_le32(in), load_le32(in + 4)}; }

void encode_segment_header(std::uint64_t segment_id, char* out) noexcept;  // writes segment_header_size bytes
// Empty when the header is valid for `segment_id`, else what is wrong with it.
std::optional<std::string> check_segment_header(std::string_view header, std::uint64_t segment_id);

std::string segment_file_name(std::uint64_t segment_id);
// True for exactly 20 decimal digits followed by ".seg".
[[nodiscard]] bool parse_segment_file_name(std::string_view name, std::uint64_t& segment_id) noexcept;

void encode_checkpoint(std::uint64_t segment_id, std::uint64_t offset, char* out) noexcept;  // checkpoint_size bytes
[[nodiscard]] bool decode_checkpoint(std::string_view bytes, std::uint64_t& segment_id, std::uint64_t& offset) noexcept;

}  // namespace crm::sinks::spool::format
