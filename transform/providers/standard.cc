// Standard Webhooks (standardwebhooks.com): the body is our canonical event format, one JSON object or a JSON
// array of them, read by the same code as POST /v1/events (record_splitter, normalizer::normalize). Each
// record becomes a communication, a touchpoint or a rejection whose source is "<input.source>:<index>".
//
// Idempotency: webhook_input::idempotency_key (the request's webhook-id, or a source's declared key) is the
// key of the records that carry no id of their own (neither event_id nor provider_event_id; touchpoints
// neither touchpoint_id nor message_id): `<key>` for a single-object body, `<key>:<index>` for each element of
// an array, so that a redelivered webhook-id stores nothing twice. A record's own id always wins.
#include <string>
#include <string_view>

#include "transform/normalize/record_splitter.h"
#include "transform/providers/provider_common.h"
#include "transform/providers/providers.h"

namespace crm::transform::providers {

bool normalize_standard(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error) {
  const detail::batch_mark mark(out);
  record_splitter splitter(input_format::auto_detect, norm.options().max_record_bytes);
  detail::workspace& ws = detail::thread_workspace();
  std::size_t index = 0;
  auto on_record = [&](const split_record& rec) {
    const source_ref src = detail::event_source(ws, in.source, index);
    if (!rec.error.empty()) {
      norm.reject(rec.text, src, in.received_at, rec.error, out);
    } else {
      // An array's elements (and any record after the first) are told apart by their index.
      const std::string_view key = in.idempotency_key.empty() ? std::string_view{} : detail::indexed_key(ws, in, index);
      norm.normalize(rec.text, src, in.received_at, out, key);
    }
    ++index;
  };
  splitter.feed(in.body, on_record);
  splitter.finish(on_record);
  if (index == 0) {
    mark.rollback(out);
    error = "not a canonical event body: expected a JSON object or an array of them, got no event";
    return false;
  }
  return true;
}

}  // namespace crm::transform::providers
