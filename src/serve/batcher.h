#pragma once
/// @file batcher.h
/// Dynamic batching for the server: concurrent recommend requests (a GET's user, a POST's
/// users) are gathered for a bounded wait and answered by one Recommender::recommend call (one
/// GEMM over the batch, or one batched Faiss search for an export's index), which is what makes
/// `recommend --all` fast, now used online. New users folded in by concurrent POSTs are gathered
/// the same way and scored by one Recommender::recommend_folded call, and similar-items
/// requests by one Recommender::similar_items_batch call.
///
/// Requests are queued; `workers` threads each take the oldest request together with every
/// queued request that can share its library call (the same Recommender, equal options apart
/// from k, and for index searches equal k too, since an approximate search depends on it), up
/// to `max_batch`, once the oldest has waited `max_wait` or the batch is full. A worker that is
/// busy lets the queue grow, so batches grow with the load and a lone request waits at most
/// `max_wait`, or not at all when no other request is in the server (`in_server`). Every
/// caller waits for its own answer until its deadline.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "recommend/recommend.h"

namespace recforge::serve {

/// The request's deadline passed before its answer was ready.
struct TimedOut : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct BatcherOptions {
  /// How long the oldest queued request waits for company before its batch is computed.
  std::chrono::microseconds max_wait{2000};
  /// Users per library call (>= 1): known users, or new users of POSTs (one request's new users
  /// are never split; a request with more than this many is a call of its own).
  size_t max_batch = 256;
  /// Threads computing batches (>= 1). The library call itself is multi-threaded (BLAS,
  /// OpenMP), so one is usually best: while it computes, the next batch gathers.
  int workers = 1;
  /// Requests the server is handling now, the queued ones included (optional, thread-safe).
  /// While it equals the number of queued requests, no company can come from inside the
  /// server, so the oldest does not wait for any: a request that reaches an idle server is
  /// answered at once instead of after max_wait. Read when the wait begins and whenever a
  /// request is queued during it.
  std::function<int64_t()> in_server;
};

class Batcher {
 public:
  /// `on_batch(n)` is called for each batch taken, with its number of users (for metrics),
  /// before any of them is answered; it must be thread-safe when workers > 1.
  explicit Batcher(BatcherOptions o, std::function<void(size_t)> on_batch = {});
  /// Answers what is queued (without waiting for company), then joins the workers.
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  /// Says that a request of the server ended (BatcherOptions::in_server went down): a worker
  /// waiting for company for a queued request re-checks whether any can still come.
  void wake();

  /// One user's answer: a Result with one list (none when the user is unknown to `rec`, which
  /// is then in Result::unknown with field "users", as are unknown exclude and candidate ids
  /// with theirs). Computed in one Recommender::recommend call together with concurrent
  /// requests that can share it. With exact scoring (runs, `exact`, `candidates`) the list
  /// equals what `rec->recommend({user}, o)` returns; an index search's list too, since each
  /// user fetches for their own seen count (index/filtered_search.h), except where an IVF
  /// index's cell choice meets a near-tie that the batch's GEMM rounds otherwise.
  /// Throws recforge::Error as Recommender::recommend would for this request alone (e.g. none
  /// of the candidates is known), and TimedOut when `deadline` passes first (the request is
  /// then dropped unless already being computed).
  recommend::Result recommend(std::shared_ptr<const recommend::Recommender> rec,
                              const std::string& user, const recommend::Options& o,
                              std::chrono::steady_clock::time_point deadline);

  /// The users of one request (a POST's "users"): a Result with one list per known user, in
  /// order, computed in one Recommender::recommend call together with concurrent requests of
  /// known users that can share it (a request's users are never split; a request with more
  /// than max_batch is a call of its own). A request naming an unknown user is computed
  /// alone, as `rec->recommend(users, o)` (whose Result lists that id in `unknown`). Otherwise
  /// as recommend above.
  recommend::Result recommend_users(std::shared_ptr<const recommend::Recommender> rec,
                                    std::vector<std::string> users, const recommend::Options& o,
                                    std::chrono::steady_clock::time_point deadline);

  /// New users of one request, already folded in (Recommender::fold_in, on the caller's
  /// thread): a Result with one list per user, in order, computed in one
  /// Recommender::recommend_folded call together with concurrent new-user requests that can
  /// share it (by the rules of recommend; known users and new users never share a call). With
  /// exact scoring each list equals what `rec->recommend_folded({user}, o)` returns. Throws
  /// recforge::Error as recommend_folded would for this request alone, and TimedOut.
  recommend::Result recommend_folded(std::shared_ptr<const recommend::Recommender> rec,
                                     std::vector<recommend::FoldedUser> users,
                                     const recommend::Options& o,
                                     std::chrono::steady_clock::time_point deadline);

  /// Similar items of one request (the server's GET /v1/similar-items gives one item): a
  /// Result with one list per item, in order, computed in one
  /// Recommender::similar_items_batch call together with concurrent similar-items requests of
  /// the same metric and `exact` (and equal k for an index search), each list equal to what
  /// `rec->similar_items(item, k, so)` returns. Throws recforge::Error as similar_items_batch
  /// would for this request alone (an unknown item), and TimedOut.
  recommend::Result similar_items(std::shared_ptr<const recommend::Recommender> rec,
                                  std::vector<std::string> items, int k,
                                  const recommend::SimilarOptions& so,
                                  std::chrono::steady_clock::time_point deadline);

  /// Requests queued and not yet taken by a worker (for tests and metrics).
  size_t queued() const;

  /// A queued request (defined in batcher.cpp).
  struct Pending;

 private:
  /// Queues `p` and waits for its answer until its deadline.
  recommend::Result submit(std::shared_ptr<Pending> p);
  void work();
  /// Takes the oldest request and those that can share its call; lock held.
  std::vector<std::shared_ptr<Pending>> take(std::unique_lock<std::mutex>& lock);
  void answer(const std::vector<std::shared_ptr<Pending>>& batch);
  /// One library call for `batch`: `call` with the first request's options and the largest k,
  /// its lists shared out in request order. When it fails, a batch of one gets the error and
  /// otherwise each request its own answer or sentence from `alone`.
  void share(const std::vector<std::shared_ptr<Pending>>& batch,
             const std::function<recommend::Result(const recommend::Options&)>& call,
             const std::function<recommend::Result(const Pending&)>& alone);

  BatcherOptions o_;
  std::function<void(size_t)> on_batch_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Pending>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace recforge::serve
