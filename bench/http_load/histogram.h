// http_load's latency histogram (see main.cc for the tool).
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

namespace http_load {

// Latency histogram: HdrHistogram's log-linear layout in microseconds. Values below 128 us are exact;
// above, every power of two is split into 64 linear sub-buckets, so a reported value is at most 1/64
// (1.6%) above the true one. Percentiles report the bucket's highest value (never optimistic); max is
// exact.
class latency_histogram {
 public:
  static constexpr int sub_bucket_bits = 7;
  static constexpr std::uint64_t half = 1u << (sub_bucket_bits - 1);

  latency_histogram() : counts_(64 * half + 2 * half, 0) {}

  void record(std::uint64_t us) {
    ++counts_[index_of(us)];
    ++total_;
    sum_ += static_cast<double>(us);
    max_ = std::max(max_, us);
  }

  void merge(const latency_histogram& o) {
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    sum_ += o.sum_;
    max_ = std::max(max_, o.max_);
  }

  std::uint64_t count() const { return total_; }
  std::uint64_t max() const { return max_; }
  double mean() const { return total_ ? sum_ / static_cast<double>(total_) : 0.0; }

  // The smallest bucket upper bound at or below which a fraction q of the values lie.
  std::uint64_t percentile(double q) const {
    if (total_ == 0) return 0;
    auto target = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_)));
    target = std::clamp<std::uint64_t>(target, 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= target) return std::min(highest_of(i), max_);
    }
    return max_;
  }

 private:
  static std::size_t index_of(std::uint64_t v) {
    int msb = 63 - std::countl_zero(v | 1);
    if (msb < sub_bucket_bits) return static_cast<std::size_t>(v);
    int shift = msb - (sub_bucket_bits - 1);
    return static_cast<std::size_t>(shift) * half + static_cast<std::size_t>(v >> shift);
  }
  static std::uint64_t highest_of(std::size_t index) {
    if (index < 2 * half) return index;
    std::uint64_t shift = index / half - 1;
    std::uint64_t sub = index - shift * half;
    return ((sub + 1) << shift) - 1;
  }

  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
  double sum_ = 0;
  std::uint64_t max_ = 0;
};

}  // namespace http_load
