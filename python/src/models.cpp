/// @file models.cpp
/// The engine side of recforge's in-memory model classes (python/recforge/models.py): one
/// `_Engine` per model object, which holds the config, the Context, the engine model
/// (models::Model), and the training matrix as a data::Csr and its transpose, built once in C++.
/// Everything that can take long (building the CSR, an iteration, the loss, top-k, fold-in,
/// explain) runs with the GIL released.
///
/// Factor views. user_view()/item_view() are writable float32 NumPy arrays over the engine's
/// own matrices (no copy): an iteration updates them in place, and a write through them changes
/// what the engine scores. When the engine must replace a matrix (init for a new shape, factors
/// of another shape assigned, rows added by a partial fit, the engine destroyed), the buffer
/// that outstanding views point to is first moved out of the model into a holder those views
/// own ("retired"): old arrays stay valid (detached, as implicit's arrays are after a new fit),
/// never dangling.
///
/// Query caches. Queries by the model's own rows (recommend, similar_items, similar_users, the
/// norms) need per-side values derived from every row: the largest row norm (the exact top-k's
/// rounding bound) and, for cosine, the rows at unit length. Computing them on every call cost
/// a pass over the matrix (and for cosine a copy of it): 7.9 ms for one user's recommend and
/// 72 ms for one item's similar_items with the 1024-factor Gowalla model, against implicit's
/// 4.3 and 5.2 ms (docs/benchmarks.md, "Python package"). They are now kept (Derived) while
/// the factors cannot have changed: no engine write since (init, iterate, set_factors,
/// set_rows), no writable view handed out since, and no writable view alive (one could write
/// at any time). A model whose views are held by the caller is
/// therefore computed afresh per call, as before; the cost of a cache is one more matrix of the
/// side's size once similar_* has asked for unit rows. The model's own prepared query state
/// (iALS's Gram matrix of the items for fold-in and explain, models::Model::prepare_queries)
/// is kept by the same rule (prepare()): a recalculate_user at 1024 factors on Gowalla took 245
/// ms computing it on every call, against implicit's 16 ms with its cached YtY. recalculate_item
/// keeps its model with the roles exchanged, and that model's Gram matrix of the users, likewise
/// (swapped_model()).
///
/// Threads. Calls on one engine from several Python threads are serialised where they must be:
/// whatever replaces or writes the factors or the training matrix (set_data, init, iterate,
/// set_factors, set_rows) holds the engine's lock exclusively, whatever reads them (loss,
/// top-k, fold-in, explain, the views) shares it. A call that releases the GIL takes the lock
/// after releasing it and gives it back before taking the GIL again (Compute is built first), and
/// no call waits for the GIL while it holds the lock, so the two cannot deadlock. Before, a
/// partial_fit_users in one thread during a fit in another freed the matrix the iteration was
/// writing (a segmentation fault).

#include <pybind11/stl.h>

#include <omp.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "common.h"
#include "config/config.h"
#include "core/context.h"
#include "core/error.h"
#include "core/log.h"
#include "data/csr.h"
#include "eval/topk.h"
#include "models/model.h"
#include "pipeline/options.h"

namespace recforge::python {
namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using Int64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using Int32Array = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

/// What views of one generation of a factor matrix own: the buffer once it is retired.
struct Slot {
  std::vector<float> retired;
};

/// When something derived from the factors was computed (see "Query caches" at the top): the
/// engine's count of writes and of writable views handed out then, and whether it may be kept
/// (no writable view was alive). It holds while both counts are unchanged.
struct Stamp {
  uint64_t writes = 0, views = 0;
  bool kept = false;
  bool holds(uint64_t w, uint64_t v) const { return kept && writes == w && views == v; }
};

/// What queries derive from one side's factor rows.
struct Derived {
  Stamp stamp;
  double max_norm = 0;  // the largest row norm (eval::max_row_norm)
  bool has_unit = false;
  std::vector<float> norms;  // each row's norm, a zero norm replaced by 1e-10 (as implicit)
  std::vector<float> unit;   // each row divided by its norm
  double unit_max_norm = 0;
};

/// The side of a factor matrix: 0 users, 1 items.
int side_of(bool users) { return users ? 0 : 1; }

/// A CSR from scipy's three arrays, checked: indptr monotone from 0 to nnz, columns in
/// [0, cols) and sorted within rows, values finite and >= 0 (named by (row, column) of `what`).
data::Csr make_csr(const std::string& what, const Int64Array& indptr, const Int32Array& indices,
                   const FloatArray& values, int64_t rows, int64_t cols) {
  if (indptr.ndim() != 1 || indptr.shape(0) != rows + 1)
    fail("{}: indptr has {} entries; expected rows + 1 = {}", what, indptr.size(), rows + 1);
  if (indices.ndim() != 1 || values.ndim() != 1 || indices.shape(0) != values.shape(0))
    fail("{}: indices ({}) and data ({}) must be 1-D arrays of the same length", what,
         indices.size(), values.size());
  data::Csr c;
  c.rows = rows;
  c.cols = cols;
  const int64_t* p = indptr.data();
  const int32_t* ix = indices.data();
  const float* v = values.data();
  const int64_t nnz = indices.shape(0);
  {
    py::gil_scoped_release nogil;
    if (p[0] != 0 || p[rows] != nnz)
      fail("{}: indptr runs from {} to {}; expected 0 to the number of stored values {}", what,
           p[0], p[rows], nnz);
    // All of indptr first: a row's entries are read only once every offset is known to be
    // within [0, nnz] (a decrease after an offset past nnz read beyond the arrays).
    for (int64_t r = 0; r < rows; ++r)
      if (p[r + 1] < p[r]) fail("{}: indptr decreases at row {}; expected a CSR matrix", what, r);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t e = p[r]; e < p[r + 1]; ++e) {
        if (ix[e] < 0 || ix[e] >= cols)
          fail("{}: column {} in row {} is outside [0, {})", what, ix[e], r, cols);
        if (e > p[r] && ix[e] <= ix[e - 1])
          fail("{}: row {} has columns out of order or repeated ({} after {}); expected a "
               "canonical CSR matrix (call sum_duplicates())",
               what, r, ix[e], ix[e - 1]);
        if (!std::isfinite(v[e]) || v[e] < 0)
          fail("{} has the value {} at (row {}, column {}); expected finite values >= 0", what,
               v[e], r, ix[e]);
      }
    }
    c.indptr.assign(p, p + rows + 1);
    c.indices.assign(ix, ix + nnz);
    c.data.assign(v, v + nnz);
  }
  return c;
}

Matrix to_matrix(const FloatArray& a, const std::string& what) {
  if (a.ndim() != 2) fail("{} must be a 2-D array; it has {} dimensions", what, a.ndim());
  Matrix m;
  m.rows = a.shape(0);
  m.cols = a.shape(1);
  m.data.assign(a.data(), a.data() + a.size());
  return m;
}

py::array_t<float> to_array(Matrix&& m) {
  auto* v = new std::vector<float>(std::move(m.data).take());
  py::capsule owner(v, [](void* p) { delete static_cast<std::vector<float>*>(p); });
  return py::array_t<float>({m.rows, m.cols}, v->data(), owner);
}

/// What an engine's computation holds: the GIL released, the engine's progress display and
/// stage summaries off on this thread (the models are quiet, as implicit's; fit has its own
/// tqdm bar), and the engine's thread count as the
/// calling thread's OpenMP default for its parallel regions, the previous one restored after.
/// OpenMP keeps that default per OS thread, so without this a model's calls from another Python
/// thread (a thread pool answering queries) ran on every core whatever its num_threads, and
/// on the thread that built it, on the num_threads of the model built there last.
class Compute {
 public:
  explicit Compute(int threads) : previous_(omp_get_max_threads()) {
    omp_set_num_threads(threads);
  }
  ~Compute() { omp_set_num_threads(previous_); }
  Compute(const Compute&) = delete;
  Compute& operator=(const Compute&) = delete;

 private:
  py::gil_scoped_release nogil_;
  QuietProgress quiet_;
  int previous_;
};

class Engine {
 public:
  /// The config text (a YAML document with the `model` and `train` sections), checked by
  /// config::parse and config::check; `name` stands for the file name in its sentences.
  Engine(const std::string& yaml, const std::string& name)
      : cfg_(config::Config::parse(yaml, name)),
        ctx_(Context::create(pipeline::training_device(cfg_.settings()),
                             static_cast<int>(cfg_.settings().train.threads))),
        model_(pipeline::make_model(cfg_, ctx_)) {
    if (!model_) fail("{}: model.type none has no model", name);
  }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  ~Engine() {
    retire(users_slot_, user_matrix());
    retire(items_slot_, item_matrix());
  }

  std::string describe() const { return model_->describe().dump(); }
  std::string type() const { return model_->type(); }
  int iterations() const { return model_->iterations(); }
  std::string device() const { return ctx_.device().name(); }
  int threads() const { return ctx_.threads(); }
  bool initialized() const { return model_->item_factors().rows > 0 || model_->user_factors().rows > 0; }

  /// The training matrix (users × items confidences) and its transpose, built once.
  void set_data(const Int64Array& indptr, const Int32Array& indices, const FloatArray& values,
                int64_t rows, int64_t cols) {
    data::Csr ui = make_csr("user_items", indptr, indices, values, rows, cols);
    const Compute compute(ctx_.threads());
    data::Csr iu = ui.transpose();
    const std::unique_lock lock(mu_);
    item_users_ = std::move(iu);
    user_items_ = std::move(ui);
  }
  void drop_data() {
    const py::gil_scoped_release nogil;
    const std::unique_lock lock(mu_);
    user_items_ = data::Csr();
    item_users_ = data::Csr();
  }

  /// Fresh random factors for the training matrix's shape.
  void init() {
    const Compute compute(ctx_.threads());
    const std::unique_lock lock(mu_);
    retire(users_slot_, user_matrix());
    retire(items_slot_, item_matrix());
    wrote();
    model_->init(user_items_.rows, user_items_.cols);
    iterations_done_ = 0;
    partial_ = false;
  }

  /// One iteration (iALS: all users then all items; bpr, softmax: one epoch).
  void iterate() {
    const Compute compute(ctx_.threads());
    const std::unique_lock lock(mu_);
    // The factors must still fit the training matrix: a callback may have assigned others.
    const Matrix& u = model_->user_factors();
    const Matrix& i = model_->item_factors();
    if (u.rows != user_items_.rows || i.rows != user_items_.cols)
      fail("the factors are {} users × {} and {} items × {}, and the training matrix is {} × {}; "
           "assign factors of the training matrix's shape during fit, or call fit again",
           u.rows, u.cols, i.rows, i.cols, user_items_.rows, user_items_.cols);
    partial_ = true;  // until the iteration completes: an error leaves its factors half-updated
    wrote();
    model_->iterate(user_items_, item_users_);
    partial_ = false;
    ++iterations_done_;
  }
  /// True when the last iterate() failed after it had started to update the factors.
  bool partial() const { return partial_; }
  /// Iterations completed since init(): the count the factors hold. Python cannot tell it
  /// from the call alone, because a Ctrl-C that arrived during iterate() is raised as the call
  /// returns, after the iteration completed.
  int iterations_done() const { return iterations_done_; }

  double loss() const {
    const Compute compute(ctx_.threads());
    const std::shared_lock lock(mu_);
    return model_->loss(user_items_, item_users_);
  }

  // On a GPU the model's host matrices are mirrors that it refreshes (and may reallocate)
  // itself, and writes to them never reach the GPU: the arrays are read-only copies there.
  py::array_t<float> user_view(py::object self) {
    const std::shared_lock lock(mu_);
    if (on_gpu()) return read_only_copy(model_->user_factors());
    ++views_[0];
    return view(users_slot_, user_matrix(), self);
  }
  py::array_t<float> item_view(py::object self) {
    const std::shared_lock lock(mu_);
    if (on_gpu()) return read_only_copy(model_->item_factors());
    ++views_[1];
    return view(items_slot_, item_matrix(), self);
  }
  bool on_gpu() const { return model_->cuda() != nullptr; }
  /// Address of the engine's factor storage, for tests of the zero-copy views.
  uintptr_t user_address() const {
    return reinterpret_cast<uintptr_t>(model_->user_factors().data.data());
  }
  uintptr_t item_address() const {
    return reinterpret_cast<uintptr_t>(model_->item_factors().data.data());
  }

  /// How many times the query caches were computed (for tests that they are kept and renewed).
  uint64_t derived_computations() { return derived_computations_.load(); }

  /// Copies both matrices in; into the existing storage when the shapes are unchanged (views
  /// then see the new values), else into new storage (views of the old one are retired).
  void set_factors(const FloatArray& users, const FloatArray& items) {
    Matrix u = to_matrix(users, "user_factors"), i = to_matrix(items, "item_factors");
    if (u.cols != i.cols)
      fail("user_factors has {} columns and item_factors {}; expected the same number", u.cols,
           i.cols);
    const std::unique_lock lock(mu_);
    wrote();
    Matrix& mu = user_matrix();
    Matrix& mi = item_matrix();
    if (!on_gpu() && mu.rows == u.rows && mu.cols == u.cols && mi.rows == i.rows &&
        mi.cols == i.cols && !mu.data.empty() && !mi.data.empty()) {
      std::memcpy(mu.data.data(), u.data.data(), u.data.size() * sizeof(float));
      std::memcpy(mi.data.data(), i.data.data(), i.data.size() * sizeof(float));
      return;
    }
    retire(users_slot_, mu);
    retire(items_slot_, mi);
    model_->set_factors(std::move(u), std::move(i));
  }

  /// After init(): a side given (an array of the model's width, e.g. a view of the factors of
  /// the model being refitted) replaces the first min(its rows, the side's rows) rows of the
  /// factors init() drew; None keeps the draw. The rows are written into the drawn matrices,
  /// which are moved out of the model and back through set_factors (so the model resets what it
  /// derives from its factors) without a copy: a refit holds the old model's factors and the
  /// new one's, nothing more (it used to copy each side once here, and three times through
  /// NumPy before that).
  void start_from(const std::optional<FloatArray>& users, const std::optional<FloatArray>& items) {
    if (!users && !items) return;
    const std::unique_lock lock(mu_);
    auto check = [](const std::optional<FloatArray>& a, const Matrix& m, const char* what) {
      if (a && (a->ndim() != 2 || a->shape(1) != m.cols))
        fail("{} to start from has shape ({}, {}); expected {} columns", what, a->shape(0),
             a->ndim() == 2 ? a->shape(1) : 0, m.cols);
    };
    check(users, user_matrix(), "user_factors");
    check(items, item_matrix(), "item_factors");
    Matrix u = std::move(user_matrix()), i = std::move(item_matrix());
    auto copy_rows = [](const std::optional<FloatArray>& a, Matrix& m) {
      if (!a) return;
      const int64_t n = std::min<int64_t>(a->shape(0), m.rows);
      std::memcpy(m.data.data(), a->data(), static_cast<size_t>(n * m.cols) * sizeof(float));
    };
    copy_rows(users, u);
    copy_rows(items, i);
    wrote();
    model_->set_factors(std::move(u), std::move(i));
  }

  /// (users, items): the rows of the two factor matrices.
  py::tuple sizes() const {
    const std::shared_lock lock(mu_);
    return py::make_tuple(model_->user_factors().rows, model_->item_factors().rows);
  }

  /// Copies of rows `ids` of the user (or item) factors (the caller checked the ids).
  py::array_t<float> rows(bool users, const Int64Array& ids) const {
    const std::shared_lock lock(mu_);
    const Matrix& m = users ? model_->user_factors() : model_->item_factors();
    const auto n = static_cast<py::ssize_t>(ids.size());
    py::array_t<float> out({n, static_cast<py::ssize_t>(m.cols)});
    for (py::ssize_t r = 0; r < n; ++r) {
      const int64_t row = ids.data()[r];
      if (row < 0 || row >= m.rows) throw InternalError("rows: row out of range", __FILE__, __LINE__);
      std::memcpy(out.mutable_data() + r * m.cols, m.row(row), m.cols * sizeof(float));
    }
    return out;
  }

  /// Exact top-k of queries · the item factors (eval::topk), masking per query row q the row q
  /// of the CSR (exclude_indptr, exclude_indices) and the sorted `global_exclude`.
  py::tuple recommend(const FloatArray& queries, int k, std::optional<Int64Array> exclude_indptr,
                      std::optional<Int32Array> exclude_indices,
                      std::optional<Int32Array> global_exclude) {
    const int64_t nq = queries.shape(0);
    data::Csr ex;
    const bool masked = exclude_indptr && exclude_indices;
    if (masked) {
      ex.rows = exclude_indptr->shape(0) - 1;
      ex.indptr.assign(exclude_indptr->data(), exclude_indptr->data() + exclude_indptr->size());
      ex.indices.assign(exclude_indices->data(),
                        exclude_indices->data() + exclude_indices->size());
      ex.data.assign(ex.indices.size(), 1.0f);
    }
    const std::vector<data::index_t> global = sorted_ids(global_exclude);
    eval::TopK r;
    {
      const Compute compute(ctx_.threads());
      const std::shared_lock lock(mu_);
      const Matrix& items = model_->item_factors();
      check_queries(queries, items);
      ex.cols = items.rows;
      const std::shared_ptr<const Derived> d = derived(1, false);
      check_searched(d->max_norm, false);
      r = eval::topk(queries.data(), nq, items.data.data(), items.rows,
                     static_cast<int>(items.cols), k, masked ? &ex : nullptr, {},
                     global_exclude ? &global : nullptr, d->max_norm);
    }
    return result(std::move(r), nq, k);
  }

  /// The k user (or item) rows of the largest cosine with each query (a row of the same width),
  /// leaving out the sorted `global_exclude`: the exact top-k over the side's unit rows.
  py::tuple similar(bool users, const FloatArray& queries, int k,
                    std::optional<Int32Array> global_exclude) {
    const int64_t nq = queries.shape(0);
    const std::vector<data::index_t> global = sorted_ids(global_exclude);
    eval::TopK r;
    {
      const Compute compute(ctx_.threads());
      const std::shared_lock lock(mu_);
      const Matrix& m = users ? model_->user_factors() : model_->item_factors();
      check_queries(queries, m);
      const int d = static_cast<int>(m.cols);
      std::vector<float> unit_queries(queries.data(), queries.data() + nq * d);
      for (int64_t q = 0; q < nq; ++q) to_unit(unit_queries.data() + q * d, d);
      const std::shared_ptr<const Derived> der = derived(side_of(users), true);
      check_searched(der->max_norm, users);
      r = eval::topk(unit_queries.data(), nq, der->unit.data(), m.rows, d, k, nullptr, {},
                     global_exclude ? &global : nullptr, der->unit_max_norm);
    }
    return result(std::move(r), nq, k);
  }

  /// Each user's (or item's) factor norm, a zero norm replaced by 1e-10 (implicit's
  /// user_norms/item_norms); a copy of the cached values.
  py::array_t<float> norms(bool users) {
    std::vector<float> n;
    {
      const Compute compute(ctx_.threads());
      const std::shared_lock lock(mu_);
      n = derived(side_of(users), true)->norms;
    }
    py::array_t<float> out(static_cast<py::ssize_t>(n.size()));
    std::memcpy(out.mutable_data(), n.data(), n.size() * sizeof(float));
    return out;
  }

  /// Factors of user rows (confidences over the items) by the model's own solve, items fixed.
  py::array_t<float> fold_in_users(const Int64Array& indptr, const Int32Array& indices,
                                   const FloatArray& values) {
    data::Csr rows = make_csr("user_items", indptr, indices, values, indptr.shape(0) - 1,
                              model_->item_factors().rows);
    Matrix m;
    {
      const Compute compute(ctx_.threads());
      const std::shared_lock lock(mu_);
      prepare(models::Model::Query::kFoldIn);
      const std::shared_lock prepared(prepared_mu_);
      m = model_->fold_in(rows);
    }
    return to_array(std::move(m));
  }

  /// Factors of item rows (confidences over the users) by the same solve with the roles of
  /// users and items exchanged: a second model of the same config holding the item factors as
  /// its users and the user factors as its items folds the rows in.
  py::array_t<float> fold_in_items(const Int64Array& indptr, const Int32Array& indices,
                                   const FloatArray& values) {
    data::Csr rows = make_csr("item_users", indptr, indices, values, indptr.shape(0) - 1,
                              model_->user_factors().rows);
    if (cfg_.settings().model.item_bias)
      fail("recalculate_item and partial_fit_items cannot fold in items of a model with "
           "item_bias: the fold-in solves for a row with the users' constant column, which would "
           "set the new item's bias to 1; refit with the new items instead");
    if (cfg_.settings().model.type == "ials" && cfg_.settings().model.unobserved_exp != 0)
      fail("partial_fit_items needs unobserved_exp 0 (per-item unobserved weights have no "
           "counterpart for users); it is {}",
           cfg_.settings().model.unobserved_exp);
    Matrix m;
    {
      const Compute compute(ctx_.threads());
      const std::shared_lock lock(mu_);
      m = swapped_model()->fold_in(rows);
    }
    return to_array(std::move(m));
  }

  /// The engine's explanation (models::Model::explain) of `items` for a user with training
  /// row (indptr, indices, values) and stored factors `user` (or none).
  py::list explain(const Int64Array& indptr, const Int32Array& indices, const FloatArray& values,
                   std::optional<FloatArray> user, const std::vector<int64_t>& items) {
    data::Csr row = make_csr("user_items", indptr, indices, values, 1,
                             model_->item_factors().rows);
    if (user && user->size() != model_->item_factors().cols)
      fail("user factors have {} values; expected {}", user->size(),
           model_->item_factors().cols);
    std::vector<models::Explanation> ex;
    {
      const Compute compute(ctx_.threads());
      const std::shared_lock lock(mu_);
      prepare(models::Model::Query::kExplain);
      const std::shared_lock prepared(prepared_mu_);
      ex = model_->explain(row, user ? user->data() : nullptr, items);
    }
    py::list out;
    for (const auto& e : ex) {
      py::list contributions;
      for (const auto& c : e.contributions)
        contributions.append(py::make_tuple(c.item, c.contribution, c.value, c.confidence));
      py::dict d;
      d["method"] = e.method;
      d["score"] = e.score;
      d["model_score"] = e.model_score;
      d["tolerance"] = e.tolerance;
      d["condition_bound"] = e.condition_bound;
      d["contributions"] = contributions;
      if (!e.cholesky.empty()) {
        const auto k = static_cast<py::ssize_t>(model_->item_factors().cols);
        py::array_t<double> l({k, k});
        std::memcpy(l.mutable_data(), e.cholesky.data(), e.cholesky.size() * sizeof(double));
        d["cholesky"] = l;
      } else {
        d["cholesky"] = py::none();
      }
      out.append(d);
    }
    return out;
  }

  /// Rows `rows` of the user (or item) factors set to `values` (one row each), the matrix first
  /// grown (new rows zero) to hold the largest row: one call, so that neither a Ctrl-C nor
  /// another thread can come between the growth and the rows (a partial fit).
  void set_rows(bool users, const Int64Array& rows, const FloatArray& values) {
    const std::unique_lock lock(mu_);
    int64_t top = 0;
    for (py::ssize_t r = 0; r < rows.size(); ++r) top = std::max(top, rows.data()[r] + 1);
    // Only that side's rows change, unless the model is given new matrices (grown, or on a
    // GPU), which drops its prepared state for both sides.
    const int64_t had = users ? model_->user_factors().rows : model_->item_factors().rows;
    if (top > had || on_gpu()) wrote();
    else wrote(users, !users);
    grow_locked(users ? top : 0, users ? 0 : top);
    if (on_gpu()) {  // on copies, handed to the GPU by set_factors
      Matrix u = model_->user_factors(), i = model_->item_factors();
      set_rows_of(users ? u : i, rows, values);
      model_->set_factors(std::move(u), std::move(i));
      return;
    }
    set_rows_of(users ? user_matrix() : item_matrix(), rows, values);
  }

 private:
  /// The rows of both matrices grown to (n_users, n_items), new rows zero; only grows. The
  /// caller holds the lock.
  void grow_locked(int64_t n_users, int64_t n_items) {
    const Matrix& u = model_->user_factors();
    const Matrix& i = model_->item_factors();
    if (n_users <= u.rows && n_items <= i.rows) return;
    auto grown = [](const Matrix& m, int64_t rows) {
      Matrix g;
      g.rows = std::max(rows, m.rows);
      g.cols = m.cols;
      g.data.assign(static_cast<size_t>(g.rows * g.cols), 0.0f);
      std::memcpy(g.data.data(), m.data.data(), m.data.size() * sizeof(float));
      return g;
    };
    Matrix gu = grown(u, n_users), gi = grown(i, n_items);
    retire(users_slot_, user_matrix());
    retire(items_slot_, item_matrix());
    model_->set_factors(std::move(gu), std::move(gi));
  }


  static void set_rows_of(Matrix& m, const Int64Array& rows, const FloatArray& values) {
    if (values.ndim() != 2 || values.shape(0) != rows.size() || values.shape(1) != m.cols)
      throw InternalError("set_rows: shape mismatch", __FILE__, __LINE__);
    for (py::ssize_t r = 0; r < rows.size(); ++r) {
      const int64_t row = rows.data()[r];
      if (row < 0 || row >= m.rows) throw InternalError("set_rows: row out of range", __FILE__, __LINE__);
      std::memcpy(m.row(row), values.data() + r * m.cols, m.cols * sizeof(float));
    }
  }

  static py::array_t<float> read_only_copy(const Matrix& m) {
    Matrix c = m;
    py::array_t<float> a = to_array(std::move(c));
    py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
    return a;
  }

  /// Counts a write of the user and/or item factors (the caller holds the lock exclusively):
  /// what was derived from them is stale. A partial fit of existing users writes the users only,
  /// so the items' Gram matrix of the next fold-in stays.
  void wrote(bool users = true, bool items = true) {
    // The caller holds mu_ exclusively, so no query is computing a cache; the locks order these
    // writes before the next query's reads.
    const std::scoped_lock guard(derived_mu_, swapped_mu_);
    for (int s = 0; s < 2; ++s) {
      if (s == 0 ? !users : !items) continue;
      ++writes_[s];
      derived_[s].reset();
    }
    swapped_.reset();
  }

  /// What queries derive from side `s`'s rows (with unit rows when `unit`), from the cache when
  /// the rows cannot have changed since it was computed, else computed now (and kept when no
  /// writable view is alive). The caller holds the lock (shared or exclusive).
  std::shared_ptr<const Derived> derived(int s, bool unit) {
    const Matrix& m = s == 0 ? model_->user_factors() : model_->item_factors();
    const std::lock_guard guard(derived_mu_);
    const uint64_t views = views_[s].load();
    std::shared_ptr<const Derived>& kept = derived_[s];
    if (kept && kept->stamp.holds(writes_[s], views) && (kept->has_unit || !unit)) return kept;
    ++derived_computations_;
    auto d = std::make_shared<Derived>();
    d->stamp = {writes_[s], views, no_view(s == 0, s == 1)};
    d->max_norm = eval::max_row_norm(m.data.data(), m.rows, static_cast<int>(m.cols));
    if (unit) {
      const int64_t n = m.rows;
      const auto w = static_cast<size_t>(m.cols);
      d->norms.resize(static_cast<size_t>(n));
      d->unit.assign(m.data.data(), m.data.data() + m.data.size());
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < n; ++r)
        d->norms[static_cast<size_t>(r)] = to_unit(d->unit.data() + r * w, static_cast<int>(w));
      d->unit_max_norm = eval::max_row_norm(d->unit.data(), n, static_cast<int>(w));
      d->has_unit = true;
    }
    if (d->stamp.kept) kept = d;
    else kept.reset();
    return d;
  }

  /// Makes the model's prepared state for `which` (models::Model::prepare_queries: iALS's
  /// weighted Gram matrix of the items for fold-in, its double counterpart for explain) current:
  /// kept while the item rows cannot have changed since it was computed (the rule of derived()),
  /// else computed again from the rows as they are now. The model drops it itself on each of
  /// its own changes, all of which the engine counts as writes; a write through a view it cannot
  /// see, hence this. Results are the same to the bit either way. The caller holds mu_ (shared
  /// or exclusive), and then prepared_mu_ shared while the query reads the state.
  void prepare(models::Model::Query which) {
    const std::lock_guard guard(prepare_mu_);
    Stamp& p = prepared_[which == models::Model::Query::kFoldIn ? 0 : 1];
    const uint64_t views = views_[1].load();
    if (p.holds(writes_[1], views)) return;
    const std::unique_lock replacing(prepared_mu_);  // no query reads the state meanwhile
    model_->prepare_queries(which);
    ++derived_computations_;
    p = {writes_[1], views, no_view(false, true)};
  }

  /// A model of the same config holding the item factors as its users and the user factors as
  /// its items (fold_in_items solves with it), prepared for fold-in: kept while neither side can
  /// have changed (the rule of derived(), on both sides), so that recalculate_item does not
  /// compute the users' Gram matrix again; while kept it holds a copy of both matrices. The
  /// caller holds mu_.
  std::shared_ptr<const models::Model> swapped_model() {
    const std::lock_guard guard(swapped_mu_);
    const uint64_t views = views_[0].load() + views_[1].load();  // each only grows
    const uint64_t writes = writes_[0] + writes_[1];  // each only grows
    if (swapped_ && swapped_stamp_.holds(writes, views)) return swapped_;
    std::shared_ptr<models::Model> s = pipeline::make_model(cfg_, ctx_);
    s->set_factors(model_->item_factors(), model_->user_factors());
    s->prepare_queries(models::Model::Query::kFoldIn);
    ++derived_computations_;
    swapped_stamp_ = {writes, views, no_view(true, true)};
    if (swapped_stamp_.kept) swapped_ = s;
    else swapped_.reset();
    return s;
  }

  /// Whether no writable view of the user (`users`) and/or item (`items`) rows is alive: the
  /// engine's reference to a side's slot is then the only one. A view handed out since a value
  /// was derived could have written the rows; one alive now could write them at any time, so
  /// nothing computed while one is alive is kept.
  bool no_view(bool users, bool items) const {
    return (!users || users_slot_.use_count() == 1) && (!items || items_slot_.use_count() == 1);
  }

  /// Divides the d floats at `row` by their Euclidean norm (summed in double; a zero norm is
  /// replaced by 1e-10, as implicit does) and returns that norm.
  static float to_unit(float* row, int d) {
    double ss = 0;
    for (int c = 0; c < d; ++c) ss += static_cast<double>(row[c]) * row[c];
    double norm = std::sqrt(ss);
    if (norm == 0) norm = 1e-10;
    for (int c = 0; c < d; ++c) row[c] = static_cast<float>(row[c] / norm);
    return static_cast<float>(norm);
  }

  static void check_queries(const FloatArray& queries, const Matrix& m) {
    if (queries.ndim() != 2 || queries.shape(1) != m.cols)
      throw InternalError("queries must be 2-D with the factors' columns", __FILE__, __LINE__);
    // Factors written through the NumPy views are not checked when written: a NaN ranked every
    // item -inf and returned the first ids as if they were a list.
    const float* q = queries.data();
    const int64_t n = queries.shape(0) * queries.shape(1);
    for (int64_t e = 0; e < n; ++e)
      if (!std::isfinite(q[e]))
        fail("the factors of query {} of this call hold {} (column {}); expected finite factors "
             "(a NaN or an infinity was written into user_factors or item_factors)",
             e / queries.shape(1), q[e], e % queries.shape(1));
  }

  /// The largest row norm of the rows searched, NaN or infinite when a row is not finite.
  static void check_searched(double max_norm, bool users) {
    if (!std::isfinite(max_norm))
      fail("{} hold a NaN or an infinity; expected finite factors (written into the array, or "
           "assigned)",
           users ? "user_factors" : "item_factors");
  }

  static std::vector<data::index_t> sorted_ids(const std::optional<Int32Array>& a) {
    if (!a) return {};
    return {a->data(), a->data() + a->size()};
  }

  static py::tuple result(eval::TopK&& r, int64_t nq, int k) {
    py::array_t<int32_t> ids({nq, static_cast<int64_t>(k)});
    py::array_t<float> scores({nq, static_cast<int64_t>(k)});
    std::memcpy(ids.mutable_data(), r.items.data(), r.items.size() * sizeof(int32_t));
    std::memcpy(scores.mutable_data(), r.scores.data(), r.scores.size() * sizeof(float));
    return py::make_tuple(ids, scores);
  }

  // The model's matrices, writable: they are members of the (non-const) model, which updates
  // them in place; the views and set_factors/set_rows write them directly.
  Matrix& user_matrix() { return const_cast<Matrix&>(model_->user_factors()); }
  Matrix& item_matrix() { return const_cast<Matrix&>(model_->item_factors()); }

  static py::array_t<float> view(std::shared_ptr<Slot>& slot, const Matrix& m, py::object self) {
    (void)self;
    auto* keep = new std::shared_ptr<Slot>(slot);
    py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<Slot>*>(p); });
    // The engine must outlive the views of its current storage: the capsule keeps the slot,
    // and the engine retires the storage into the slot before it replaces or frees it.
    return matrix_view(m, owner, true);
  }

  /// Moves `m`'s buffer into `slot` when views of it exist, and starts a new generation.
  static void retire(std::shared_ptr<Slot>& slot, Matrix& m) {
    if (slot.use_count() > 1) slot->retired = std::move(m.data).take();
    slot = std::make_shared<Slot>();
  }

  config::Config cfg_;
  Context ctx_;
  std::unique_ptr<models::Model> model_;
  data::Csr user_items_, item_users_;
  int iterations_done_ = 0;
  bool partial_ = false;
  mutable std::shared_mutex mu_;  // see "Threads" at the top
  std::shared_ptr<Slot> users_slot_ = std::make_shared<Slot>();
  std::shared_ptr<Slot> items_slot_ = std::make_shared<Slot>();
  // Query caches (see the top), per side: engine writes (under mu_ exclusively), writable
  // views handed out (under mu_ shared, hence atomic), and the derived values.
  uint64_t writes_[2] = {0, 0};
  std::atomic<uint64_t> views_[2] = {0, 0};
  // Each kind of cache has its own mutex, so that a query that needs one (a recommend: the
  // items' largest norm) does not wait while another thread computes another (a fold-in's Gram
  // matrix: tens of GFLOP at 1024 factors). A write (mu_ exclusive) takes them all.
  std::mutex derived_mu_;
  std::shared_ptr<const Derived> derived_[2];  // under derived_mu_
  std::atomic<uint64_t> derived_computations_{0};  // every cache counts here
  // The stamps of the model's prepared fold-in [0] and explain [1] state (prepare()), under
  // prepare_mu_; prepared_mu_ is held exclusively while the model replaces that state, shared
  // while a query reads it.
  std::mutex prepare_mu_;
  Stamp prepared_[2];
  std::shared_mutex prepared_mu_;
  std::mutex swapped_mu_;
  std::shared_ptr<const models::Model> swapped_;  // swapped_model(), under swapped_mu_
  Stamp swapped_stamp_;                           // under swapped_mu_
};

}  // namespace

void bind_models(py::module_& m) {
  py::class_<Engine>(m, "_Engine", "An engine model (use recforge.AlternatingLeastSquares, ...).")
      .def(py::init<const std::string&, const std::string&>(), py::arg("yaml"), py::arg("name"))
      .def("describe", &Engine::describe)
      .def_property_readonly("type", &Engine::type)
      .def_property_readonly("iterations", &Engine::iterations)
      .def_property_readonly("device", &Engine::device)
      .def_property_readonly("threads", &Engine::threads)
      .def_property_readonly("initialized", &Engine::initialized)
      .def("set_data", &Engine::set_data)
      .def("drop_data", &Engine::drop_data)
      .def("init", &Engine::init)
      .def("iterate", &Engine::iterate)
      .def_property_readonly("iterations_done", &Engine::iterations_done)
      .def_property_readonly("partial", &Engine::partial)
      .def("loss", &Engine::loss)
      .def("user_view", [](Engine& e, py::object self) { return e.user_view(self); })
      .def("item_view", [](Engine& e, py::object self) { return e.item_view(self); })
      .def("user_address", &Engine::user_address)
      .def("item_address", &Engine::item_address)
      .def("set_factors", &Engine::set_factors)
      .def("start_from", &Engine::start_from, py::arg("users"), py::arg("items"))
      .def("sizes", &Engine::sizes)
      .def("rows", &Engine::rows, py::arg("users"), py::arg("ids"))
      .def("recommend", &Engine::recommend, py::arg("queries"), py::arg("k"),
           py::arg("exclude_indptr") = py::none(), py::arg("exclude_indices") = py::none(),
           py::arg("global_exclude") = py::none())
      .def("similar", &Engine::similar, py::arg("users"), py::arg("queries"), py::arg("k"),
           py::arg("global_exclude") = py::none())
      .def("norms", &Engine::norms, py::arg("users"))
      .def("derived_computations", &Engine::derived_computations)
      .def("fold_in_users", &Engine::fold_in_users)
      .def("fold_in_items", &Engine::fold_in_items)
      .def("explain", &Engine::explain)
      .def("set_rows", &Engine::set_rows);
}

}  // namespace recforge::python
