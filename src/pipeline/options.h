#pragma once
/// @file options.h
/// From typed config sections (config::Settings) to the option structs that the models and the
/// index take, so that they never see the config: follow a parameter from its declaration in
/// config/sections.cpp (e.g. "model.factors") to here (`s.model.factors`) and on to the solver
/// (models::IalsOptions::factors). Combinations of values were checked by config::check when
/// the config was made; what is checked here needs run-time facts (the device).

#include <memory>
#include <string>

#include "config/config.h"
#include "core/context.h"
#include "data/csr.h"
#include "index/index.h"
#include "models/batch/batch.h"
#include "models/ials/ials.h"
#include "models/model.h"

namespace recforge::pipeline {

/// iALS options from the `model` section (model.seed falls back to run.seed) and
/// train.gpu_streaming.
models::IalsOptions ials_options(const config::Settings& s);

/// Batch-model (bpr, softmax) options from the `model` section (model.seed falls back to
/// run.seed).
models::BatchOptions batch_options(const config::Settings& s);

/// The model family of model.type and its options.
models::ModelOptions model_options(const config::Settings& s);

/// The model of `cfg` on the Context's device (nullptr for model.type none). Throws
/// recforge::Error naming model.dtype when the CPU is asked to store factors in another type
/// than float32.
std::unique_ptr<models::Model> make_model(const config::Config& cfg, const Context& ctx);

/// Index options from the `index` section (index.seed unset → run.seed).
index::Options index_options(const config::Settings& s);

/// Columns of the factor matrices the config's model produces: model.factors, plus one for the
/// item bias of a bpr or softmax model with model.item_bias.
int embedding_dimension(const config::Settings& s);

/// The device a run of `s` trains on, as Context::create takes it: train.device, except that
/// `auto` stays on the CPU for what trains on the CPU only (iALS with model.observed_weight
/// replaced), where it would take a GPU and be refused.
std::string training_device(const config::Settings& s);

/// Why the training loss of the config's model on `user_items` (confidences) became NaN or
/// infinite, as the end of the error that stops the run: iALS's largest confidence and alpha,
/// the softmax temperature, or diverging factors, with the setting to change.
std::string nonfinite_loss_cause(const config::Settings& s, const data::Csr& user_items);

}  // namespace recforge::pipeline
