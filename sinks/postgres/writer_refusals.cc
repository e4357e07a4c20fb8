// The writer's refusals (declared in writer.h): a batch the database refused rows of, split down to them, and a batch
// with events older than the retention cutoff, written without them. Each refused event becomes a dead letter with the
// reason, in a transaction of its own or of the rest of its batch; the rest of the batch is stored as usual.
#include "sinks/postgres/writer.h"

#include "sinks/postgres/row_json.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace crm::sinks::postgres {

namespace {

// "<what> (<reason>): <the server's words>", without the trailing newline the server ends them with.
std::string refusal_text(std::string_view what, const failure& why) {
  std::string text = std::string(what) + " (" + why.reason + "): " + why.message;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// The dead letter of an event the writer refuses: the event as canonical JSON (what `rejected replay` reads), where it
// came from (the part's source and position: replay finds the ones its pages made by it), why. Its texts in `text`.
template <class Event>
transform::rejection refused_event(const Event& e, const batch_info& info, std::string_view reason,
                                   transform::text_arena& text) {
  transform::rejection rej;
  rej.received_at = e.received_at;
  rej.tenant_id = e.tenant_id;
  rej.source = text.copy(info.source + " " + info.position);
  rej.reason = text.copy(reason);
  rej.raw = text.copy(to_canonical_json(e));
  return rej;
}

}  // namespace

retention_refusal::retention_refusal(transform::timestamp_us cutoff_us, std::string cutoff_day)
    : std::runtime_error("events older than the retention cutoff " + cutoff_day),
      cutoff(cutoff_us),
      day(std::move(cutoff_day)) {}

batch_result writer::write_split(const view& v, const batch_info& info, const failure& why, const transform::uuid& batch_id,
                                 bool rewrite, commit_point* out) {
  const std::size_t nc = v.communications.size(), nt = v.touchpoints.size(), nr = v.rejections.size();
  const std::size_t n = nc + nt + nr;
  if (n <= 1) {
    // One record the database refuses: keep it as a rejection with the database's reason.
    if (nr == 1) {
      // A dead letter the database refuses (its texts are stored whatever they hold; its received_at can be out
      // of range when it was decoded from elsewhere): kept once more, received now, the refusal in its reason.
      // Refused again: the writer cannot keep it, and says so.
      constexpr std::string_view again = " (refused dead letter)";
      if (info.position.ends_with(again)) {
        throw write_error("the database refused a dead-letter record (" + why.reason + "): " + why.message);
      }
      transform::rejection rej = v.rejections[0];
      std::string reason = refusal_text("the database refused this dead letter", why);
      reason.append("; received_at is when it was refused; its reason was: ").append(rej.reason);
      rej.reason = reason;
      rej.received_at = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
      batch_info sub{info.source, info.position + std::string(again)};
      return write_view(view{{}, {}, std::span<const transform::rejection>(&rej, 1)}, sub,
                        derived_batch_id(batch_id, 4), rewrite, out);  // one dead letter in, one kept
    }
    transform::text_arena text(4096);
    const std::string reason = refusal_text("database refused the row", why);
    const transform::rejection rej = nc == 1 ? refused_event(v.communications[0], info, reason, text)
                                             : refused_event(v.touchpoints[0], info, reason, text);
    batch_info sub{info.source, info.position + " (refused row)"};
    auto r = write_view(view{{}, {}, std::span<const transform::rejection>(&rej, 1)}, sub, derived_batch_id(batch_id, 3),
                        rewrite, out);
    r.communications_in = nc;
    r.touchpoints_in = nt;
    r.rejected_in = 0;
    r.refused_by_database = 1;
    return r;
  }
  // Halve in record order: communications, then touchpoints, then rejections.
  const std::size_t mid = n / 2;
  auto take = [](auto span, std::size_t from, std::size_t to) {
    from = std::min(from, span.size());
    to = std::min(to, span.size());
    return span.subspan(from, to - from);
  };
  view a{take(v.communications, 0, mid), take(v.touchpoints, 0, mid > nc ? mid - nc : 0),
         take(v.rejections, 0, mid > nc + nt ? mid - nc - nt : 0)};
  view b{take(v.communications, mid, nc), take(v.touchpoints, mid > nc ? mid - nc : 0, nt),
         take(v.rejections, mid > nc + nt ? mid - nc - nt : 0, nr)};
  batch_result r = write_view(a, batch_info{info.source, info.position + " (part 1)"}, derived_batch_id(batch_id, 1),
                              rewrite, out);
  r += write_view(b, batch_info{info.source, info.position + " (part 2)"}, derived_batch_id(batch_id, 2), rewrite, out);
  return r;
}

batch_result writer::write_retained(const view& v, const batch_info& info, const retention_refusal& why,
                                    const transform::uuid& batch_id, bool rewrite, commit_point* out) {
  // The part without its events older than the cutoff (their texts stay in the caller's batch), and a dead letter for
  // each of them: one per event the batch holds (encode()'s de-duplicated rows); a copy repeated in the batch counts
  // as a duplicate, as it would have when stored.
  transform::event_batch part;
  const std::string reason = "older than the retention cutoff " + why.day +
                             " set by partitions retain: its month is past retention and is not stored again";
  auto old = [&](const auto& e) { return e.occurred_at < why.cutoff; };
  std::uint64_t old_events = 0;
  for (const auto& c : v.communications) {
    if (!old(c)) part.communications.push_back(c);
    else ++old_events;
  }
  for (const auto& t : v.touchpoints) {
    if (!old(t)) part.touchpoints.push_back(t);
    else ++old_events;
  }
  part.rejections.assign(v.rejections.begin(), v.rejections.end());
  auto refuse = [&](const auto& e) {
    if (old(e)) part.rejections.push_back(refused_event(e, info, reason, part.text));
  };
  for (auto i : comm_keep_) refuse(v.communications[i]);
  for (auto i : touch_keep_) refuse(v.touchpoints[i]);
  const std::uint64_t refused = part.rejections.size() - v.rejections.size();
  spdlog::warn("Events older than the retention cutoff were refused and dead-lettered; writing the rest of the batch. "
               "source={} position={} cutoff={} refused={}",
               info.source, info.position, why.day, refused);
  batch_result r =
      write_view(view{part.communications, part.touchpoints, part.rejections},
                 batch_info{info.source, info.position + " (retention cutoff)"}, derived_batch_id(batch_id, 5), rewrite, out);
  r.communications_in = v.communications.size();
  r.touchpoints_in = v.touchpoints.size();
  r.rejected_in = v.rejections.size();
  r.refused_by_database += refused;
  r.duplicates_in_batch += old_events - refused;
  return r;
}

}  // namespace crm::sinks::postgres
