#include "pipeline/options.h"

#include <cmath>

#include "core/error.h"

namespace recforge::pipeline {
namespace {

// `model.dtype` and `train.gpu_streaming` were validated against their declared enum names.
backend::cuda::Storage storage(const std::string& name) {
  return name == "float16"    ? backend::cuda::Storage::kFloat16
         : name == "bfloat16" ? backend::cuda::Storage::kBFloat16
                              : backend::cuda::Storage::kFloat32;
}

backend::cuda::Streaming streaming(const std::string& name) {
  return name == "on"    ? backend::cuda::Streaming::kOn
         : name == "off" ? backend::cuda::Streaming::kOff
                         : backend::cuda::Streaming::kAuto;
}

uint64_t model_seed(const config::Settings& s) {
  return static_cast<uint64_t>(s.model.seed ? *s.model.seed : s.run.seed);
}

}  // namespace

models::IalsOptions ials_options(const config::Settings& s) {
  models::IalsOptions o;
  o.factors = static_cast<int>(s.model.factors);
  o.iterations = static_cast<int>(s.model.iterations);
  o.init_std = s.model.init_std;
  o.unobserved_exp = s.model.unobserved_exp;
  o.observed_weight = s.model.observed_weight;
  o.seed = model_seed(s);
  auto& p = o.solve;
  p.regularization = s.model.regularization;
  p.reg_exp = s.model.reg_exp;
  p.reg_offset = s.model.reg_offset;
  p.unobserved_weight = s.model.unobserved_weight;
  p.observed_offset = s.model.observed_weight == "replaced" ? s.model.unobserved_weight : 0.0;
  p.alpha = s.model.alpha;
  p.cholesky = s.model.solver == "cholesky";
  p.cg_steps = static_cast<int>(s.model.cg_steps);
  o.dtype = storage(s.model.dtype);
  o.streaming = streaming(s.train.gpu_streaming);
  return o;
}

models::BatchOptions batch_options(const config::Settings& s) {
  using backend::BatchLoss;
  using backend::Optimizer;
  models::BatchOptions o;
  auto& p = o.params;
  p.loss = s.model.type == "bpr"   ? BatchLoss::kBpr
           : s.model.type == "ccl" ? BatchLoss::kCcl
                                   : BatchLoss::kSoftmax;
  p.factors = static_cast<int>(s.model.factors);
  p.item_bias = s.model.item_bias;
  p.batch_size = s.model.batch_size;
  p.learning_rate = s.model.learning_rate;
  p.lr_decay = s.model.lr_decay;
  p.regularization = s.model.regularization;
  const std::string& opt = s.model.optimizer;
  p.optimizer = opt == "sgd"       ? Optimizer::kSgd
                : opt == "adagrad" ? Optimizer::kAdagrad
                                   : Optimizer::kAdam;
  p.negatives = static_cast<int>(s.model.negatives);
  p.negative_exp = s.model.negative_exp;
  p.reject_seen = s.model.reject_seen;
  p.hard_negatives = static_cast<int>(s.model.hard_negatives);
  p.temperature = s.model.temperature;
  p.in_batch = s.model.in_batch;
  p.logq = s.model.logq;
  p.normalize = s.model.normalize || p.loss == BatchLoss::kCcl;  // ccl: always cosines
  p.margin = s.model.margin;
  p.negative_weight = s.model.negative_weight;
  p.history_weight = s.model.history_weight;
  p.dropout = s.model.dropout;
  o.epochs = static_cast<int>(s.model.iterations);
  o.init_std = s.model.init_std;
  o.seed = model_seed(s);
  return o;
}

models::ModelOptions model_options(const config::Settings& s) {
  using Family = models::ModelOptions::Family;
  models::ModelOptions o;
  const std::string& type = s.model.type;
  if (type == "none") {
    o.family = Family::kNone;
  } else if (type == "bpr" || type == "softmax" || type == "ccl") {
    o.family = Family::kBatch;
    o.batch = batch_options(s);
  } else {
    o.family = Family::kIals;
    o.ials = ials_options(s);
  }
  return o;
}

std::unique_ptr<models::Model> make_model(const config::Config& cfg, const Context& ctx) {
  const models::ModelOptions o = model_options(cfg.settings());
  config::check_model_device(cfg, ctx.device().kind == Device::Kind::kCpu ? "cpu" : "cuda");
  return models::make_model(o, ctx);
}

index::Options index_options(const config::Settings& s) {
  index::Options o;
  o.type = index::parse_type(s.index.type, "index.type");
  o.metric = index::parse_metric(s.index.metric, "index.metric");
  o.device = index::parse_index_device(s.index.device, "index.device");
  o.nlist = s.index.nlist;
  o.nprobe = s.index.nprobe;
  o.pq_m = s.index.pq_m;
  o.pq_nbits = s.index.pq_nbits;
  o.hnsw_m = s.index.hnsw_m;
  o.ef_construction = s.index.ef_construction;
  o.ef_search = s.index.ef_search;
  o.train_sample = s.index.train_sample;
  o.seed = static_cast<uint64_t>(s.index.seed ? *s.index.seed : s.run.seed);
  return o;
}

std::string training_device(const config::Settings& s) {
  if (s.train.device == "auto" && s.model.type == "ials" && s.model.observed_weight == "replaced")
    return "cpu";
  return s.train.device;
}

int embedding_dimension(const config::Settings& s) {
  const std::string& type = s.model.type;
  const int k = static_cast<int>(s.model.factors);
  return (type == "bpr" || type == "softmax") && s.model.item_bias ? k + 1 : k;
}

std::string nonfinite_loss_cause(const config::Settings& s, const data::Csr& user_items) {
  float largest = 0;
  for (const float c : user_items.data)
    if (!(std::fabs(c) <= largest)) largest = std::fabs(c);  // NaN and inf win
  const std::string& type = s.model.type;  // (prepare_dataset refused infinite confidences)
  if (type == "ials")
    return fmt::format(
        "the largest interaction confidence is {:.3g} and model.alpha {}; lower them, or "
        "model.init_std ({}), or raise model.regularization",
        largest, s.model.alpha, s.model.init_std);
  if (type == "softmax")
    return fmt::format(
        "scores divided by model.temperature {} overflow float32; raise model.temperature or "
        "lower model.learning_rate ({}) or model.init_std ({})",
        s.model.temperature, s.model.learning_rate, s.model.init_std);
  return fmt::format(
      "the factors diverged; lower model.learning_rate ({}) or model.init_std "
      "({}), or raise model.regularization",
      s.model.learning_rate, s.model.init_std);
}

}  // namespace recforge::pipeline
