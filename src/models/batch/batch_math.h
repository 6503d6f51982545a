#pragma once
/// @file batch_math.h
/// The math shared by the CPU and CUDA paths of the batch-trained models (BPR, sampled softmax,
/// the cosine contrastive loss):
/// the options both devices read, stable sigmoid terms, and one optimiser step on one weight.
/// Plain C++ that nvcc compiles for the device too (`RF_HD`); no CUDA types.

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define RF_HD __host__ __device__ __forceinline__
#else
#define RF_HD inline
#endif

namespace recforge::backend {

/// The optimiser of the batch models (`model.optimizer`). Adagrad and Adam keep per-weight
/// state and update it only for rows a batch touches ("lazy" sparse updates), so rows a batch
/// does not touch cost nothing.
enum class Optimizer : int { kSgd = 0, kAdagrad = 1, kAdam = 2 };

/// Which loss a batch model trains (`model.type`).
enum class BatchLoss : int { kBpr = 0, kSoftmax = 1, kCcl = 2 };

/// Hyperparameters of one batch-model training run, read by both devices. A run sets every field
/// from its config (pipeline::batch_options); the defaults users see, per `model.type`, are the
/// config's (config/sections.cpp, docs/models.md "Defaults per model"). The initialisers below
/// only serve code that builds a BatchParams by hand (the model tests), and differ from them.
struct BatchParams {
  BatchLoss loss = BatchLoss::kBpr;
  int factors = 64;                 ///< trained columns (item_bias adds one more, see below)
  bool item_bias = false;           ///< an item bias as the last column; users hold 1 there
  int64_t batch_size = 1024;        ///< samples per step (softmax: positives per step)
  double learning_rate = 0.01;      ///< step size of the first epoch
  double lr_decay = 1.0;            ///< learning rate of epoch e is learning_rate * lr_decay^(e-1)
  double regularization = 0.0;      ///< L2 strength on every row a sample touches
  Optimizer optimizer = Optimizer::kAdam;
  double beta1 = 0.9;               ///< Adam's first-moment decay
  double beta2 = 0.999;             ///< Adam's second-moment decay
  double epsilon = 1e-8;            ///< Adagrad/Adam denominator offset
  int negatives = 1;                ///< BPR: negatives per positive; softmax: shared per batch
  double negative_exp = 0.0;        ///< negatives ~ (item popularity)^negative_exp; 0: uniform
  bool reject_seen = false;         ///< BPR: redraw negatives the user has interacted with
  int hard_negatives = 1;           ///< BPR: draw this many, train on the highest-scored (DNS)
  double temperature = 1.0;         ///< softmax: logits are scores / temperature
  bool in_batch = true;             ///< softmax: the batch's other positives are negatives too
  bool logq = true;                 ///< softmax: subtract log of each candidate's expected count
  bool normalize = false;           ///< softmax: rows kept at unit norm, so scores are cosines
                                    ///< (ccl: always)
  double margin = 0.9;              ///< ccl: negatives count only above this cosine
  double negative_weight = 150.0;   ///< ccl: weight of the mean negative term
  double history_weight = 0.0;      ///< ccl: weight h of the user's aggregated history in the
                                    ///< user vector (SimpleX's 1 − g); 0: the user's own row
  double dropout = 0.0;             ///< ccl: probability of zeroing each coordinate of a scored
                                    ///< user vector in training (the rest scaled by 1/(1 − p))
  int fold_in_steps = 50;           ///< optimiser steps of fold_in (new rows, items fixed)

  /// Columns of the stored factor matrices: factors, plus one for the item bias.
  int dim() const { return factors + (item_bias ? 1 : 0); }
};

/// Per-step constants of the optimiser: the learning rate and Adam's bias corrections at step t.
struct OptimizerStep {
  int kind = 0;            ///< Optimizer as int (usable in device code)
  float lr = 0.01f;        ///< learning rate of this step
  float beta1 = 0.9f;      ///< Adam β1
  float beta2 = 0.999f;    ///< Adam β2
  float eps = 1e-8f;       ///< denominator offset
  float correction1 = 1;   ///< 1 / (1 - β1^t)
  float correction2 = 1;   ///< 1 / (1 - β2^t)
};

/// The constants of step t (1-based) at learning rate lr.
inline OptimizerStep optimizer_step(const BatchParams& p, double lr, int64_t t) {
  OptimizerStep s;
  s.kind = static_cast<int>(p.optimizer);
  s.lr = static_cast<float>(lr);
  s.beta1 = static_cast<float>(p.beta1);
  s.beta2 = static_cast<float>(p.beta2);
  s.eps = static_cast<float>(p.epsilon);
  if (p.optimizer == Optimizer::kAdam) {
    s.correction1 = static_cast<float>(1.0 / (1.0 - std::pow(p.beta1, static_cast<double>(t))));
    s.correction2 = static_cast<float>(1.0 / (1.0 - std::pow(p.beta2, static_cast<double>(t))));
  }
  return s;
}

/// Applies gradient g to weight w with the optimiser `Kind` (an Optimizer as int), fixed at
/// compile time so that the CPU's row loops vectorise. m and v point at the weight's optimiser
/// state (Adagrad: *v is the sum of squared gradients; Adam: *m, *v the moments); SGD reads
/// neither, Adagrad only v, so those may be null.
template <int Kind>
RF_HD void optimizer_update_as(float& w, float g, float* m, float* v, const OptimizerStep& s) {
  if constexpr (Kind == 0) {
    w -= s.lr * g;
  } else if constexpr (Kind == 1) {
    *v += g * g;
    w -= s.lr * g / (sqrtf(*v) + s.eps);
  } else {
    *m = s.beta1 * *m + (1.f - s.beta1) * g;
    *v = s.beta2 * *v + (1.f - s.beta2) * g * g;
    w -= s.lr * (*m * s.correction1) / (sqrtf(*v * s.correction2) + s.eps);
  }
}

/// optimizer_update_as with the kind read at run time (`s.kind`).
RF_HD void optimizer_update(float& w, float g, float& m, float& v, const OptimizerStep& s) {
  if (s.kind == 0) {
    optimizer_update_as<0>(w, g, &m, &v, s);
  } else if (s.kind == 1) {
    optimizer_update_as<1>(w, g, &m, &v, s);
  } else {
    optimizer_update_as<2>(w, g, &m, &v, s);
  }
}

/// σ(x), without overflow for large |x|.
RF_HD float sigmoid(float x) {
  if (x >= 0) return 1.f / (1.f + expf(-x));
  const float e = expf(x);
  return e / (1.f + e);
}

/// −log σ(x) = log(1 + e^(−x)), stable for large |x|.
RF_HD float neg_log_sigmoid(float x) {
  return x >= 0 ? log1pf(expf(-x)) : -x + log1pf(expf(x));
}

}  // namespace recforge::backend
