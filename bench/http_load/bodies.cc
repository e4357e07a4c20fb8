// http_load's request templates: canonical NDJSON, Twilio callbacks, SendGrid arrays, Segment calls.
#include "bodies.h"

#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <random>

namespace http_load {

std::string hex(std::uint64_t v, std::size_t width) {
  std::string s(width, '0');
  put_hex(s.data(), width, v);
  return s;
}

// Appends `prefix` + seed + a counter placeholder to `out` and records the field.
void append_id(body_template& t, std::string_view prefix, const std::string& seed_hex, std::size_t counter_width,
               std::uint64_t delta, bool acked) {
  id_field f{};
  f.id_offset = t.text.size();
  t.text += prefix;
  t.text += seed_hex;
  f.counter_offset = t.text.size();
  f.counter_width = counter_width;
  t.text.append(counter_width, '0');
  f.id_length = t.text.size() - f.id_offset;
  f.delta = delta;
  f.acked = acked;
  t.ids.push_back(f);
}

// template_count templates, each of `events` events, the k-th filled by fill(t, k, rng) from its own generator
// seeded with spec.seed * salt + k (a salt per body kind, so that kinds do not repeat each other's draws).
template <typename Fill>
std::vector<body_template> make_templates(const load_spec& spec, std::uint64_t salt, unsigned events, Fill fill) {
  std::vector<body_template> out(template_count);
  for (std::size_t k = 0; k < template_count; ++k) {
    std::mt19937_64 rng(spec.seed * salt + k);
    out[k].events = events;
    fill(out[k], k, rng);
  }
  return out;
}

std::vector<body_template> events_templates(const load_spec& spec) {
  using synthetic_events::mediums, synthetic_events::phone_channels, synthetic_events::sources,
      synthetic_events::status_weights, synthetic_events::statuses, synthetic_events::touch_types;
  std::discrete_distribution<unsigned> status_of(std::begin(status_weights), std::end(status_weights));
  const std::string seed_hex = hex(spec.seed, 8);
  char buf[512];
  return make_templates(spec, 1000003u, spec.events_per_request,
                        [&](body_template& t, std::size_t k, std::mt19937_64& rng) {
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (unsigned j = 0; j < spec.events_per_request; ++j) {
      const std::int64_t at = spec.epoch - 1 - static_cast<std::int64_t>(rng() % (7 * 86400));
      const auto lead = 1 + rng() % 200000;
      const auto campaign = 1 + rng() % 50;
      if (spec.mode == "mix" && u(rng) < spec.invalid_share) {
        // Invalid on purpose: a time that is no time. Dead-lettered with its reason; its id is x-...
        t.text += R"({"kind":"communication","provider":"loadgen","provider_message_id":")";
        append_id(t, "x-", seed_hex + "-", 16, j, true);
        std::snprintf(buf, sizeof buf,
                      R"(","occurred_at":"yesterday-ish","lead_id":%)" PRIu64
                      R"(,"channel":"email","status":"delivered","email":"lead.%)" PRIu64 R"(@example.com"})" "\n",
                      lead, lead);
        t.text += buf;
        ++t.invalid;
        continue;
      }
      if (u(rng) < spec.touchpoint_share) {
        t.text += R"({"kind":"touchpoint","message_id":")";
        append_id(t, "t-", seed_hex + "-", 16, j, true);
        const auto tt = touch_types[rng() % std::size(touch_types)];
        const auto s = rng() % std::size(sources);
        std::string extra;
        if (tt == "conversion") {
          std::snprintf(buf, sizeof buf, R"(,"conversion_type":"purchase","conversion_value":%u.%02u,"currency":"USD")",
                        static_cast<unsigned>(rng() % 500), static_cast<unsigned>(rng() % 100));
          extra = buf;
        } else if (tt == "experiment_exposure") {
          std::snprintf(buf, sizeof buf, R"(,"ab_test_id":"test-%u","variant":"%s")",
                        static_cast<unsigned>(campaign % 5), (rng() & 1) ? "A" : "B");
          extra = buf;
        }
        std::snprintf(buf, sizeof buf,
                      R"(","occurred_at":"%s","lead_id":%)" PRIu64
                      R"(,"anonymous_id":"anon-%)" PRIx64
                      R"(","touch_type":"%.*s","landing_url":"https://shop.example.com/p/%u?utm_source=%.*s&utm_medium=%.*s&utm_campaign=c%)" PRIu64
                      R"(","referrer":"https://www.%.*s.com/","campaign_id":%)" PRIu64 "%s}\n",
                      iso8601(at).c_str(), lead, static_cast<std::uint64_t>(rng() % 1000000),
                      static_cast<int>(tt.size()), tt.data(), static_cast<unsigned>(rng() % 997),
                      static_cast<int>(sources[s].size()), sources[s].data(), static_cast<int>(mediums[s].size()),
                      mediums[s].data(), campaign, static_cast<int>(sources[(s + 1) % std::size(sources)].size()),
                      sources[(s + 1) % std::size(sources)].data(), campaign, extra.c_str());
        t.text += buf;
      } else {
        const bool phone = u(rng) < 0.3;
        const auto channel = phone ? phone_channels[rng() % std::size(phone_channels)] : std::string_view("email");
        const auto status = statuses[status_of(rng)];
        t.text += R"({"kind":"communication","provider":"loadgen","provider_message_id":")";
        append_id(t, "m-", seed_hex + "-", 16, j, true);
        std::string contact;
        if (phone) {
          std::snprintf(buf, sizeof buf, R"("phone":"+1415%07u")", static_cast<unsigned>(5550000 + rng() % 9999));
        } else {
          std::snprintf(buf, sizeof buf, R"("email":"Lead.%)" PRIu64 R"(@Example.com")", lead);
        }
        contact = buf;
        std::snprintf(buf, sizeof buf,
                      R"(","occurred_at":"%s","lead_id":%)" PRIu64 R"(,"campaign_id":%)" PRIu64
                      R"(,"channel":"%.*s","status":"%.*s",%s,"metadata":{"template":%zu,"tags":["load"]}})"
                      "\n",
                      iso8601(at).c_str(), lead, campaign, static_cast<int>(channel.size()), channel.data(),
                      static_cast<int>(status.size()), status.data(), contact.c_str(), k);
        t.text += buf;
      }
    }
  });
}

std::vector<body_template> twilio_templates(const load_spec& spec) {
  // Twilio's MessageStatus values of an outbound SMS's life (fixtures/webhooks/twilio).
  static constexpr std::string_view statuses[] = {"sent", "delivered", "delivered", "delivered", "undelivered", "failed"};
  const std::string seed_hex = hex(spec.seed, 8);
  char buf[256];
  return make_templates(spec, 1000003u, 1,
                        [&](body_template& t, std::size_t k, std::mt19937_64& rng) {
    const auto status = statuses[k % std::size(statuses)];
    t.text = "AccountSid=AC" + seed_hex + std::string(24, '0') + "&ApiVersion=2010-04-01";
    if (status == "undelivered" || status == "failed") t.text += "&ErrorCode=30003";
    t.text += "&From=%2B15017250604&MessageSid=";
    append_id(t, "SM", seed_hex, 24, 0, true);
    std::snprintf(buf, sizeof buf, "&MessageStatus=%.*s&MessagingServiceSid=MG%s%s",
                  static_cast<int>(status.size()), status.data(), seed_hex.c_str(), std::string(24, '0').c_str());
    t.text += buf;
    if (status == "delivered" || status == "undelivered") {
      // The carrier's receipt time (YYMMDDhhmm, UTC), as on Twilio's final callbacks.
      const std::time_t at = static_cast<std::time_t>(spec.epoch - 60 - static_cast<std::int64_t>(rng() % (7 * 86400)));
      std::tm tm{};
      gmtime_r(&at, &tm);
      char done[16];
      std::strftime(done, sizeof done, "%y%m%d%H%M", &tm);
      t.text += "&RawDlrDoneDate=";
      t.text += done;
    }
    t.text += "&SmsSid=";
    append_id(t, "SM", seed_hex, 24, 0, false);
    std::snprintf(buf, sizeof buf, "&SmsStatus=%.*s&To=%%2B1415%07u", static_cast<int>(status.size()), status.data(),
                  static_cast<unsigned>(5550000 + rng() % 9999));
    t.text += buf;
  });
}

// args at the top level and, on some, the legacy A/B fields.
std::vector<body_template> sendgrid_templates(const load_spec& spec) {
  static constexpr std::string_view events[] = {"processed", "delivered", "delivered", "open", "open", "click",
                                                "bounce", "deferred", "dropped", "unsubscribe", "spamreport"};
  const std::string seed_hex = hex(spec.seed, 8);
  char buf[768];
  return make_templates(spec, 1000033u, spec.sendgrid_events_per_request,
                        [&](body_template& t, std::size_t k, std::mt19937_64& rng) {
    std::uniform_real_distribution<double> u(0.0, 1.0);
    t.text = "[";
    for (unsigned j = 0; j < spec.sendgrid_events_per_request; ++j) {
      if (j) t.text += ",\n";
      const auto lead = 1 + rng() % 200000;
      const auto campaign = 1 + rng() % 50;
      const std::int64_t at = spec.epoch - 1 - static_cast<std::int64_t>(rng() % (7 * 86400));
      if (u(rng) < spec.invalid_share) {
        t.text += R"({"email":"lead.)" + std::to_string(lead) + R"(@example.com","timestamp":1513299569,"event":"delivered","sg_event_id":"z-)" + seed_hex + "-" + hex(k * 1024 + j, 16) + R"(","sg_message_id":")";
        append_id(t, "x-", seed_hex + "-", 16, j, true);
        t.text += R"(","lead_id":"-)" + std::to_string(lead) + "\"}";  // a number that is no id
        ++t.invalid;
        continue;
      }
      const auto ev = events[rng() % std::size(events)];
      t.text += R"({"email":"Lead.)" + std::to_string(lead) + R"(@Example.com","timestamp":)" + std::to_string(at) +
                R"(,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":")" + std::string(ev) +
                R"(","category":["newsletter","load"],"sg_event_id":")";
      append_id(t, "e-", seed_hex + "-", 16, j, false);
      t.text += R"(","sg_message_id":")";
      append_id(t, "g-", seed_hex + "-", 16, j, true);
      std::snprintf(buf, sizeof buf, R"(","lead_id":%)" PRIu64 R"(,"campaign_id":%)" PRIu64, lead, campaign);
      t.text += buf;
      if (campaign % 3 == 0) {
        std::snprintf(buf, sizeof buf, R"(,"ab_test_id":"test-%u","variant":"%s")", static_cast<unsigned>(campaign % 5),
                      (rng() & 1) ? "A" : "B");
        t.text += buf;
      }
      if (ev == "click") {
        std::snprintf(buf, sizeof buf,
                      R"(,"url":"https://shop.example.com/p/%u?utm_source=newsletter&utm_medium=email&utm_campaign=c%)" PRIu64
                      R"~(","useragent":"Mozilla/5.0 (X11; Linux x86_64)","ip":"203.0.113.7")~",
                      static_cast<unsigned>(rng() % 997), campaign);
        t.text += buf;
      } else if (ev == "bounce" || ev == "dropped") {
        t.text += R"(,"reason":"550 5.1.1 The email account that you tried to reach does not exist","status":"5.1.1","type":"bounce")";
      } else if (ev == "delivered") {
        t.text += R"(,"response":"250 OK")";
      }
      t.text += "}";
    }
    t.text += "]";
  });
}

// Segment Spec calls (fixtures/webhooks/segment): one call per request.
std::vector<body_template> segment_templates(const load_spec& spec) {
  static constexpr std::string_view sources[] = {"google", "facebook", "bing", "linkedin", "newsletter"};
  static constexpr std::string_view mediums[] = {"cpc", "paid_social", "cpc", "social", "email"};
  const std::string seed_hex = hex(spec.seed, 8);
  char buf[1536];
  return make_templates(spec, 1000037u, 1,
                        [&](body_template& t, std::size_t k, std::mt19937_64& rng) {
    const auto lead = 1 + rng() % 200000;
    const auto campaign = 1 + rng() % 50;
    const auto s = rng() % std::size(sources);
    const std::string at = iso8601(spec.epoch - 1 - static_cast<std::int64_t>(rng() % (7 * 86400)));
    std::snprintf(buf, sizeof buf, R"({"anonymousId":"anon-%)" PRIx64 R"(","userId":"lead-%)" PRIu64 R"(","messageId":")",
                  static_cast<std::uint64_t>(rng() % 1000000), lead);
    t.text = buf;
    append_id(t, "s-", seed_hex + "-", 16, 0, true);
    switch (k % 4) {
      case 0:
      case 1:  // a landing page view with UTM and a click id
        std::snprintf(buf, sizeof buf,
                      R"(","type":"page","name":"Pricing","context":{"campaign":{"name":"c%)" PRIu64
                      R"(","source":"%.*s","medium":"%.*s"},"page":{"path":"/pricing","referrer":"https://www.%.*s.com/","url":"https://www.example.com/pricing?utm_source=%.*s&utm_medium=%.*s&utm_campaign=c%)" PRIu64
                      R"(&gclid=EAIaIQobChMI%)" PRIx64 R"("},"traits":{"lead_id":%)" PRIu64
                      R"(}},"properties":{"path":"/pricing","campaign_id":%)" PRIu64 R"(},"timestamp":"%s"})",
                      campaign, static_cast<int>(sources[s].size()), sources[s].data(),
                      static_cast<int>(mediums[s].size()), mediums[s].data(), static_cast<int>(sources[s].size()),
                      sources[s].data(), static_cast<int>(sources[s].size()), sources[s].data(),
                      static_cast<int>(mediums[s].size()), mediums[s].data(), campaign,
                      static_cast<std::uint64_t>(rng()), lead, campaign, at.c_str());
        break;
      case 2:  // an A/B exposure
        std::snprintf(buf, sizeof buf,
                      R"(","type":"track","event":"Experiment Viewed","properties":{"experiment_id":"test-%u","variation_id":"%s","lead_id":%)" PRIu64
                      R"(,"campaign_id":%)" PRIu64 R"(},"timestamp":"%s"})",
                      static_cast<unsigned>(campaign % 5), (rng() & 1) ? "A" : "B", lead, campaign, at.c_str());
        break;
      default:  // a conversion
        std::snprintf(buf, sizeof buf,
                      R"(","type":"track","event":"Order Completed","properties":{"order_id":"o-%)" PRIx64
                      R"(","revenue":%u.%02u,"currency":"EUR","lead_id":%)" PRIu64 R"(,"campaign_id":%)" PRIu64
                      R"(},"context":{"campaign":{"name":"c%)" PRIu64 R"(","source":"%.*s","medium":"%.*s"}},"timestamp":"%s"})",
                      static_cast<std::uint64_t>(rng()), static_cast<unsigned>(rng() % 900 + 10),
                      static_cast<unsigned>(rng() % 100), lead, campaign, campaign,
                      static_cast<int>(sources[s].size()), sources[s].data(), static_cast<int>(mediums[s].size()),
                      mediums[s].data(), at.c_str());
        break;
    }
    t.text += buf;
  });
}

}  // namespace http_load
