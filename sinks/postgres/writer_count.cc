#include "sinks/postgres/writer_count.h"

#include <algorithm>

namespace crm::sinks::postgres {

writer_count::writer_count(writer_count_options o) : o_(o) {
  o_.max = std::max(1, o_.max);
  o_.window = std::max<std::size_t>(1, o_.window);
  current_ = std::clamp(o_.start, 1, o_.max);
  wait_ = o_.window;  // the first trial as soon as there is something to compare it with
}

double writer_count::median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void writer_count::interrupted() {
  recent_.clear();
  if (trial_ != 0) {
    trial_ = 0;
    trial_rates_.clear();
    since_trial_ = 0;
    wait_ = o_.window;  // try again as soon as there is something to compare it with
  }
}

void writer_count::written(int writers, std::size_t records, double seconds) {
  if (writers < 1 || records == 0 || !(seconds > 0)) return;
  const double rate = static_cast<double>(records) / seconds;
  if (trial_ != 0) {
    if (writers != trial_) return;  // submitted before the trial began
    trial_rates_.push_back(rate);
    if (trial_rates_.size() < o_.window) return;
    const double before = median(recent_), during = median(trial_rates_);
    const bool more = trial_ > current_;
    const bool keep = more ? during >= before * o_.gain : during * o_.gain > before;
    if (keep) {
      current_ = trial_;
      recent_ = std::move(trial_rates_);
    }
    // Found a better count by adding a writer: try the next one soon. Otherwise wait a while.
    wait_ = keep && more && current_ < o_.max ? o_.window : o_.probe_every;
    next_trial_up_ = keep ? more : !more;
    trial_ = 0;
    trial_rates_.clear();
    since_trial_ = 0;
    return;
  }
  if (writers != current_) return;  // submitted before the last trial ended
  recent_.push_back(rate);
  if (recent_.size() > o_.window) recent_.erase(recent_.begin());
  ++since_trial_;
  if (o_.max == 1 || since_trial_ < wait_ || recent_.size() < o_.window) return;
  const bool up = current_ == 1 || (current_ < o_.max && next_trial_up_);
  trial_ = up ? current_ + 1 : current_ - 1;
}

}  // namespace crm::sinks::postgres
