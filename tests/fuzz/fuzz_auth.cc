// libFuzzer: arbitrary bytes through the caller-credential path (ingest/auth/credentials.cc): the
// Authorization / X-API-Key headers, JWT key selection and verification (libjwt), JWKS and API-key
// configuration parsing. Nothing may crash, leak or read out of bounds, and:
//   - a refusal always says why; no fuzzed token verifies (none is signed with a configured key, and
//     "alg":"none" never passes);
//   - a JWKS that parses yields only RS256/ES256 keys with PEM text.
// The first byte picks the path; the rest is the input.
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "ingest/auth/credentials.h"

namespace {

using namespace crm::ingest::auth;

void require(bool condition) {
  if (!condition) std::abort();
}

class one_header final : public crm::ingest::webhooks::header_map {
 public:
  std::string name, value;
  std::optional<std::string_view> find(std::string_view n) const noexcept override {
    if (n.size() != name.size()) return std::nullopt;
    for (std::size_t i = 0; i < n.size(); ++i) {
      if (std::tolower(static_cast<unsigned char>(n[i])) != std::tolower(static_cast<unsigned char>(name[i]))) {
        return std::nullopt;
      }
    }
    return std::string_view(value);
  }
};

const authenticator& shared_authenticator() {
  static const authenticator a = [] {
    options o;
    o.hs256_secret = "fuzzing-secret-that-no-input-knows";
    o.keys = parse_jwks(
        R"({"keys":[{"kty":"EC","kid":"ec","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",)"
        R"("y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})");
    o.audiences = {"authenticated"};
    o.roles = {"*"};
    o.api_keys = parse_api_keys("k=sha256:" + sha256_hex("fuzzing-api-key-that-no-input-knows"));
    return authenticator(o);
  }();
  return a;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto& a = shared_authenticator();
  // The input as the value of the one header a request carries.
  auto check_header = [&](const char* name) {
    one_header h;
    h.name = name;
    h.value = std::string(input);
    return a.check(h, 1300819000);
  };
  switch (data[0] % 5) {
    case 0: {
      auto r = a.verify_jwt(input, 1300819000);
      require(!r.ok() && !r.reason.empty());
      break;
    }
    case 1: {
      auto r = check_header("Authorization");
      require(!r.ok() && !r.reason.empty());
      break;
    }
    case 2:
      require(!check_header("X-API-Key").ok());
      break;
    case 3:
      try {
        for (const auto& k : parse_jwks(input)) {
          require(k.pem.rfind("-----BEGIN PUBLIC KEY-----", 0) == 0);
          require(k.alg == jwt_algorithm::rs256 || k.alg == jwt_algorithm::es256);
        }
      } catch (const config_error&) {
      }
      break;
    case 4:
      try {
        for (const auto& k : parse_api_keys(input)) require(!k.name.empty());
      } catch (const config_error&) {
      }
      try {
        (void)parse_public_key_pem(input);
      } catch (const config_error&) {
      }
      break;
  }
  return 0;
}
