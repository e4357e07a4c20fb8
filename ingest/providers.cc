#include "ingest/providers.h"

#include <chrono>

#include "transform/providers.h"

namespace crm::ingest {

namespace tp = crm::transform::providers;
namespace wh = crm::ingest::webhooks;

namespace {

wh::unix_seconds now_s() {
  return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
}

provider_normalizer make_normalizer(tp::provider_fn fn, std::string source) {
  return [fn, source = std::move(source)](std::string_view body, const http::request& req, transform::normalizer& norm,
                                          transform::timestamp_us received_at, transform::event_batch& out,
                                          std::string& error) {
    tp::webhook_input in{body, req.content_type, req.query, source, received_at};
    return fn(norm, in, out, error);
  };
}

}  // namespace

void register_providers(collector& c, const config::settings& cfg) {
  auto secret = [&](const char* section, const char* key) { return cfg.str(section, key); };
  const std::string public_base = cfg.str("http", "public_base_url");

  {
    provider_endpoint e{make_normalizer(&tp::normalize_sendgrid, "POST /v1/webhooks/sendgrid"), {}};
    if (auto key = secret("webhooks.sendgrid", "public_key"); !key.empty()) {
      auto v = std::make_shared<wh::sendgrid_verifier>(key);
      e.verify = [v](const http::request& r) { return v->verify(r.body, *r.headers, now_s()); };
    }
    c.add_provider("sendgrid", std::move(e));
  }
  {
    provider_endpoint e{make_normalizer(&tp::normalize_twilio, "POST /v1/webhooks/twilio"), {}};
    if (auto token = secret("webhooks.twilio", "auth_token"); !token.empty()) {
      if (public_base.empty()) {
        throw std::invalid_argument(
            "webhooks.twilio.auth_token is set but http.public_base_url is not: Twilio signs the public URL it "
            "calls, so set http.public_base_url (e.g. https://ingest.example.com)");
      }
      auto v = std::make_shared<wh::twilio_verifier>(wh::secret_list{token});
      std::string base = public_base;
      while (!base.empty() && base.back() == '/') base.pop_back();
      e.verify = [v, base](const http::request& r) {
        return v->verify(base + std::string(r.target), r.body, *r.headers);
      };
    }
    c.add_provider("twilio", std::move(e));
  }
  {
    provider_endpoint e{make_normalizer(&tp::normalize_whatsapp, "POST /v1/webhooks/whatsapp"), {}};
    if (auto s = secret("webhooks.whatsapp", "app_secret"); !s.empty()) {
      auto v = std::make_shared<wh::meta_verifier>(wh::secret_list{s});
      e.verify = [v](const http::request& r) { return v->verify(r.body, *r.headers); };
    }
    c.add_provider("whatsapp", std::move(e));
  }
  {
    provider_endpoint e{make_normalizer(&tp::normalize_mailgun, "POST /v1/webhooks/mailgun"), {}};
    if (auto key = secret("webhooks.mailgun", "signing_key"); !key.empty()) {
      auto v = std::make_shared<wh::mailgun_verifier>(wh::secret_list{key});
      e.verify = [v](const http::request& r) -> wh::verify_result {
        tp::mailgun_signature_fields f;
        if (!tp::extract_mailgun_signature(r.body, f)) {
          return {wh::verify_error::malformed_input, "body is not a JSON object with a signature"};
        }
        return v->verify(wh::mailgun_signature{f.timestamp, f.token, f.signature, {}}, now_s());
      };
    }
    c.add_provider("mailgun", std::move(e));
  }
  {
    provider_endpoint e{make_normalizer(&tp::normalize_postmark, "POST /v1/webhooks/postmark"), {}};
    auto user = secret("webhooks.postmark", "username");
    auto password = secret("webhooks.postmark", "password");
    if (!user.empty() || !password.empty()) {
      auto v = std::make_shared<wh::postmark_verifier>(user, password);
      e.verify = [v](const http::request& r) { return v->verify(*r.headers); };
    }
    c.add_provider("postmark", std::move(e));
  }
  {
    provider_endpoint e{make_normalizer(&tp::normalize_resend, "POST /v1/webhooks/resend"), {}};
    if (auto s = secret("webhooks.resend", "secret"); !s.empty()) {
      auto v = std::make_shared<wh::svix_verifier>(std::vector<std::string>{s});
      e.verify = [v](const http::request& r) { return v->verify(r.body, *r.headers, now_s()); };
    }
    c.add_provider("resend", std::move(e));
  }
  {
    provider_endpoint e{make_normalizer(&tp::normalize_segment, "POST /v1/webhooks/segment"), {}};
    if (auto s = secret("webhooks.segment", "shared_secret"); !s.empty()) {
      auto v = std::make_shared<wh::segment_verifier>(wh::secret_list{s});
      e.verify = [v](const http::request& r) { return v->verify(r.body, *r.headers); };
    }
    c.add_provider("segment", std::move(e));
  }
}

}  // namespace crm::ingest
