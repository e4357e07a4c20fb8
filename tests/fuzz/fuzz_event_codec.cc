// libFuzzer: the local log's batch decoder treats its input as untrusted; arbitrary bytes must decode
// or fail cleanly, and whatever decodes must re-encode to something that decodes to the same counts.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "transform/canonical/event_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static crm::transform::event_batch batch, again;
  static std::string encoded;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  if (crm::transform::decode_event_batch(input, batch)) return 0;
  crm::transform::encode_event_batch(batch, encoded);
  if (crm::transform::decode_event_batch(encoded, again)) std::abort();
  if (again.record_count() != batch.record_count()) std::abort();
  return 0;
}
