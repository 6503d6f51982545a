#include "serve/batcher.h"

#include <algorithm>
#include <future>

#include "core/error.h"

namespace recforge::serve {

using Clock = std::chrono::steady_clock;

struct Batcher::Pending {
  enum class Kind { kUsers, kFresh, kSimilar };
  Kind kind = Kind::kUsers;
  std::shared_ptr<const recommend::Recommender> rec;
  std::vector<std::string> ids;                // user ids (kUsers) or item ids (kSimilar), or
  std::vector<recommend::FoldedUser> folded;   // new users (kFresh, never empty)
  recommend::Options o;                        // its k is a similar-items request's k too
  recommend::SimilarOptions so;                // kSimilar
  Clock::time_point queued_at;
  Clock::time_point deadline;
  std::promise<recommend::Result> promise;
  /// Queries in the request: its users or items, or its new users.
  size_t users() const { return kind == Kind::kFresh ? folded.size() : ids.size(); }
};

namespace {

/// Whether a request's answer comes from an index search (not exact scoring): it depends on k.
bool searches_index(const Batcher::Pending& p) {
  if (!p.rec->is_export()) return false;
  return p.kind == Batcher::Pending::Kind::kSimilar ? !p.so.exact
                                                    : !p.o.exact && !p.o.candidates.has_value();
}

/// Whether two requests can share one library call: the same source, kind and options, k aside
/// where the list for a smaller k is the prefix of the larger one's (exact scoring breaks ties
/// by item row, so it is). Known users, new users and similar items never share one.
bool compatible(const Batcher::Pending& a, const Batcher::Pending& b) {
  if (a.rec != b.rec || a.kind != b.kind) return false;
  if (a.kind == Batcher::Pending::Kind::kSimilar) {
    if (a.so.metric != b.so.metric || a.so.exact != b.so.exact) return false;
  } else if (a.o.include_seen != b.o.include_seen || a.o.exact != b.o.exact ||
             a.o.exclude != b.o.exclude || a.o.candidates != b.o.candidates) {
    return false;
  }
  return a.o.k == b.o.k || !searches_index(a);
}

}  // namespace

Batcher::Batcher(BatcherOptions o, std::function<void(size_t)> on_batch)
    : o_(o), on_batch_(std::move(on_batch)) {
  if (o_.max_batch < 1) fail("batcher: max_batch is {}; expected at least 1", o_.max_batch);
  if (o_.workers < 1) fail("batcher: workers is {}; expected at least 1", o_.workers);
  if (o_.max_wait.count() < 0)
    fail("batcher: max_wait is {} us; expected 0 or more", o_.max_wait.count());
  for (int w = 0; w < o_.workers; ++w) workers_.emplace_back([this] { work(); });
}

Batcher::~Batcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

size_t Batcher::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

namespace {

/// A request of `kind` on `rec` with options `o` and its deadline; the caller adds its queries.
std::shared_ptr<Batcher::Pending> pending(Batcher::Pending::Kind kind,
                                          std::shared_ptr<const recommend::Recommender> rec,
                                          const recommend::Options& o, Clock::time_point deadline) {
  auto p = std::make_shared<Batcher::Pending>();
  p->kind = kind;
  p->rec = std::move(rec);
  p->o = o;
  p->deadline = deadline;
  return p;
}

}  // namespace

recommend::Result Batcher::recommend(std::shared_ptr<const recommend::Recommender> rec,
                                     const std::string& user, const recommend::Options& o,
                                     Clock::time_point deadline) {
  return recommend_users(std::move(rec), {user}, o, deadline);
}

recommend::Result Batcher::recommend_users(std::shared_ptr<const recommend::Recommender> rec,
                                           std::vector<std::string> users,
                                           const recommend::Options& o,
                                           Clock::time_point deadline) {
  // A k the library refuses gets its sentence alone, not the list length of a batch mate.
  if (o.k < 1 || users.empty()) return rec->recommend(users, o);
  auto p = pending(Pending::Kind::kUsers, std::move(rec), o, deadline);
  p->ids = std::move(users);
  return submit(std::move(p));
}

recommend::Result Batcher::recommend_folded(std::shared_ptr<const recommend::Recommender> rec,
                                            std::vector<recommend::FoldedUser> users,
                                            const recommend::Options& o,
                                            Clock::time_point deadline) {
  if (o.k < 1 || users.empty()) return rec->recommend_folded(users, o);
  auto p = pending(Pending::Kind::kFresh, std::move(rec), o, deadline);
  p->folded = std::move(users);
  return submit(std::move(p));
}

recommend::Result Batcher::similar_items(std::shared_ptr<const recommend::Recommender> rec,
                                         std::vector<std::string> items, int k,
                                         const recommend::SimilarOptions& so,
                                         Clock::time_point deadline) {
  if (k < 1 || items.empty()) return rec->similar_items_batch(items, k, so);
  recommend::Options o;
  o.k = k;
  auto p = pending(Pending::Kind::kSimilar, std::move(rec), o, deadline);
  p->ids = std::move(items);
  p->so = so;
  return submit(std::move(p));
}

recommend::Result Batcher::submit(std::shared_ptr<Pending> p) {
  p->queued_at = Clock::now();
  const Clock::time_point deadline = p->deadline;
  std::future<recommend::Result> answer = p->promise.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) fail("the server is stopping; no new request is taken");
    queue_.push_back(std::move(p));
  }
  cv_.notify_all();
  if (answer.wait_until(deadline) != std::future_status::ready)
    throw TimedOut("the request timed out before its batch was answered");
  return answer.get();
}

void Batcher::wake() {
  // Under the lock: a worker between its predicate and its wait would miss a bare notify.
  std::lock_guard<std::mutex> lock(mu_);
  cv_.notify_all();
}

std::vector<std::shared_ptr<Batcher::Pending>> Batcher::take(std::unique_lock<std::mutex>& lock) {
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    // Requests whose callers have given up (TimedOut) are dropped: computing them would only
    // delay the others, and waiting for company on their behalf would delay the next.
    const Clock::time_point now = Clock::now();
    for (auto it = queue_.begin(); it != queue_.end();) {
      if ((*it)->deadline < now) {
        (*it)->promise.set_exception(
            std::make_exception_ptr(TimedOut("the request timed out in the queue")));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    if (queue_.empty()) {
      if (stopping_) return {};
      continue;
    }
    const std::shared_ptr<Pending> first = queue_.front();
    auto mates = [&] {  // users of the requests that could share the call
      size_t n = 0;
      for (const auto& p : queue_)
        if (p->deadline >= Clock::now() && compatible(*first, *p))
          n += p->users();
      return n;
    };
    // Every request in the server is queued: nothing inside it can join the batch.
    auto alone = [&] {
      return o_.in_server && o_.in_server() <= static_cast<int64_t>(queue_.size());
    };
    // Wait for company until the oldest has waited max_wait or the batch is full, or no company
    // can come; another worker may take `first` meanwhile, in which case start over.
    // Not past the first's deadline: company found after it would not save it.
    cv_.wait_until(lock, std::min(first->queued_at + o_.max_wait, first->deadline), [&] {
      return stopping_ || queue_.empty() || queue_.front() != first || alone() ||
             mates() >= o_.max_batch;
    });
    if (queue_.empty() || queue_.front() != first) continue;
    // At most max_batch users per call, in queue order; the first request always goes, also a
    // POST with more new users than that.
    std::vector<std::shared_ptr<Pending>> batch;
    size_t users = 0;
    const Clock::time_point taken = Clock::now();
    for (auto it = queue_.begin(); it != queue_.end() && users < o_.max_batch;) {
      if (!compatible(*first, **it)) {
        ++it;
        continue;
      }
      const size_t n = (*it)->users();
      if (!batch.empty() && users + n > o_.max_batch) break;
      if ((*it)->deadline < taken)
        (*it)->promise.set_exception(
            std::make_exception_ptr(TimedOut("the request timed out in the queue")));
      else
        batch.push_back(*it), users += n;
      it = queue_.erase(it);
    }
    if (!batch.empty()) return batch;
  }
}

void Batcher::work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    std::vector<std::shared_ptr<Pending>> batch = take(lock);
    if (batch.empty()) return;
    lock.unlock();
    answer(batch);
    lock.lock();
  }
}

void Batcher::answer(const std::vector<std::shared_ptr<Pending>>& batch) {
  const recommend::Recommender& rec = *batch.front()->rec;
  if (on_batch_) {  // users per call, before any caller can see its answer
    size_t users = 0;
    for (const auto& p : batch) users += p->users();
    on_batch_(users);
  }
  if (batch.front()->kind == Pending::Kind::kSimilar) {
    std::vector<std::string> items;
    for (const auto& p : batch) items.insert(items.end(), p->ids.begin(), p->ids.end());
    share(
        batch,
        [&](const recommend::Options& o) {
          return rec.similar_items_batch(items, o.k, batch.front()->so);
        },
        [&](const Pending& p) { return rec.similar_items_batch(p.ids, p.o.k, p.so); });
    return;
  }
  if (batch.front()->kind == Pending::Kind::kFresh) {
    std::vector<recommend::FoldedUser> users;
    for (const auto& p : batch) users.insert(users.end(), p->folded.begin(), p->folded.end());
    share(
        batch, [&](const recommend::Options& o) { return rec.recommend_folded(users, o); },
        [&](const Pending& p) { return rec.recommend_folded(p.folded, p.o); });
    return;
  }
  // A request with an unknown user is answered at once, alone: its Result lists the unknown
  // ids (field "users") and has lists for its known users only. The others share one call.
  std::vector<std::shared_ptr<Pending>> known;
  std::vector<std::string> users;
  for (const auto& p : batch) {
    std::vector<std::string> mine;
    std::vector<recommend::Unknown> unknown;
    for (const std::string& u : p->ids) {
      const std::string id = recommend::trim(u);
      if (rec.knows_user(id))
        mine.push_back(id);
      else
        unknown.push_back({id, "users"});
    }
    if (unknown.empty()) {
      known.push_back(p);
      users.insert(users.end(), mine.begin(), mine.end());
      continue;
    }
    try {
      recommend::Result r;
      if (!mine.empty()) {
        r = rec.recommend(mine, p->o);
      } else {
        r.k = p->o.k;
        r.exact = true;
      }
      r.unknown.insert(r.unknown.begin(), unknown.begin(), unknown.end());
      p->promise.set_value(std::move(r));
    } catch (...) {
      p->promise.set_exception(std::current_exception());
    }
  }
  if (known.empty()) {
    return;
  }
  // With every user known, the call fails only for what is wrong with the shared options (no
  // known candidate) or for an internal error.
  share(
      known, [&](const recommend::Options& o) { return rec.recommend(users, o); },
      [&](const Pending& p) { return rec.recommend(p.ids, p.o); });
}

void Batcher::share(const std::vector<std::shared_ptr<Pending>>& batch,
                    const std::function<recommend::Result(const recommend::Options&)>& call,
                    const std::function<recommend::Result(const Pending&)>& alone) {
  recommend::Options o = batch.front()->o;
  for (const auto& p : batch) o.k = std::max(o.k, p->o.k);
  recommend::Result all;
  try {
    all = call(o);
  } catch (...) {
    // A batch of one gets the error; otherwise each request gets its own answer or sentence,
    // as it would alone.
    if (batch.size() == 1) {
      batch.front()->promise.set_exception(std::current_exception());
      return;
    }
    for (const auto& p : batch) {
      try {
        p->promise.set_value(alone(*p));
      } catch (...) {
        p->promise.set_exception(std::current_exception());
      }
    }
    return;
  }
  // The unknown ids of the shared options (exclude, candidates) go to every request; each takes
  // its users' lists, in request order, cut to its own k.
  size_t next = 0;
  for (const auto& p : batch) {
    recommend::Result r;
    r.exact = all.exact;
    r.unknown = all.unknown;
    r.k = std::min(all.k, p->o.k);
    for (size_t u = 0; u < p->users(); ++u) {
      recommend::List list = std::move(all.lists[next++]);
      if (static_cast<int>(list.items.size()) > p->o.k) list.items.resize(static_cast<size_t>(p->o.k));
      r.lists.push_back(std::move(list));
    }
    p->promise.set_value(std::move(r));
  }
}

}  // namespace recforge::serve
