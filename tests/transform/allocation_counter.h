// Counts heap allocations with a replaced global operator new, for the tests that check a hot path allocates
// nothing once warm. Include it in exactly one translation unit of a test binary (it defines the replacement
// operators, which replace them for that whole binary). Every non-aligned form is replaced, so that
// allocations and deallocations pair under AddressSanitizer too.
// Thread ownership: any thread may allocate; set `counting` around the code measured, from the test's thread.
#pragma once

#include <atomic>
#include <cstdlib>
#include <new>

namespace crm_test {
inline std::atomic<bool> counting{false};
inline std::atomic<long> allocations{0};
}  // namespace crm_test

void* operator new(std::size_t n) {
  if (crm_test::counting.load(std::memory_order_relaxed)) crm_test::allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return ::operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  if (crm_test::counting.load(std::memory_order_relaxed)) crm_test::allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new[](std::size_t n, const std::nothrow_t& tag) noexcept { return ::operator new(n, tag); }
// These deletes do pair with the malloc in operator new above; GCC cannot see that.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
#pragma GCC diagnostic pop
