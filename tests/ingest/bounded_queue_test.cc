#include "ingest/bounded_queue.h"

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

namespace {

TEST(BoundedQueue, PushBlocksWhenFullUntilAPop) {
  crm::ingest::bounded_queue<int> q(2);
  int a = 1, b = 2, c = 3;
  ASSERT_TRUE(q.push(a));
  ASSERT_TRUE(q.push(b));
  std::atomic<bool> pushed{false};
  std::thread t([&] {
    q.push(c);
    pushed = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(pushed);  // the third push waits: backpressure
  int out = 0;
  ASSERT_TRUE(q.pop(out));
  EXPECT_EQ(out, 1);
  t.join();
  EXPECT_TRUE(pushed);
  EXPECT_EQ(q.size(), 2u);
}

TEST(BoundedQueue, CloseDrainsThenEnds) {
  crm::ingest::bounded_queue<int> q(4);
  int a = 7;
  q.push(a);
  q.close();
  int b = 8;
  EXPECT_FALSE(q.push(b));
  int out = 0;
  EXPECT_TRUE(q.pop(out));
  EXPECT_EQ(out, 7);
  EXPECT_FALSE(q.pop(out));
}

TEST(BoundedQueue, ManyProducersManyConsumersLoseNothing) {
  crm::ingest::bounded_queue<int> q(3);
  std::atomic<long> sum{0};
  std::vector<std::thread> producers, consumers;
  for (int p = 0; p < 3; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 1; i <= 1000; ++i) {
        int v = p * 1000 + i;
        q.push(v);
      }
    });
  }
  for (int c = 0; c < 2; ++c) {
    consumers.emplace_back([&] {
      int v;
      while (q.pop(v)) sum += v;
    });
  }
  for (auto& t : producers) t.join();
  q.close();
  for (auto& t : consumers) t.join();
  long expected = 0;
  for (int p = 0; p < 3; ++p)
    for (int i = 1; i <= 1000; ++i) expected += p * 1000 + i;
  EXPECT_EQ(sum, expected);
}

}  // namespace
