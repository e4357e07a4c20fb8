// Rules: Google Analytics 4, "[GA4] Default channel group" (support.google.com/analytics/answer/9756891).
// GA4 evaluates its groups in this order and assigns the first that matches:
//   Direct, Cross-network, Paid Shopping, Paid Search, Paid Social, Paid Video, Display, Paid Other,
//   Organic Shopping, Organic Social, Organic Video, Organic Search, Referral, Email, Affiliates, Audio, SMS,
//   Mobile Push Notifications, Unassigned.
// Our 11 groups keep that order; the GA4 groups we do not have (Cross-network, Paid Shopping/Video/Other,
// Audio, Push, Unassigned) become Other, Organic Shopping/Video fall through to the next matching group.
// GA4 derives source/medium from the session; we have the event's UTM tags, click ids and referrer, so:
//   - no UTM tag: gclid/msclkid mean Google/Microsoft Ads auto-tagging (cpc) -> Paid Search; fbclid means a
//     Meta click without paid tagging -> Organic Social; else the referrer: none or the landing page's own
//     host -> Direct, a search engine -> Organic Search, a social site -> Organic Social, a webmail host ->
//     Email, any other site -> Referral.
//   - UTM tags present: GA4's source/medium rules; a gclid/msclkid with no contrary UTM (medium absent or
//     paid, source absent or a search engine) is Paid Search.
#include "transform/normalize/channel_group.h"

#include <array>
#include <cstddef>

#include "transform/text/ascii.h"
#include "transform/text/url_params.h"

namespace crm::transform::detail {
namespace {

// A lower-cased copy in a fixed buffer (longer values are cut: none of the names we look for is long).
class lowered {
 public:
  explicit lowered(std::string_view s) noexcept {
    size_ = s.size() < sizeof(buf_) ? s.size() : sizeof(buf_);
    for (std::size_t i = 0; i < size_; ++i) buf_[i] = ascii_lower(s[i]);
  }
  std::string_view view() const noexcept { return {buf_, size_}; }

 private:
  char buf_[256];
  std::size_t size_;
};

// Sites matched by any label of the host but the last (google matches google.com, www.google.co.uk,
// news.google.com) or by the whole source ("google").
constexpr std::array<std::string_view, 17> search_labels = {
    "google", "bing",  "yahoo", "duckduckgo", "baidu",     "yandex", "ecosia", "ask",    "aol",
    "naver",  "seznam", "qwant", "sogou",     "startpage", "msn",    "dogpile", "yippy"};
// Sites matched only as a whole source or host (too short or too generic to match as a label).
constexpr std::array<std::string_view, 6> search_exact = {"search.brave.com", "brave", "ya.ru", "so.com",
                                                          "360.cn", "search.daum.net"};

constexpr std::array<std::string_view, 24> social_labels = {
    "facebook", "instagram", "linkedin", "twitter",  "tiktok",    "pinterest", "reddit",  "youtube",
    "snapchat", "whatsapp",  "tumblr",   "quora",    "vk",        "weibo",     "telegram", "discord",
    "messenger", "threads",  "wechat",   "douyin",   "xing",      "bsky",      "mastodon", "meetup"};
constexpr std::array<std::string_view, 16> social_exact = {
    "fb", "fb.com", "fb.me", "m.me", "ig", "ig.me", "lnkd.in", "t.co", "x", "x.com", "t.me", "youtu.be",
    "pin.it", "redd.it", "line.me", "ok.ru"};

template <std::size_t L, std::size_t E>
bool site_matches(std::string_view s, const std::array<std::string_view, L>& labels,
                  const std::array<std::string_view, E>& exact) noexcept {
  if (s.empty()) return false;
  const lowered low(s);
  std::string_view v = low.view();
  if (v.substr(0, 4) == "www.") v.remove_prefix(4);
  for (const std::string_view e : exact) {
    if (v == e) return true;
  }
  // Every label but the last (the TLD); a single-label source ("google") is its own label.
  std::size_t start = 0;
  while (start <= v.size()) {
    const std::size_t dot = v.find('.', start);
    if (dot == std::string_view::npos && start != 0) break;  // the TLD
    const std::string_view label = v.substr(start, dot == std::string_view::npos ? v.npos : dot - start);
    for (const std::string_view l : labels) {
      if (label == l) return true;
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return false;
}

bool is_paid_medium(std::string_view m) noexcept {
  // ^(.*cp.*|ppc|retargeting|paid.*)$
  return m.find("cp") != std::string_view::npos || m == "ppc" || m == "retargeting" || m.substr(0, 4) == "paid";
}

bool is_display_medium(std::string_view m) noexcept {
  return m == "display" || m == "banner" || m == "expandable" || m == "interstitial" || m == "cpm";
}

bool is_social_medium(std::string_view m) noexcept {
  return m == "social" || m == "social-network" || m == "social-media" || m == "sm" || m == "social network" ||
         m == "social media";
}

bool is_email_value(std::string_view v) noexcept {
  return v == "email" || v == "e-mail" || v == "e_mail" || v == "e mail";
}

// Web mail front-ends: a click from a mail opened there is e-mail traffic, not a referral.
bool is_webmail_host(std::string_view host) noexcept {
  const lowered low(host);
  const std::string_view h = low.view();
  return h.substr(0, 5) == "mail." || h.substr(0, 8) == "webmail." || h == "outlook.live.com" ||
         h == "outlook.office.com" || h == "outlook.office365.com";
}

std::string_view without_www(std::string_view host) noexcept {
  if (host.size() > 4 && ascii_iequals(host.substr(0, 4), "www.")) host.remove_prefix(4);
  return host;
}

bool same_host(std::string_view a, std::string_view b) noexcept {
  return ascii_iequals(without_www(a), without_www(b));
}

channel_group from_referrer(const channel_inputs& in) noexcept {
  const std::string_view host = url_host(in.referrer);
  if (host.empty() || same_host(host, url_host(in.landing_url))) return channel_group::direct;
  if (is_webmail_host(host)) return channel_group::email;
  if (is_search_site(host)) return channel_group::organic_search;
  if (is_social_site(host)) return channel_group::organic_social;
  return channel_group::referral;
}

}  // namespace

bool is_search_site(std::string_view s) noexcept { return site_matches(s, search_labels, search_exact); }
bool is_social_site(std::string_view s) noexcept { return site_matches(s, social_labels, social_exact); }

channel_group derive_channel_group(const channel_inputs& in) noexcept {
  const lowered source_buf(in.utm_source);
  const lowered medium_buf(in.utm_medium);
  const std::string_view source = source_buf.view();
  const std::string_view medium = medium_buf.view();
  const bool auto_tagged = !in.gclid.empty() || !in.msclkid.empty();

  if (source.empty() && medium.empty()) {
    if (auto_tagged) return channel_group::paid_search;
    if (!in.fbclid.empty()) return channel_group::organic_social;
    return from_referrer(in);
  }

  // Direct: GA4's explicit "(direct)" / "(none)".
  if (source == "(direct)" && (medium.empty() || medium == "(none)" || medium == "(not set)")) {
    return channel_group::direct;
  }
  const bool paid = is_paid_medium(medium);
  const bool search = is_search_site(source);
  const bool social = is_social_site(source);
  if (auto_tagged && (medium.empty() || paid) && (source.empty() || search)) return channel_group::paid_search;
  // Cross-network (Performance Max and the like): no group of ours.
  if (lowered(in.utm_campaign).view().find("cross-network") != std::string_view::npos) return channel_group::other;
  if (search && paid) return channel_group::paid_search;
  if (social && paid) return channel_group::paid_social;
  if (is_display_medium(medium)) return channel_group::display;
  if (paid) return channel_group::other;  // GA4 Paid Other / Paid Shopping / Paid Video
  if (social || is_social_medium(medium)) return channel_group::organic_social;
  if (search || medium == "organic") return channel_group::organic_search;
  if (medium == "referral" || medium == "app" || medium == "link") return channel_group::referral;
  if (is_email_value(source) || is_email_value(medium)) return channel_group::email;
  if (medium == "affiliate") return channel_group::affiliates;
  if (source == "sms" || medium == "sms") return channel_group::sms;
  return channel_group::other;  // GA4 Audio, Mobile Push Notifications, Unassigned
}

}  // namespace crm::transform::detail
