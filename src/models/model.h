#pragma once
/// @file model.h
/// The interface every model implements, whatever the device: initialise, run iterations
/// (iALS half-iteration pairs, or epochs for batch models), report the objective, expose the
/// factors, and fold in rows that were not trained on.

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/error.h"
#include "core/npy.h"
#include "data/csr.h"

namespace recforge::backend::cuda {
class CudaResources;  // backend/cuda/cuda_resources.h (CUDA builds only)
}  // namespace recforge::backend::cuda

namespace recforge::models {

/// What a model needs besides its factors to continue training exactly where it stopped
/// (pipeline/checkpoint.h): optimiser moments, step counters, the last loss.
struct TrainingState {
  nlohmann::json values = nlohmann::json::object();  ///< small values, by name
  std::map<std::string, Matrix> arrays;              ///< arrays (optimiser moments), by name
};

/// One training item's part in an explanation.
struct Contribution {
  int64_t item = 0;         ///< the training item's row
  double value = 0;         ///< its value in the training matrix (the confidence of weighting)
  double confidence = 0;    ///< its weight in the model's solve (iALS: model.alpha × value)
  double contribution = 0;  ///< exact: its term of the score; item_similarity: the cosine
};

/// Why a model scores item i for a user (Model::explain).
struct Explanation {
  /// "exact_decomposition" (the contributions sum to `score`) or "item_similarity" (the cosine
  /// of each training item's factors to item i's; they do not sum to any score).
  std::string method;
  double score = 0;        ///< exact: y_iᵀA⁻¹b of the exact user solve; else the model score
  double model_score = 0;  ///< y_i · x_u with the stored user factors
  /// exact only: a bound on |Σ contributions − score| from the rounding of the double sums.
  double tolerance = 0;
  /// exact only: an upper bound on the condition number of the user's system A,
  /// trace(A) / λ_u (A − λ_u I is positive semidefinite), for bounding float solves against it.
  double condition_bound = 0;
  std::vector<Contribution> contributions;  ///< one per training item, largest first
  /// exact only: the Cholesky factor L of the user's system A = L Lᵀ (k × k, row-major, zero
  /// above the diagonal), in double; empty for a user without training items.
  std::vector<double> cholesky;
};

/// An embedding model: score(u, i) = user_factors[u] · item_factors[i].
class Model {
 public:
  virtual ~Model() = default;
  /// "ials", ...
  virtual std::string type() const = 0;
  /// Number of iterations the config asks for.
  virtual int iterations() const = 0;
  /// Random initial factors for n_users × n_items.
  virtual void init(int64_t n_users, int64_t n_items) = 0;
  /// One training iteration on user×item confidences and their transpose.
  virtual void iterate(const data::Csr& user_items, const data::Csr& item_users) = 0;
  /// The training objective at the current factors.
  virtual double loss(const data::Csr& user_items, const data::Csr& item_users) const = 0;
  /// User factors (n_users × factors).
  virtual const Matrix& user_factors() const = 0;
  /// Item factors (n_items × factors).
  virtual const Matrix& item_factors() const = 0;
  /// Replaces both factor matrices (restoring a checkpoint or loading a run).
  virtual void set_factors(Matrix users, Matrix items) = 0;
  /// The training interactions per item, for a model restored by set_factors without training
  /// (a reopened run, an export's fold-in model) whose solve depends on them: iALS with
  /// `model.unobserved_exp` != 0 weighs each item's unobserved term by its popularity. Others
  /// ignore it.
  virtual void set_item_counts(const std::vector<int64_t>& counts) { (void)counts; }
  /// Factors for rows of interactions (confidences) not seen in training, computed by the same
  /// solve as training (fold_in_rows). Throws recforge::Error when the solve broke down for a
  /// row: non-finite factors, or all zero from positive confidences (huge confidences overflow
  /// inside the solves, which then returned zeros: a served new user got arbitrary items).
  Matrix fold_in(const data::Csr& rows) const;
  /// The queries prepare_queries can prepare.
  enum class Query { kFoldIn, kExplain };
  /// For a model whose factors will not change again (an export being served, a run being
  /// queried): precomputes what every fold_in (or explain) would otherwise recompute from all
  /// item factors (iALS: its weighted Gram matrix, items × k² work per call, the bulk of a
  /// one-user fold-in; in double for explain). Their results stay the same to the bit. Any
  /// later change of the model (init, iterate, set_factors, set_item_counts, resume) drops what
  /// was precomputed. Not thread-safe with queries of that kind: call it before they start
  /// (recommend::Recommender calls it once per kind, under std::call_once). Models with nothing
  /// to precompute ignore it.
  virtual void prepare_queries(Query which) { (void)which; }

 protected:
  /// The model's own fold-in solve, behind fold_in's check.
  virtual Matrix fold_in_rows(const data::Csr& rows) const = 0;

 public:
  /// Why each of `items` scores as it does for a user with training row `row` (a 1-row CSR of
  /// confidences over the items, as in training) and stored factors `user` (k floats, or
  /// nullptr: model score 0), one Explanation per item. The default, for models without an
  /// exact decomposition (bpr, softmax): the training items ranked by the cosine of their item
  /// factors to the item's. iALS overrides it with the exact decomposition of its user solve.
  virtual std::vector<Explanation> explain(const data::Csr& row, const float* user,
                                           const std::vector<int64_t>& items) const;
  /// Hyperparameters as JSON (for run.json and manifests).
  virtual nlohmann::json describe() const = 0;
  /// Whether training_state() and resume() are implemented, so that train.checkpoint_every can
  /// checkpoint this model.
  virtual bool can_checkpoint() const { return false; }
  /// What, besides the factors, training after `iterations done` depends on (a model that
  /// cannot checkpoint returns nothing).
  virtual TrainingState training_state() const { return {}; }
  /// Continues from a checkpoint instead of init(): the factors and training state after
  /// `iterations_done` iterations, as training_state() and the factor accessors gave them.
  /// The next iterate() then computes what it would have computed then. A state that does not
  /// fit the model's settings (a damaged checkpoint) throws recforge::Error naming its part.
  /// Models that cannot checkpoint throw InternalError.
  virtual void resume(Matrix users, Matrix items, int iterations_done, TrainingState state) {
    (void)users, (void)items, (void)iterations_done, (void)state;
    throw InternalError(type() + " models cannot resume from a checkpoint", __FILE__, __LINE__);
  }
  /// The GPU the model computes on, or nullptr for a CPU model. Evaluation (exact top-k and the
  /// metrics) runs where the model does.
  virtual std::shared_ptr<backend::cuda::CudaResources> cuda() const { return nullptr; }
};

struct ModelOptions;  // models/ials.h

/// Builds the model `options` describe on the Context's device (nullptr for no model). Throws
/// recforge::Error when the chosen device has no implementation of it. pipeline/options.h
/// makes the options from a config.
std::unique_ptr<Model> make_model(const ModelOptions& options, const Context& ctx);

/// Whether every value of `m` is finite (no NaN, no infinity); the models' check after each
/// iteration or epoch.
bool all_finite(const Matrix& m);

}  // namespace recforge::models
