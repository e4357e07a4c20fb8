// SendGrid Signed Event Webhook: ECDSA P-256 with SHA-256 over timestamp header + raw body.
#include "ingest/webhooks/signatures.h"

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

namespace crm::ingest::webhooks {

namespace {

// A DER ECDSA P-256 signature is at most 72 bytes; leave room, refuse anything bigger.
constexpr std::size_t max_signature_der = 128;

struct md_ctx_deleter {
  void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};

}  // namespace

sendgrid_verifier::sendgrid_verifier(std::string_view public_key_base64, std::optional<std::chrono::seconds> tolerance)
    : tolerance_(tolerance) {
  // The dashboard shows one line; tolerate line breaks from copy and paste in config files.
  std::string compact;
  for (char c : public_key_base64) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') compact.push_back(c);
  }
  std::string der(compact.size(), '\0');
  const auto n = detail::base64_decode(compact, std::span(reinterpret_cast<unsigned char*>(der.data()), der.size()));
  if (!n || *n == 0) {
    throw std::invalid_argument("SendGrid verification key is not base64: paste the key from Settings > Mail Settings > Signed Event Webhook");
  }
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  EVP_PKEY* key = d2i_PUBKEY(nullptr, &p, static_cast<long>(*n));
  if (key == nullptr || p != reinterpret_cast<const unsigned char*>(der.data()) + *n) {
    EVP_PKEY_free(key);
    ERR_clear_error();
    throw std::invalid_argument("SendGrid verification key is not a DER SubjectPublicKeyInfo");
  }
  char group[64] = {};
  std::size_t group_len = 0;
  if (!EVP_PKEY_is_a(key, "EC") || EVP_PKEY_get_group_name(key, group, sizeof group, &group_len) != 1 ||
      std::string_view(group, group_len) != "prime256v1") {
    EVP_PKEY_free(key);
    ERR_clear_error();
    throw std::invalid_argument("SendGrid verification key is not an ECDSA P-256 (prime256v1) key");
  }
  key_ = key;
  // Initialise one verification now: this exports the key to the provider once, at start-up, and
  // proves the key is usable before the first request arrives.
  std::unique_ptr<EVP_MD_CTX, md_ctx_deleter> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, key_, nullptr) != 1) {
    EVP_PKEY_free(key_);
    key_ = nullptr;
    ERR_clear_error();
    throw std::runtime_error("OpenSSL cannot verify with the SendGrid key");
  }
}

sendgrid_verifier::~sendgrid_verifier() { EVP_PKEY_free(key_); }

sendgrid_verifier::sendgrid_verifier(sendgrid_verifier&& other) noexcept
    : key_(std::exchange(other.key_, nullptr)), tolerance_(other.tolerance_) {}

sendgrid_verifier& sendgrid_verifier::operator=(sendgrid_verifier&& other) noexcept {
  if (this != &other) {
    EVP_PKEY_free(key_);
    key_ = std::exchange(other.key_, nullptr);
    tolerance_ = other.tolerance_;
  }
  return *this;
}

verify_result sendgrid_verifier::verify(std::string_view body, const header_map& headers,
                                        unix_seconds now) const noexcept {
  const auto sig_header = headers.find(signature_header);
  if (!sig_header) return {verify_error::missing_input, "missing header X-Twilio-Email-Event-Webhook-Signature"};
  const auto ts_header = headers.find(timestamp_header);
  if (!ts_header) return {verify_error::missing_input, "missing header X-Twilio-Email-Event-Webhook-Timestamp"};

  unsigned char der[max_signature_der];
  const auto der_len = detail::base64_decode(detail::trim_ows(*sig_header), der);
  if (!der_len || *der_len == 0) {
    return {verify_error::malformed_input, "malformed header X-Twilio-Email-Event-Webhook-Signature"};
  }
  // The timestamp is signed exactly as sent; it only needs to be a number for the tolerance check.
  const std::string_view timestamp = detail::trim_ows(*ts_header);
  const auto signed_at = detail::parse_unix_seconds(timestamp);
  if (!signed_at) return {verify_error::malformed_input, "malformed header X-Twilio-Email-Event-Webhook-Timestamp"};
  if (tolerance_ && !detail::within_tolerance(*signed_at, now, *tolerance_)) {
    return {verify_error::timestamp_outside_tolerance, "timestamp outside tolerance"};
  }

  std::unique_ptr<EVP_MD_CTX, md_ctx_deleter> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, key_, nullptr) != 1 ||
      EVP_DigestVerifyUpdate(ctx.get(), timestamp.data(), timestamp.size()) != 1 ||
      EVP_DigestVerifyUpdate(ctx.get(), body.data(), body.size()) != 1) {
    ERR_clear_error();
    return {verify_error::internal_error, "internal error"};
  }
  // 1 = valid; 0 = wrong signature; negative = the DER did not parse as an ECDSA signature.
  const int rc = EVP_DigestVerifyFinal(ctx.get(), der, *der_len);
  if (rc == 1) return {};
  ERR_clear_error();
  return {verify_error::signature_mismatch, "signature mismatch"};
}

}  // namespace crm::ingest::webhooks
