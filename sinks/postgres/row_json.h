// Renders a normalized record back as a canonical JSON object (docs/canonical-events.md),
// for the dead-letter table when the database refuses a row: the text a person can read and a later
// `rejected replay` can ingest again. The metadata goes back as its object (as text in metadata_text when it is
// not one); the tenant is not written: it is the dead letter's (rejected_events.tenant_id), as replay reads it.
#pragma once

#include <string>

#include "transform/canonical/canonical_event.h"

namespace crm::sinks::postgres {

std::string to_canonical_json(const transform::communication& c);
std::string to_canonical_json(const transform::touchpoint& t);

}  // namespace crm::sinks::postgres
