#include "transform/canonical/event_codec.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>

#include "transform/text/error_category.h"

namespace crm::transform {
namespace {

constexpr std::uint8_t receipt_time_bit = 0x80;



// The string fields, in wire order: transform's tables (canonical_event.h). Adding a field to the
// structs trips the size checks below, so the codec cannot silently drop it.

constexpr std::size_t communication_string_count = std::size(communication_texts);
constexpr std::size_t touchpoint_string_count = std::size(touchpoint_texts);
// Versions 1 and 2 had neither lead_ref nor campaign_ref, the last two of each record's strings.
constexpr std::size_t v2_record_strings_missing = 2;
static_assert(communication_texts[communication_string_count - 2].member == &communication::lead_ref &&
              communication_texts[communication_string_count - 1].member == &communication::campaign_ref);
static_assert(touchpoint_texts[touchpoint_string_count - 2].member == &touchpoint::lead_ref &&
              touchpoint_texts[touchpoint_string_count - 1].member == &touchpoint::campaign_ref);
// 56 bytes of scalars plus occurred_at_is_receipt_time (bit 7 of the direction byte) padded to 8.
static_assert(sizeof(void*) != 8 || sizeof(communication) == 64 + 16 * communication_string_count,
              "communication changed: encode the new field and bump event_codec_version");
static_assert(sizeof(void*) != 8 || sizeof(touchpoint) == 64 + 16 * touchpoint_string_count,
              "touchpoint changed: encode the new field and bump event_codec_version");
static_assert(sizeof(void*) != 8 || sizeof(rejection) == 8 + 16 * std::size(rejection_texts),
              "rejection changed: encode the new field and bump event_codec_version");

constexpr char magic[2] = {'E', 'B'};
constexpr std::size_t max_varint = 10;
constexpr std::uint8_t flag_is_conversion = 1;
constexpr std::uint8_t flag_has_conversion_value = 2;
constexpr std::uint8_t flag_value_follows = 4;
// The fewest bytes each record kind can take, to refuse counts the input cannot hold before reserving.
constexpr std::size_t min_communication_bytes = 16 + 2 + 2 + 3 + communication_string_count;
constexpr std::size_t min_touchpoint_bytes = 16 + 2 + 2 + 3 + touchpoint_string_count;
// Versions 2 and 3 had no idempotency_key, the last of rejection_texts; version 1 neither tenant_id before it.
constexpr std::size_t v3_rejection_strings = std::size(rejection_texts) - 1;
constexpr std::size_t v1_rejection_strings = v3_rejection_strings - 1;
static_assert(rejection_texts[v3_rejection_strings].member == &rejection::idempotency_key);
static_assert(rejection_texts[v1_rejection_strings].member == &rejection::tenant_id);

// The strings of a rejection in `version`.
constexpr std::size_t rejection_strings_of(std::uint8_t version) noexcept {
  return version == 1 ? v1_rejection_strings : version < 4 ? v3_rejection_strings : std::size(rejection_texts);
}

constexpr std::uint64_t zigzag(std::int64_t v) noexcept {
  return (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
}
constexpr std::int64_t unzigzag(std::uint64_t v) noexcept {
  return static_cast<std::int64_t>((v >> 1) ^ (~(v & 1) + 1));
}
// Differences in modular arithmetic: every pair of int64 values round-trips, extremes included.
constexpr std::int64_t delta(std::int64_t value, std::int64_t base) noexcept {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(value) - static_cast<std::uint64_t>(base));
}
constexpr std::int64_t undelta(std::int64_t d, std::int64_t base) noexcept {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(base) + static_cast<std::uint64_t>(d));
}

// Writes into a buffer sized beforehand for the worst case, so no bounds checks or reallocation per field.
class writer {
 public:
  explicit writer(char* out) : p_(out) {}
  void byte(std::uint8_t v) noexcept { *p_++ = static_cast<char>(v); }
  void bytes(const void* data, std::size_t n) noexcept {
    if (n != 0) std::memcpy(p_, data, n);
    p_ += n;
  }
  void varint(std::uint64_t v) noexcept {
    while (v >= 0x80) {
      *p_++ = static_cast<char>(v | 0x80);
      v >>= 7;
    }
    *p_++ = static_cast<char>(v);
  }
  void svarint(std::int64_t v) noexcept { varint(zigzag(v)); }
  void text(std::string_view s) noexcept {
    varint(s.size());
    bytes(s.data(), s.size());
  }
  void float64(double v) noexcept {
    const auto bits = std::bit_cast<std::uint64_t>(v);
    for (int i = 0; i < 8; ++i) byte(static_cast<std::uint8_t>(bits >> (8 * i)));
  }
  char* position() const noexcept { return p_; }

 private:
  char* p_;
};

class reader {
 public:
  explicit reader(std::string_view in)
      : p_(reinterpret_cast<const unsigned char*>(in.data())), end_(p_ + in.size()) {}
  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - p_); }
  codec_errc error() const noexcept { return error_; }
  bool ok() const noexcept { return error_ == codec_errc{}; }

  bool byte(std::uint8_t& v) noexcept {
    if (p_ == end_) return fail(codec_errc::truncated);
    v = *p_++;
    return true;
  }
  bool bytes(void* out, std::size_t n) noexcept {
    if (remaining() < n) return fail(codec_errc::truncated);
    std::memcpy(out, p_, n);
    p_ += n;
    return true;
  }
  bool varint(std::uint64_t& v) noexcept {
    std::uint64_t result = 0;
    for (std::size_t i = 0; i < max_varint; ++i) {
      if (p_ == end_) return fail(codec_errc::truncated);
      const std::uint8_t b = *p_++;
      // The tenth byte holds only the top bit of a 64-bit value.
      if (i == max_varint - 1 && b > 1) return fail(codec_errc::bad_varint);
      result |= static_cast<std::uint64_t>(b & 0x7f) << (7 * i);
      if ((b & 0x80) == 0) {
        v = result;
        return true;
      }
    }
    return fail(codec_errc::bad_varint);
  }
  bool svarint(std::int64_t& v) noexcept {
    std::uint64_t u = 0;
    if (!varint(u)) return false;
    v = unzigzag(u);
    return true;
  }
  bool text(text_arena& arena, std::string_view& out) {
    std::uint64_t n = 0;
    if (!varint(n)) return false;
    if (n > remaining()) return fail(codec_errc::truncated);
    out = arena.copy({reinterpret_cast<const char*>(p_), static_cast<std::size_t>(n)});
    p_ += n;
    return true;
  }
  bool float64(double& v) noexcept {
    if (remaining() < 8) return fail(codec_errc::truncated);
    std::uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) bits |= static_cast<std::uint64_t>(p_[i]) << (8 * i);
    p_ += 8;
    v = std::bit_cast<double>(bits);
    return true;
  }
  template <typename Enum>
  bool enumeration(Enum& out, Enum last) noexcept {
    std::uint8_t v = 0;
    if (!byte(v)) return false;
    if (v > static_cast<std::uint8_t>(last)) return fail(codec_errc::value_out_of_range);
    out = static_cast<Enum>(v);
    return true;
  }
  bool direction_and_flag(communication& c) noexcept {
    std::uint8_t v = 0;
    if (!byte(v)) return false;
    c.occurred_at_is_receipt_time = (v & receipt_time_bit) != 0;
    v = static_cast<std::uint8_t>(v & ~receipt_time_bit);
    if (v > static_cast<std::uint8_t>(direction::inbound)) return fail(codec_errc::value_out_of_range);
    c.direction_ = static_cast<direction>(v);
    return true;
  }
  bool fail(codec_errc e) noexcept {
    if (ok()) error_ = e;
    return false;
  }

 private:
  const unsigned char* p_;
  const unsigned char* end_;
  codec_errc error_{};
};

// What every communication and touchpoint record starts with: its id, occurred_at as a delta to the previous
// record's (events of one batch arrive close together: deltas keep timestamps to a few bytes), received_at
// as a delta to its own occurred_at, lead_id, campaign_id.
template <typename Id, typename Event>
void write_head(writer& w, const Id& id, const Event& e, std::int64_t& previous) noexcept {
  w.bytes(id.data(), id.size());
  w.svarint(delta(e.occurred_at, previous));
  w.svarint(delta(e.received_at, e.occurred_at));
  previous = e.occurred_at;
  w.svarint(e.lead_id);
  w.svarint(e.campaign_id);
}

template <typename Id, typename Event>
bool read_head(reader& r, Id& id, Event& e, std::int64_t& previous) noexcept {
  std::int64_t d_occurred = 0, d_received = 0;
  if (!r.bytes(id.data(), id.size()) || !r.svarint(d_occurred) || !r.svarint(d_received) || !r.svarint(e.lead_id) ||
      !r.svarint(e.campaign_id)) {
    return false;
  }
  e.occurred_at = undelta(d_occurred, previous);
  e.received_at = undelta(d_received, e.occurred_at);
  previous = e.occurred_at;
  return true;
}

template <typename Record, std::size_t N>
std::size_t text_bytes(const Record& r, const text_field<Record> (&fields)[N]) noexcept {
  std::size_t n = 0;
  for (const auto& field : fields) n += (r.*field.member).size() + max_varint;
  return n;
}

std::size_t worst_case_size(const event_batch& batch) noexcept {
  std::size_t n = 4 + 3 * max_varint;
  for (const auto& c : batch.communications) n += 16 + 4 * max_varint + 3 + text_bytes(c, communication_texts);
  for (const auto& t : batch.touchpoints) n += 16 + 4 * max_varint + 3 + 8 + text_bytes(t, touchpoint_texts);
  for (const auto& r : batch.rejections) n += max_varint + text_bytes(r, rejection_texts);
  return n;
}

}  // namespace

void encode_event_batch(const event_batch& batch, std::string& out) {
  out.resize(worst_case_size(batch));
  writer w(out.data());
  // A batch is written in the oldest version that holds it (without references 2, without a dead letter's
  // idempotency key 3), which readers of earlier releases take too (a rolling upgrade may upgrade collectors
  // before `write` consumers, and a rollback reads the log back).
  bool refs = false, keys = false;
  for (const auto& c : batch.communications) refs = refs || !c.lead_ref.empty() || !c.campaign_ref.empty();
  for (const auto& t : batch.touchpoints) refs = refs || !t.lead_ref.empty() || !t.campaign_ref.empty();
  for (const auto& r : batch.rejections) keys = keys || !r.idempotency_key.empty();
  const std::uint8_t version = keys ? event_codec_version : refs ? 3 : 2;
  const std::size_t skipped = version == 2 ? v2_record_strings_missing : 0;
  const std::size_t rejection_strings = rejection_strings_of(version);
  w.bytes(magic, sizeof magic);
  w.byte(version);
  w.byte(0);
  w.varint(batch.communications.size());
  w.varint(batch.touchpoints.size());
  w.varint(batch.rejections.size());

  std::int64_t previous = 0;
  for (const auto& c : batch.communications) {
    write_head(w, c.event_id, c, previous);
    w.byte(static_cast<std::uint8_t>(c.channel_));
    // Bit 7 of the direction byte: occurred_at is the receipt time (records without it decode as 0).
    w.byte(static_cast<std::uint8_t>(static_cast<std::uint8_t>(c.direction_) |
                                      (c.occurred_at_is_receipt_time ? receipt_time_bit : 0)));
    w.byte(static_cast<std::uint8_t>(c.status));
    for (std::size_t f = 0; f < communication_string_count - skipped; ++f) w.text(c.*communication_texts[f].member);
  }
  previous = 0;
  for (const auto& t : batch.touchpoints) {
    write_head(w, t.touchpoint_id, t, previous);
    w.byte(static_cast<std::uint8_t>(t.type));
    w.byte(static_cast<std::uint8_t>(t.group));
    // The value's bits are kept even when has_conversion_value is false: the batch must round-trip.
    const bool value_follows = std::bit_cast<std::uint64_t>(t.conversion_value) != 0;
    w.byte(static_cast<std::uint8_t>((t.is_conversion ? flag_is_conversion : 0) |
                                     (t.has_conversion_value ? flag_has_conversion_value : 0) |
                                     (value_follows ? flag_value_follows : 0)));
    if (value_follows) w.float64(t.conversion_value);
    for (std::size_t f = 0; f < touchpoint_string_count - skipped; ++f) w.text(t.*touchpoint_texts[f].member);
  }
  previous = 0;
  for (const auto& r : batch.rejections) {
    w.svarint(delta(r.received_at, previous));
    previous = r.received_at;
    for (std::size_t f = 0; f < rejection_strings; ++f) w.text(r.*rejection_texts[f].member);
  }
  out.resize(static_cast<std::size_t>(w.position() - out.data()));
}

std::error_code decode_event_batch(std::string_view bytes, event_batch& out) {
  out.clear();
  auto ec = append_decoded_event_batch(bytes, out);
  if (ec) out.clear();
  return ec;
}

std::error_code append_decoded_event_batch(std::string_view bytes, event_batch& out) {
  reader r(bytes);
  const std::size_t communications_before = out.communications.size(), touchpoints_before = out.touchpoints.size(),
                    rejections_before = out.rejections.size();
  auto failed = [&](codec_errc e) -> std::error_code {
    out.communications.resize(communications_before);
    out.touchpoints.resize(touchpoints_before);
    out.rejections.resize(rejections_before);
    return e;
  };

  char head[2];
  std::uint8_t version = 0;
  std::uint8_t flags = 0;
  if (!r.bytes(head, sizeof head)) return failed(r.error());
  if (std::memcmp(head, magic, sizeof magic) != 0) return failed(codec_errc::bad_magic);
  if (!r.byte(version)) return failed(r.error());
  if (version < 1 || version > event_codec_version) return failed(codec_errc::unsupported_version);
  const std::size_t missing = version < 3 ? v2_record_strings_missing : 0;
  const std::size_t communication_strings = communication_string_count - missing;
  const std::size_t touchpoint_strings = touchpoint_string_count - missing;
  const std::size_t rejection_strings = rejection_strings_of(version);
  const std::size_t rejection_bytes = 1 + rejection_strings;
  if (!r.byte(flags)) return failed(r.error());
  if (flags != 0) return failed(codec_errc::unsupported_version);

  std::uint64_t n_communications = 0, n_touchpoints = 0, n_rejections = 0;
  if (!r.varint(n_communications) || !r.varint(n_touchpoints) || !r.varint(n_rejections)) return failed(r.error());
  // Each count is checked on its own first so the sum below cannot overflow.
  const std::uint64_t left = r.remaining();
  const std::size_t min_communication = min_communication_bytes - missing;
  const std::size_t min_touchpoint = min_touchpoint_bytes - missing;
  if (n_communications > left / min_communication || n_touchpoints > left / min_touchpoint ||
      n_rejections > left / rejection_bytes ||
      n_communications * min_communication + n_touchpoints * min_touchpoint +
              n_rejections * rejection_bytes > left) {
    return failed(codec_errc::too_many_records);
  }
  // Geometric growth when appending many records one message at a time.
  auto reserve = [](auto& v, std::uint64_t more) {
    const std::size_t want = v.size() + static_cast<std::size_t>(more);
    if (want > v.capacity()) v.reserve(std::max(want, v.capacity() * 2));
  };
  reserve(out.communications, n_communications);
  reserve(out.touchpoints, n_touchpoints);
  reserve(out.rejections, n_rejections);

  std::int64_t previous = 0;
  for (std::uint64_t i = 0; i < n_communications; ++i) {
    communication& c = out.communications.emplace_back();
    bool good = read_head(r, c.event_id, c, previous) && r.enumeration(c.channel_, channel::push) &&
                r.direction_and_flag(c) &&
                r.enumeration(c.status, comm_status::spam);
    for (std::size_t f = 0; good && f < communication_strings; ++f) {
      good = r.text(out.text, c.*communication_texts[f].member);
    }
    if (!good) return failed(r.error());
  }
  previous = 0;
  for (std::uint64_t i = 0; i < n_touchpoints; ++i) {
    touchpoint& t = out.touchpoints.emplace_back();
    std::uint8_t bits = 0;
    bool good = read_head(r, t.touchpoint_id, t, previous) && r.enumeration(t.type, touch_type::identify) &&
                r.enumeration(t.group, channel_group::other) && r.byte(bits);
    if (!good) return failed(r.error());
    if ((bits & ~(flag_is_conversion | flag_has_conversion_value | flag_value_follows)) != 0) {
      return failed(codec_errc::value_out_of_range);
    }
    t.is_conversion = (bits & flag_is_conversion) != 0;
    t.has_conversion_value = (bits & flag_has_conversion_value) != 0;
    t.conversion_value = 0;
    if ((bits & flag_value_follows) != 0 && !r.float64(t.conversion_value)) return failed(r.error());
    for (std::size_t f = 0; good && f < touchpoint_strings; ++f) good = r.text(out.text, t.*touchpoint_texts[f].member);
    if (!good) return failed(r.error());
  }
  previous = 0;
  for (std::uint64_t i = 0; i < n_rejections; ++i) {
    rejection& j = out.rejections.emplace_back();
    std::int64_t d_received = 0;
    bool good = r.svarint(d_received);
    for (std::size_t f = 0; good && f < rejection_strings; ++f) good = r.text(out.text, j.*rejection_texts[f].member);
    if (!good) return failed(r.error());
    j.received_at = undelta(d_received, previous);
    previous = j.received_at;
  }
  if (r.remaining() != 0) return failed(codec_errc::trailing_bytes);
  return {};
}

const std::error_category& codec_category() noexcept {
  // "spool.codec": its name since the log had it.
  static const enum_error_category<codec_errc> instance("spool.codec", [](codec_errc e) noexcept -> const char* {
    switch (e) {
      case codec_errc::truncated: return "the encoded event batch is truncated";
      case codec_errc::bad_magic: return "the bytes are not an encoded event batch";
      case codec_errc::unsupported_version: return "the encoded event batch has an unsupported version";
      case codec_errc::bad_varint: return "the encoded event batch holds an overlong integer";
      case codec_errc::value_out_of_range: return "the encoded event batch holds an undefined enum or flag value";
      case codec_errc::too_many_records: return "the encoded event batch claims more records than its bytes can hold";
      case codec_errc::trailing_bytes: return "the encoded event batch has trailing bytes";
    }
    return nullptr;
  });
  return instance;
}

}  // namespace crm::transform
