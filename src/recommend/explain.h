#pragma once
/// @file explain.h
/// Why a model recommends an item to a user (`recforge explain`), and what a run or an export
/// holds about one user (`recforge report-user`), over an opened Recommender.
///
/// iALS explanations are exact: the user's solve is A x_u = b (models/ials/ials_cpu.h,
/// explain_user), so score(u, i) = y_iᵀA⁻¹b = Σ_j t_j y_iᵀA⁻¹y_j over the user's training items
/// j, and the contributions sum to that score (computed in double; the stored model's score,
/// from CG training, differs slightly). bpr and softmax have no such decomposition: their
/// explanations rank the training items by the cosine of their item factors to the item's, and
/// these values do not sum to the score.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "recommend/recommend.h"

namespace recforge::recommend {

/// One training item's part of an explanation.
struct ExplainedItem {
  std::string item;          ///< its id
  double value = 0;          ///< its value in the training matrix (after weighting)
  double confidence = 0;     ///< its weight in the solve (iALS: model.alpha × value)
  double contribution = 0;   ///< exact: its term of the score; item_similarity: the cosine
};

/// The explanation of one (user, item) score.
struct ItemExplanation {
  std::string user, item;
  std::string method;       ///< "exact_decomposition" or "item_similarity"
  bool sums_to_score = false;  ///< whether the contributions sum to `score` (exact only)
  double score = 0;         ///< exact: the score of the exact user solve; else the model score
  double model_score = 0;   ///< the stored (exported) user factors · item factors
  double tolerance = 0;     ///< exact: bound on |Σ contributions − score| (double rounding)
  double condition_bound = 0;  ///< exact: trace(A) / λ_u ≥ the condition number of A
  std::vector<ExplainedItem> contributions;  ///< every training item of the user, largest first
};

/// Explains `items` for `user` on a run directory or an export that has the model's
/// hyperparameters ("fold_in") and the training confidences (seen_data.npy). Throws
/// recforge::Error with one sentence for an unknown user or item, or an export that lacks
/// what is needed ("export the run again").
std::vector<ItemExplanation> explain(const Recommender& r, const std::string& user,
                                     const std::vector<std::string>& items);

/// As JSON: user, item, method, sums_to_score, score, model_score, tolerance and
/// condition_bound (exact only),
/// the number of training items and the `top` largest contributions (all when top < 0), each
/// with item, value, confidence, contribution and share (contribution / score, exact only).
nlohmann::ordered_json to_json(const ItemExplanation& e, int top);

/// The data-access report of one user: training interactions (with raw weights and
/// timestamps for runs), validation/test presence (runs), the embedding's norm, whether an
/// export holds it, and the top-k recommendations each with its 3 largest contributions. An
/// unknown user throws recforge::Error with one sentence.
nlohmann::ordered_json report_user(const Recommender& r, const std::string& user, int k);

}  // namespace recforge::recommend
