// A monotonic byte arena with stable addresses: views handed out stay valid until clear().
// Owned by whoever owns the event_batch it sits in; not thread-safe.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace crm::transform {

class text_arena {
 public:
  explicit text_arena(std::size_t block_size = 256 * 1024) : block_size_(block_size) {}
  text_arena(text_arena&&) noexcept = default;
  text_arena& operator=(text_arena&&) noexcept = default;

  char* allocate(std::size_t n) {
    if (n > remaining_) grow(n);
    char* p = cursor_;
    cursor_ += n;
    remaining_ -= n;
    used_ += n;
    return p;
  }

  std::string_view copy(std::string_view s) {
    if (s.empty()) return {};
    char* p = allocate(s.size());
    std::memcpy(p, s.data(), s.size());
    return {p, s.size()};
  }

  // Keeps the blocks for reuse.
  void clear() noexcept {
    current_ = 0;
    used_ = 0;
    if (blocks_.empty()) {
      cursor_ = nullptr;
      remaining_ = 0;
    } else {
      cursor_ = blocks_[0].data.get();
      remaining_ = blocks_[0].size;
    }
  }

  std::size_t bytes_used() const noexcept { return used_; }

 private:
  struct block {
    std::unique_ptr<char[]> data;
    std::size_t size;
  };

  void grow(std::size_t n) {
    // Move to the next retained block that fits, else allocate one.
    while (current_ + 1 < blocks_.size()) {
      ++current_;
      if (blocks_[current_].size >= n) {
        cursor_ = blocks_[current_].data.get();
        remaining_ = blocks_[current_].size;
        return;
      }
    }
    // Blocks double from first_block_bytes up to block_size_, so a batch of one small event costs a
    // small allocation; they are not zeroed (every byte handed out is written by the caller).
    std::size_t size = blocks_.empty() ? first_block_bytes : blocks_.back().size * 2;
    if (size > block_size_) size = block_size_;
    if (size < n) size = n;
    blocks_.push_back(block{std::make_unique_for_overwrite<char[]>(size), size});
    current_ = blocks_.size() - 1;
    cursor_ = blocks_[current_].data.get();
    remaining_ = size;
  }

  static constexpr std::size_t first_block_bytes = 4096;
  std::vector<block> blocks_;
  std::size_t block_size_;
  std::size_t current_ = 0;
  char* cursor_ = nullptr;
  std::size_t remaining_ = 0;
  std::size_t used_ = 0;
};

}  // namespace crm::transform
