// The server's dynamic batching: concurrent requests share one library call and each gets the
// list it would get alone; incompatible options never share a call; unknown users, bad options
// and deadlines are answered per request.
#include "serve/batcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <thread>

#include "config/config.h"
#include "core/error.h"
#include "pipeline/export.h"
#include "pipeline/train.h"
#include "test_util.h"

namespace recforge::serve {
namespace {

using recommend::Options;
using recommend::Recommender;
using recommend::Result;
using Clock = std::chrono::steady_clock;

/// A small iALS run and its (flat index) export, shared by the tests.
class BatcherTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    const std::string yaml = "run:\n  name: b\n  dir: " + dir_->str() +
                             "\n  progress: off\n  seed: 7\n"
                             "data:\n  format: synthetic\n  cache: false\n"
                             "synthetic:\n  users: 300\n  items: 200\n  interactions: 6000\n"
                             "split:\n  method: leave_last\n"
                             "model:\n  type: ials\n  factors: 8\n  iterations: 3\n";
    run_ = new std::string(pipeline::train(config::Config::parse(yaml, "b.yaml")));
    pipeline::export_run(*run_, dir_->file("b-export"), {});
  }
  static void TearDownTestSuite() {
    delete run_;
    delete dir_;
  }
  static std::shared_ptr<const Recommender> open(const std::string& path) {
    return std::make_shared<const Recommender>(Recommender::open(path));
  }
  static std::string export_dir() { return dir_->file("b-export"); }

  static test::TempDir* dir_;
  static std::string* run_;
};
test::TempDir* BatcherTest::dir_ = nullptr;
std::string* BatcherTest::run_ = nullptr;

/// Records the size of every library call.
struct Sizes {
  std::mutex mu;
  std::vector<size_t> sizes;
  std::function<void(size_t)> callback() {
    return [this](size_t n) {
      std::lock_guard<std::mutex> lock(mu);
      sizes.push_back(n);
    };
  }
  std::vector<size_t> sorted() {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<size_t> s = sizes;
    std::sort(s.begin(), s.end());
    return s;
  }
};

/// One worker waiting up to `wait` for company, at most `max_batch` users per call.
BatcherOptions options(std::chrono::microseconds wait, size_t max_batch,
                       std::function<int64_t()> in_server = {}) {
  BatcherOptions o;
  o.max_wait = wait;
  o.max_batch = max_batch;
  o.workers = 1;
  o.in_server = std::move(in_server);
  return o;
}

Clock::time_point far() { return Clock::now() + std::chrono::minutes(10); }

void expect_same_list(const Result& got, const Result& alone) {
  ASSERT_EQ(got.lists.size(), 1u);
  ASSERT_EQ(alone.lists.size(), 1u);
  EXPECT_EQ(got.lists[0].query, alone.lists[0].query);
  ASSERT_EQ(got.lists[0].items.size(), alone.lists[0].items.size());
  for (size_t j = 0; j < got.lists[0].items.size(); ++j) {
    EXPECT_EQ(got.lists[0].items[j].id, alone.lists[0].items[j].id) << "rank " << j;
    EXPECT_EQ(got.lists[0].items[j].score, alone.lists[0].items[j].score) << "rank " << j;
  }
}

/// The options of request i of a batch on `rec`: item "4" excluded, k growing with i (an index
/// search shares a call only with the same k, so there it is 6 for all).
Options mixed_k(const Recommender& rec, int i) {
  Options o;
  o.k = rec.is_export() ? 6 : 3 + i;
  o.exclude = {"4"};
  return o;
}

/// Runs `n` requests at once, request i built by make(i); returns their results in order.
template <class Make>
std::vector<Result> concurrently(Batcher& b, const std::shared_ptr<const Recommender>& rec, int n,
                                 Make make) {
  std::vector<Result> out(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      const auto [user, o] = make(i);
      out[static_cast<size_t>(i)] = b.recommend(rec, user, o, far());
    });
  for (std::thread& t : threads) t.join();
  return out;
}

TEST_F(BatcherTest, ConcurrentRequestsShareOneCallAndGetTheirOwnLists) {
  for (const std::string& path : {*run_, export_dir()}) {
    SCOPED_TRACE(path);
    const auto rec = open(path);
    // A long wait: the batch is computed only because it is full, so one call answers all.
    Sizes sizes;
    Batcher b(options(std::chrono::seconds(60), 8), sizes.callback());
    auto make = [&](int i) {
      return std::pair<std::string, Options>(std::to_string(10 * i + 1), mixed_k(*rec, i));
    };
    const std::vector<Result> got = concurrently(b, rec, 8, make);
    EXPECT_EQ(sizes.sorted(), std::vector<size_t>{8});
    for (int i = 0; i < 8; ++i) {
      const auto [user, o] = make(i);
      expect_same_list(got[static_cast<size_t>(i)], rec->recommend({user}, o));
      EXPECT_EQ(got[static_cast<size_t>(i)].k, o.k);
      for (const auto& s : got[static_cast<size_t>(i)].lists[0].items) EXPECT_NE(s.id, "4");
    }
  }
}

TEST_F(BatcherTest, RequestsWithOtherOptionsNeverShareACall) {
  const auto rec = open(*run_);
  Sizes sizes;
  Batcher b(options(std::chrono::seconds(60), 4), sizes.callback());
  auto make = [](int i) {
    Options o;
    o.k = 5;
    o.include_seen = i % 2 == 1;  // two groups of four
    return std::pair<std::string, Options>(std::to_string(i), o);
  };
  const std::vector<Result> got = concurrently(b, rec, 8, make);
  EXPECT_EQ(sizes.sorted(), (std::vector<size_t>{4, 4}));
  for (int i = 0; i < 8; ++i) {
    const auto [user, o] = make(i);
    expect_same_list(got[static_cast<size_t>(i)], rec->recommend({user}, o));
  }
}

TEST_F(BatcherTest, AnIndexSearchWithAnotherKGetsItsOwnCall) {
  const auto rec = open(export_dir());
  Sizes sizes;
  // Never full (max_batch 4, two requests per k): each call waits its 200 ms for company.
  Batcher b(options(std::chrono::milliseconds(200), 4), sizes.callback());
  auto make = [](int i) {
    Options o;
    o.k = i < 2 ? 5 : 9;
    return std::pair<std::string, Options>(std::to_string(i + 20), o);
  };
  const std::vector<Result> got = concurrently(b, rec, 4, make);
  for (size_t n : sizes.sorted()) EXPECT_LE(n, 2u);  // never a 5 with a 9
  for (int i = 0; i < 4; ++i) EXPECT_EQ(got[static_cast<size_t>(i)].lists.at(0).items.size(),
                                        static_cast<size_t>(make(i).second.k));
}

TEST_F(BatcherTest, UnknownUsersAreReportedAndTheirMatesAnswered) {
  const auto rec = open(export_dir());
  Sizes sizes;
  Batcher b(options(std::chrono::seconds(60), 3), sizes.callback());
  auto make = [](int i) {
    Options o;
    o.k = 4;
    o.exclude = {"nothing-like-this"};
    return std::pair<std::string, Options>(i == 1 ? "nobody" : std::to_string(i), o);
  };
  const std::vector<Result> got = concurrently(b, rec, 3, make);
  EXPECT_EQ(sizes.sorted(), std::vector<size_t>{3});
  EXPECT_TRUE(got[1].lists.empty());
  ASSERT_EQ(got[1].unknown.size(), 1u);
  EXPECT_EQ(got[1].unknown[0].id, "nobody");
  EXPECT_EQ(got[1].unknown[0].field, "users");
  for (int i : {0, 2}) {
    expect_same_list(got[static_cast<size_t>(i)], rec->recommend({make(i).first}, make(i).second));
    ASSERT_EQ(got[static_cast<size_t>(i)].unknown.size(), 1u);
    EXPECT_EQ(got[static_cast<size_t>(i)].unknown[0].field, "exclude");
  }
}

TEST_F(BatcherTest, AFailedCallGivesEachRequestItsOwnSentence) {
  const auto rec = open(*run_);
  Batcher b(options(std::chrono::seconds(60), 2));
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i)
    threads.emplace_back([&, i] {
      Options o;
      o.candidates = std::vector<std::string>{"no-such-item"};
      try {
        b.recommend(rec, std::to_string(i), o, far());
      } catch (const Error& e) {
        errors[static_cast<size_t>(i)] = e.what();
      }
    });
  for (std::thread& t : threads) t.join();
  for (const std::string& e : errors) EXPECT_NE(e.find("candidate"), std::string::npos) << e;
  // A k the library refuses is refused alone.
  Options bad;
  bad.k = 0;
  EXPECT_THROW(b.recommend(rec, "1", bad, far()), Error);
}

TEST_F(BatcherTest, ARequestPastItsDeadlineTimesOutAndTheOthersGoOn) {
  const auto rec = open(*run_);
  Sizes sizes;
  // The first request waits for company that never comes; its deadline passes first.
  Batcher b(options(std::chrono::seconds(60), 2), sizes.callback());
  Options o;
  o.k = 3;
  EXPECT_THROW(b.recommend(rec, "1", o, Clock::now() + std::chrono::milliseconds(50)), TimedOut);
  // The next two fill a batch; the expired one is dropped, not computed with them.
  const std::vector<Result> got = concurrently(b, rec, 2, [&](int i) {
    return std::pair<std::string, Options>(std::to_string(i + 2), o);
  });
  for (int i = 0; i < 2; ++i)
    expect_same_list(got[static_cast<size_t>(i)], rec->recommend({std::to_string(i + 2)}, o));
  EXPECT_EQ(b.queued(), 0u);
  for (size_t n : sizes.sorted()) EXPECT_LE(n, 2u);
}

TEST_F(BatcherTest, ARequestAloneInTheServerIsAnsweredWithoutWaitingForCompany) {
  const auto rec = open(*run_);
  Sizes sizes;
  // The server handles this request only: no company can come, so the 10-minute wait is
  // skipped (waiting it would miss the 30-second deadline and throw TimedOut).
  Batcher b(options(std::chrono::minutes(10), 8, [] { return int64_t{1}; }), sizes.callback());
  Options o;
  o.k = 4;
  const Result got = b.recommend(rec, "5", o, Clock::now() + std::chrono::seconds(30));
  expect_same_list(got, rec->recommend({"5"}, o));
  EXPECT_EQ(sizes.sorted(), std::vector<size_t>{1});
}

TEST_F(BatcherTest, ARequestWaitsForCompanyWhileOtherRequestsAreInTheServer) {
  const auto rec = open(*run_);
  Sizes sizes;
  // Three requests are in the server; the batch goes when the third is queued (then all the
  // server's requests are in the queue), not when it is full (8) nor after the 10 minutes
  // (each would miss its 30-second deadline and throw TimedOut).
  Batcher b(options(std::chrono::minutes(10), 8, [] { return int64_t{3}; }), sizes.callback());
  Options o;
  o.k = 4;
  std::vector<Result> got(3);
  std::vector<std::thread> threads;
  auto ask = [&](int i) {
    threads.emplace_back([&, i] {
      try {
        got[static_cast<size_t>(i)] =
            b.recommend(rec, std::to_string(i + 1), o, Clock::now() + std::chrono::seconds(30));
      } catch (const std::exception& e) {
        ADD_FAILURE() << "request " << i << ": " << e.what();
      }
    });
  };
  for (int i = 0; i < 2; ++i) {
    ask(i);
    while (b.queued() < static_cast<size_t>(i + 1)) std::this_thread::yield();
  }
  // Two of the three are queued and wait: nothing has been computed.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(b.queued(), 2u);
  EXPECT_TRUE(sizes.sorted().empty());
  ask(2);
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(sizes.sorted(), std::vector<size_t>{3});
  for (int i = 0; i < 3; ++i)
    expect_same_list(got[static_cast<size_t>(i)], rec->recommend({std::to_string(i + 1)}, o));
}

/// A new user of three items of the source, folded in as the server does.
recommend::FoldedUser folded(const Recommender& rec, const std::vector<std::string>& items) {
  recommend::FoldedUser f;
  const Matrix q = rec.fold_in(items, {}, nullptr, &f.given);
  f.factors.assign(q.data.begin(), q.data.end());
  return f;
}

std::vector<std::string> items_of(int user) {
  return {std::to_string(3 * user + 1), std::to_string(3 * user + 2), std::to_string(5 * user + 40)};
}

TEST_F(BatcherTest, NewUsersShareOneScoringCallAndGetTheListsTheyGetAlone) {
  // Four requests of new users (one or two each, six in all) and six of known users arrive
  // together: the new users share one call, the known users another, and every list equals the
  // one its user gets alone (recommend_new_user: fold-in and scoring of that user only), to the
  // bit.
  for (const std::string& path : {*run_, export_dir()}) {
    SCOPED_TRACE(path);
    const auto rec = open(path);
    Sizes sizes;
    Batcher b(options(std::chrono::seconds(60), 6), sizes.callback());
    auto options = [&](int i) { return mixed_k(*rec, i); };
    std::vector<Result> fresh(4), known(6);
    std::vector<std::thread> threads;
    for (int i = 0; i < 6; ++i) {
      if (i < 4)
        threads.emplace_back([&, i] {
          std::vector<recommend::FoldedUser> users{folded(*rec, items_of(2 * i))};
          if (i % 2 == 1) users.push_back(folded(*rec, items_of(2 * i + 1)));
          fresh[static_cast<size_t>(i)] = b.recommend_folded(rec, users, options(i), far());
        });
      threads.emplace_back([&, i] {
        known[static_cast<size_t>(i)] = b.recommend(rec, std::to_string(i + 1), options(i), far());
      });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(sizes.sorted(), (std::vector<size_t>{6, 6}));  // users per call
    for (int i = 0; i < 4; ++i) {
      const Result& got = fresh[static_cast<size_t>(i)];
      ASSERT_EQ(got.lists.size(), i % 2 == 1 ? 2u : 1u);
      EXPECT_EQ(got.k, options(i).k);
      for (size_t u = 0; u < got.lists.size(); ++u) {
        Result one;
        one.lists.push_back(got.lists[u]);
        const Result alone =
            rec->recommend_new_user(items_of(2 * i + static_cast<int>(u)), {}, options(i));
        expect_same_list(one, alone);
        EXPECT_EQ(alone.lists[0].items.size(), static_cast<size_t>(options(i).k));
      }
    }
    for (int i = 0; i < 6; ++i)
      expect_same_list(known[static_cast<size_t>(i)],
                       rec->recommend({std::to_string(i + 1)}, options(i)));
  }
}

TEST_F(BatcherTest, APostsUsersShareOneCallWithOtherRequestsAndGetTheirOwnLists) {
  // Two GETs and two POSTs of known users (three and two users) arrive together: their seven
  // users share one call (max_batch 7 and a long wait: only a full batch is computed), and
  // every list equals the one its user gets alone. A POST naming an unknown user is answered
  // alone, as the library answers that request.
  for (const std::string& path : {*run_, export_dir()}) {
    SCOPED_TRACE(path);
    const auto rec = open(path);
    Sizes sizes;
    Batcher b(options(std::chrono::seconds(60), 7), sizes.callback());
    Options o;
    o.k = 5;
    o.exclude = {"4"};
    const std::vector<std::vector<std::string>> posts{{"3", "17", "250"}, {"40", "8"}};
    std::vector<Result> got_posts(2), got_gets(2);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < 2; ++i) {
      threads.emplace_back([&, i] { got_posts[i] = b.recommend_users(rec, posts[i], o, far()); });
      threads.emplace_back(
          [&, i] { got_gets[i] = b.recommend(rec, std::to_string(100 + i), o, far()); });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(sizes.sorted(), std::vector<size_t>{7});
    for (size_t i = 0; i < 2; ++i) {
      ASSERT_EQ(got_posts[i].lists.size(), posts[i].size());
      for (size_t u = 0; u < posts[i].size(); ++u) {
        Result one;
        one.lists.push_back(got_posts[i].lists[u]);
        expect_same_list(one, rec->recommend({posts[i][u]}, o));
      }
      expect_same_list(got_gets[i], rec->recommend({std::to_string(100 + i)}, o));
    }

    Sizes alone_sizes;
    Batcher lone(options(std::chrono::microseconds(0), 7), alone_sizes.callback());
    const Result mixed = lone.recommend_users(rec, {"3", "no-such-user"}, o, far());
    const Result want = rec->recommend({"3", "no-such-user"}, o);
    ASSERT_EQ(mixed.lists.size(), 1u);
    expect_same_list(mixed, want);
    ASSERT_EQ(mixed.unknown.size(), 1u);
    EXPECT_EQ(mixed.unknown[0].id, "no-such-user");
    EXPECT_EQ(mixed.unknown[0].field, "users");
  }
}

TEST_F(BatcherTest, SimilarItemsRequestsShareOneCallAndGetTheListsTheyGetAlone) {
  // Six requests for one item each by dot, six by cosine and six GETs arrive together: each
  // kind fills a call of its own (max_batch 6 and a long wait: only a full batch is computed,
  // so a call that mixed them would leave one short and wait out the minute), and every list
  // equals the one its item or user gets alone.
  for (const std::string& path : {*run_, export_dir()}) {
    SCOPED_TRACE(path);
    const auto rec = open(path);
    Sizes sizes;
    Batcher b(options(std::chrono::seconds(60), 6), sizes.callback());
    recommend::SimilarOptions dot, cosine;
    dot.metric = recommend::Metric::kDot;
    cosine.metric = recommend::Metric::kCosine;
    // An index search shares a call only with equal k; exact scoring with any.
    auto k_of = [&](int i) { return rec->is_export() ? 5 : 3 + i % 6; };
    auto item_of = [](int i) { return std::to_string(7 * i + 2); };
    auto options_of = [&](int i) { return i < 6 ? dot : cosine; };
    std::vector<Result> got(12), gets(6);
    std::vector<std::thread> threads;
    for (int i = 0; i < 12; ++i)
      threads.emplace_back([&, i] {
        got[static_cast<size_t>(i)] = b.similar_items(rec, {item_of(i)}, k_of(i), options_of(i), far());
      });
    Options o;
    o.k = 4;
    for (int i = 0; i < 6; ++i)
      threads.emplace_back([&, i] {
        gets[static_cast<size_t>(i)] = b.recommend(rec, std::to_string(i + 1), o, far());
      });
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(sizes.sorted(), (std::vector<size_t>{6, 6, 6}));
    for (int i = 0; i < 12; ++i)
      expect_same_list(got[static_cast<size_t>(i)],
                       rec->similar_items(item_of(i), k_of(i), options_of(i)));
    for (int i = 0; i < 6; ++i)
      expect_same_list(gets[static_cast<size_t>(i)], rec->recommend({std::to_string(i + 1)}, o));
  }
}

TEST_F(BatcherTest, ACallHoldsAtMostMaxBatchUsersAndABiggerRequestGoesAlone) {
  // max_batch 3 users (and a long wait, so that only a full batch is computed): a request of 5
  // new users is a call of its own; three of one user share one; a request of 2 users does not
  // fit beside another of 2, which then shares the next call with a request of 1. The lists
  // are still each user's own.
  const auto rec = open(*run_);
  Sizes sizes;
  Batcher b(options(std::chrono::seconds(60), 3), sizes.callback());
  Options o;
  o.k = 4;
  auto request = [&](int first, int n) {
    std::vector<recommend::FoldedUser> users;
    for (int u = 0; u < n; ++u) users.push_back(folded(*rec, items_of(first + u)));
    const Result r = b.recommend_folded(rec, users, o, far());
    ASSERT_EQ(r.lists.size(), static_cast<size_t>(n));
    for (int u = 0; u < n; ++u) {
      Result one;
      one.lists.push_back(r.lists[static_cast<size_t>(u)]);
      expect_same_list(one, rec->recommend_new_user(items_of(first + u), {}, o));
    }
  };
  auto wait_queued = [&](size_t n) {  // up to 20 s
    for (int t = 0; t < 20000 && b.queued() != n; ++t)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return b.queued() == n;
  };
  request(0, 5);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([&, i] { request(5 + i, 1); });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(sizes.sorted(), (std::vector<size_t>{3, 5}));
  std::thread a([&] { request(8, 2); });
  EXPECT_TRUE(wait_queued(1));
  std::thread second([&] { request(10, 2); });
  a.join();  // answered alone: the second request did not fit beside it
  const bool second_waits = wait_queued(1);
  EXPECT_TRUE(second_waits) << "the second request shared the first one's call";
  std::thread third;
  if (second_waits) third = std::thread([&] { request(12, 1); });
  second.join();
  if (third.joinable()) third.join();
  EXPECT_EQ(sizes.sorted(), (std::vector<size_t>{2, 3, 3, 5}));
}

TEST_F(BatcherTest, ANewUserTheLibraryRefusesFailsAloneAndItsMatesAreAnswered) {
  const auto rec = open(*run_);
  Sizes sizes;
  Batcher b(options(std::chrono::seconds(60), 3), sizes.callback());
  Options o;
  o.k = 5;
  std::vector<Result> got(3);
  std::string error;
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i)
    threads.emplace_back([&, i] {
      recommend::FoldedUser f = folded(*rec, items_of(i));
      if (i == 1) f.factors.pop_back();  // one factor short
      try {
        got[static_cast<size_t>(i)] = b.recommend_folded(rec, {f}, o, far());
      } catch (const Error& e) {
        error = e.what();
      }
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(sizes.sorted(), std::vector<size_t>{3});
  EXPECT_NE(error.find("folded-in user 0 has 7 factors; expected 8"), std::string::npos) << error;
  for (int i : {0, 2}) expect_same_list(got[static_cast<size_t>(i)], rec->recommend_new_user(items_of(i), {}, o));
}

}  // namespace
}  // namespace recforge::serve
