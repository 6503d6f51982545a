/// @file params.cpp
/// THE parameter table: every configuration parameter is declared here and nowhere else.
/// Validation, `--set`, the resolved-config dump and docs/configuration.md derive from it.
/// To add a parameter or a section, add rows below (and a line to kSections for a new section),
/// then regenerate docs/configuration.md (see the ConfigDoc test).

#include <string>
#include <vector>

#include "config/config.h"

namespace recforge::config {
namespace {

/// Fluent construction of one table row.
struct Row {
  Param p;
  Row(std::string path, Type type, std::string default_yaml, std::string description) {
    p.path = std::move(path);
    p.type = type;
    p.default_yaml = std::move(default_yaml);
    p.description = std::move(description);
  }
  Row& ge(double v) {
    p.min = v;
    p.min_exclusive = false;
    return *this;
  }
  Row& gt(double v) {
    p.min = v;
    p.min_exclusive = true;
    return *this;
  }
  Row& le(double v) {
    p.max = v;
    p.max_exclusive = false;
    return *this;
  }
  Row& lt(double v) {
    p.max = v;
    p.max_exclusive = true;
    return *this;
  }
  Row& optional() {
    p.optional = true;
    return *this;
  }
  Row& check(std::function<std::string(const std::string&)> f, std::string allowed) {
    p.check = std::move(f);
    p.allowed = std::move(allowed);
    return *this;
  }
  operator Param() const { return p; }  // NOLINT: rows convert implicitly into the table
};

Row Int(std::string path, std::string def, std::string desc) {
  return Row(std::move(path), Type::kInt, std::move(def), std::move(desc));
}
Row Float(std::string path, std::string def, std::string desc) {
  return Row(std::move(path), Type::kFloat, std::move(def), std::move(desc));
}
Row Bool(std::string path, std::string def, std::string desc) {
  return Row(std::move(path), Type::kBool, std::move(def), std::move(desc));
}
Row String(std::string path, std::string def, std::string desc) {
  return Row(std::move(path), Type::kString, std::move(def), std::move(desc));
}
Row IntList(std::string path, std::string def, std::string desc) {
  return Row(std::move(path), Type::kIntList, std::move(def), std::move(desc));
}
Row Enum(std::string path, std::vector<std::string> choices, std::string def, std::string desc) {
  Row r(std::move(path), Type::kEnum, std::move(def), std::move(desc));
  r.p.choices = std::move(choices);
  return r;
}

/// train.device: auto, cpu, cuda or cuda:N.
std::string check_device(const std::string& v) {
  if (v == "auto" || v == "cpu" || v == "cuda") return "";
  if (v.size() > 5 && v.compare(0, 5, "cuda:") == 0 && v.size() <= 9 &&
      v.find_first_not_of("0123456789", 5) == std::string::npos)
    return "";
  return "expected auto, cpu, cuda or cuda:N";
}

const std::vector<Section> kSections = {
    {"run", "Naming of the run, its output directory, randomness and logging."},
    {"train", "Hardware used for training, and checkpoints."},
    {"data", "The interactions file and how it is read, combined and filtered."},
    {"synthetic", "The generator used when `data.format` is `synthetic`."},
    {"split", "How interactions are divided into training, validation and test sets."},
    {"weighting", "How raw interaction weights are turned into confidences before training."},
    {"model", "The model trained on the training interactions and its hyperparameters."},
    {"eval", "How trained models are evaluated: exact top-k over all items with training items "
             "masked (see docs/metrics.md)."},
    {"index", "The Faiss index built over the item factors for retrieval and export (see "
              "docs/export.md)."},
    {"export", "Writing the serving artifact (manifest, Faiss index, embeddings, id maps, seen "
               "items) at the end of a training run."},
};

/// eval.metric: NAME@K with a known metric name.
std::string check_metric(const std::string& v) {
  const auto at = v.find('@');
  if (at != std::string::npos && at + 1 < v.size() &&
      v.find_first_not_of("0123456789", at + 1) == std::string::npos) {
    const std::string name = v.substr(0, at);
    for (const char* m : {"recall", "precision", "ndcg", "map", "hit_rate", "coverage"})
      if (name == m) return "";
  }
  return "expected NAME@K with NAME one of recall, precision, ndcg, map, hit_rate, coverage";
}

}  // namespace

const std::vector<Section>& sections() { return kSections; }

const std::vector<Param>& params() {
  static const std::vector<Param> table = {
      // ---- run --------------------------------------------------------------------------------
      String("run.name", "\"\"",
             "Name of the run and of its directory under `run.dir`; empty means the config "
             "file's name without extension."),
      String("run.dir", "runs", "Directory in which run directories are created."),
      Enum("run.exists", {"suffix", "overwrite", "error"}, "suffix",
           "What to do when `<run.dir>/<run.name>` already exists (or another run is writing "
           "it): `suffix` appends `.1`, `.2`, ... to the name, `overwrite` replaces it if it is "
           "an earlier recforge run (anything else is refused before training), `error` stops."),
      Int("run.seed", "42", "Master seed of the run's random number generators.").ge(0),
      Enum("run.log_level", {"trace", "debug", "info", "warn", "error"}, "info",
           "Least severe level of log messages that are shown and written to the run's log."),
      Enum("run.progress", {"auto", "bar", "lines", "off"}, "auto",
           "How progress of long stages is shown: `auto` draws a live bar on a terminal and "
           "periodic log lines otherwise, `bar` and `lines` force one of them, `off` hides it."),

      // ---- train ------------------------------------------------------------------------------
      String("train.device", "auto",
             "Where to train: `auto` uses a CUDA GPU when one is available and the CPU "
             "otherwise; `cuda:N` selects GPU number N.")
          .check(check_device, "`auto`, `cpu`, `cuda`, `cuda:N`"),
      Int("train.threads", "0", "Number of CPU threads; 0 uses all cores.").ge(0),
      Enum("train.gpu_streaming", {"auto", "on", "off"}, "auto",
           "GPU training: `auto` keeps the interactions in GPU memory when they fit and streams "
           "them from pinned host memory in row batches otherwise; `on` always streams; `off` "
           "never does (and refuses data that does not fit)."),
      Int("train.checkpoint_every", "0",
          "Write a checkpoint every N iterations (epochs for `bpr` and `softmax`) to "
          "`<run.dir>/.<run.name>.checkpoint/`, atomically; running the same command again "
          "after a crash or kill, or `recforge train --resume <run.dir>/<run.name>`, continues "
          "from it, and it is removed when the run completes. 0 writes none.")
          .ge(0),

      // ---- data -------------------------------------------------------------------------------
      Enum("data.format", {"delimited", "adjacency", "synthetic"}, "delimited",
           "Input format: `delimited` has one interaction per line in columns, `adjacency` one "
           "user per line followed by the user's items, `synthetic` generates data as set in "
           "the `synthetic` section."),
      String("data.path", "", "Interactions file; with `split.method: given`, the training file.")
          .optional(),
      String("data.test_path", "", "Test interactions file, used with `split.method: given`.")
          .optional(),
      Enum("data.delimiter", {"auto", "comma", "tab", "space", "whitespace", "semicolon", "pipe"},
           "auto",
           "Column separator: `auto` picks tab, comma, semicolon, pipe or whitespace from the first "
           "line; `space` and `whitespace` both split on runs of spaces and tabs."),
      Bool("data.header", "false", "Whether the first line holds column names."),
      String("data.user_col", "\"0\"",
             "User id column: a column name (when `data.header` is true) or a 0-based index."),
      String("data.item_col", "\"1\"", "Item id column, given like `data.user_col`."),
      String("data.weight_col", "",
             "Weight column, given like `data.user_col`; unset gives every interaction weight 1.")
          .optional(),
      String("data.time_col", "",
             "Timestamp column (integer), given like `data.user_col`; unset means no timestamps.")
          .optional(),
      Enum("data.id_type", {"int", "string"}, "int",
           "User and item ids: `int` requires integers, `string` accepts any text."),
      Enum("data.duplicates", {"sum", "max", "last"}, "sum",
           "How repeated (user, item) pairs are combined: sum or maximum of their weights, or "
           "the last one (latest timestamp, else latest in the file)."),
      Float("data.min_weight", "0", "Interactions whose weight (after combining duplicates) is below this are dropped."),
      Int("data.min_user_interactions", "1",
          "Users with fewer interactions (in the training file) are dropped; the user and item "
          "filters are applied repeatedly until both hold.")
          .ge(1),
      Int("data.min_item_interactions", "1",
          "Items with fewer interactions are dropped (see `data.min_user_interactions`).")
          .ge(1),
      Enum("data.on_error", {"fail", "skip"}, "fail",
           "A malformed line: `fail` stops with its file, line and text; `skip` drops it, counts it "
           "and reports the count."),
      Bool("data.cache", "true",
           "Keep the parsed data in a binary cache so that later runs with the same input and "
           "`data` settings skip parsing."),
      String("data.cache_dir", "\"\"",
             "Cache directory; empty means `$XDG_CACHE_HOME/recforge`, or `~/.cache/recforge` "
             "when XDG_CACHE_HOME is unset."),

      // ---- synthetic --------------------------------------------------------------------------
      Int("synthetic.users", "20000", "Number of users.").ge(1),
      Int("synthetic.items", "10000", "Number of items.").ge(2),
      Int("synthetic.interactions", "1000000",
          "Target number of interactions before duplicates are combined.")
          .ge(1),
      Int("synthetic.communities", "16",
          "Number of communities that users and items are divided into.")
          .ge(1),
      Float("synthetic.community_strength", "0.8",
            "Probability that an interaction stays in the user's community.")
          .ge(0)
          .le(1),
      Float("synthetic.popularity_exponent", "1.0",
            "Zipf exponent of item popularity; 0 makes all items equally popular.")
          .ge(0),
      Float("synthetic.activity_sigma", "1.0",
            "Sigma of the log-normal distribution of per-user activity; 0 gives all users the "
            "same expected activity.")
          .ge(0),
      Int("synthetic.days", "365", "Time span of the generated timestamps, in days.").ge(1),
      Enum("synthetic.weights", {"binary", "counts"}, "counts",
           "Interaction weights: `binary` is 1 per (user, item) pair, `counts` the number of "
           "times the pair was drawn."),
      Int("synthetic.seed", "1", "Seed of the generator, independent of `run.seed`.").ge(0),

      // ---- split ------------------------------------------------------------------------------
      Enum("split.method", {"given", "random", "leave_last", "time", "users", "none"}, "random",
           "How the test set is chosen: `given` reads `data.test_path`, `random` holds out a "
           "fraction of each user's interactions, `leave_last` each user's last `leave_k`, "
           "`time` those after a cutoff, `users` part of the interactions of held-out users, "
           "`none` has no test set."),
      Float("split.test_fraction", "0.2",
            "Fraction held out of each user's interactions by `random`, and of each held-out "
            "user's interactions by `users`.")
          .gt(0)
          .lt(1),
      Int("split.leave_k", "1", "Number of interactions per user held out by `leave_last`.").ge(1),
      Float("split.cutoff", "",
            "Timestamp that separates training from test for `time`; unset uses "
            "`split.cutoff_quantile`.")
          .optional(),
      Float("split.cutoff_quantile", "0.8",
            "Quantile of all timestamps used as the cutoff when `split.cutoff` is unset.")
          .gt(0)
          .lt(1),
      Float("split.heldout_users", "0.1", "Fraction of users held out by `users`.").gt(0).lt(1),
      Float("split.validation_fraction", "0",
            "When above 0, a validation set is carved from the training part by the same method "
            "(a per-user fraction for random/given/none, the last `leave_k` for leave_last, a "
            "time quantile for time, held-out users for users; see docs/data.md).")
          .ge(0)
          .lt(1),

      // ---- weighting --------------------------------------------------------------------------
      Enum("weighting.scheme", {"none", "linear", "log", "bm25"}, "none",
           "Confidence from a raw weight w: `none` keeps w, `linear` is 1 + alpha * w, `log` is "
           "1 + alpha * log(1 + w / eps), `bm25` is BM25 weighting with `bm25_k1` and `bm25_b`."),
      Float("weighting.alpha", "1.0", "Scale `alpha` of the `linear` and `log` schemes.").ge(0),
      Float("weighting.eps", "1.0", "Divisor `eps` of the `log` scheme.").gt(0),
      Float("weighting.bm25_k1", "100", "BM25 k1: saturation of repeated interactions.").ge(0),
      Float("weighting.bm25_b", "0.8", "BM25 b: strength of the length normalization.").ge(0).le(1),

      // ---- model ------------------------------------------------------------------------------
      Enum("model.type", {"ials", "bpr", "softmax", "none"}, "ials",
           "`ials`: implicit-feedback ALS (Hu et al. 2008, in the formulation of Rendle et al. "
           "2022); `bpr`: Bayesian personalised ranking (Rendle et al. 2009) on sampled "
           "(user, positive, negative) triples; `softmax`: sampled softmax over in-batch and "
           "sampled negatives with the log-Q correction (Yi et al. 2019); `none` only prepares "
           "the data."),
      Int("model.factors", "64", "Embedding dimension (any size; above 1024 works too).").ge(1),
      Int("model.iterations", "15",
          "Training iterations; for `ials` one iteration solves all users, then all items; for "
          "`bpr` and `softmax` one iteration is one epoch (as many sampled positives as there "
          "are training interactions).")
          .ge(1),
      Float("model.regularization", "0.01",
            "L2 strength lambda; for ials each row's penalty is lambda * (n + "
            "reg_offset)^reg_exp * ||row||^2, n being the row's number of observed "
            "interactions; for bpr and softmax lambda * row is added to the gradient of every "
            "row a step touches.")
          .ge(0),
      Float("model.reg_exp", "1.0",
            "Frequency-scaling exponent of the regularization (0: the same lambda for every row).")
          .ge(0),
      Float("model.reg_offset", "1.0", "Offset added to n in the frequency scaling.").ge(0),
      Float("model.unobserved_weight", "0.05",
            "Weight alpha0 of the squared score of every (user, item) pair, observed or not "
            "(the implicit-feedback term, computed through the Gram matrix).")
          .ge(0),
      Float("model.unobserved_exp", "0",
            "Exponent beta of per-item unobserved weights (eALS, He et al. 2016): item i's "
            "unobserved weight is unobserved_weight * c_i with c_i proportional to "
            "popularity^beta and mean 1; 0 weights all items alike.")
          .ge(0)
          .le(2),
      Float("model.alpha", "1.0",
            "Confidence scale: an observed pair's loss weight is alpha times its confidence "
            "from the `weighting` section.")
          .gt(0),
      Float("model.init_std", "0.1",
            "Factors start from N(0, (init_std / sqrt(factors))^2); at most 100, since scores "
            "start near init_std^2 (the models aim at about 1) and the solvers' squared terms, "
            "about init_std^4 times the interactions, must stay within float32.")
          .ge(0)
          .le(100),
      Int("model.seed", "", "Seed of the initial factors; unset uses `run.seed`.").ge(0).optional(),
      Enum("model.solver", {"cg", "cholesky"}, "cg",
           "Per-row solve: `cg` runs `cg_steps` conjugate-gradient steps warm-started from the "
           "previous factors; `cholesky` solves each row's normal equations exactly."),
      Int("model.cg_steps", "3", "Conjugate-gradient steps per row and half-iteration.").ge(1),
      Enum("model.dtype", {"float32", "float16", "bfloat16"}, "float32",
           "Storage type of the factors on the GPU (arithmetic is float32 either way); the CPU "
           "stores float32 only. Saved factors are float32."),
      Int("model.batch_size", "1024",
          "bpr, softmax: samples per optimiser step (softmax: positives per batch, each batch "
          "one set of GEMMs).")
          .ge(1),
      Float("model.learning_rate", "0.01",
            "bpr, softmax: step size of the first epoch.")
          .gt(0),
      Float("model.lr_decay", "1.0",
            "bpr, softmax: epoch e trains at learning_rate * lr_decay^(e-1).")
          .gt(0)
          .le(1),
      Enum("model.optimizer", {"sgd", "adagrad", "adam"}, "adam",
           "bpr, softmax: `sgd`, `adagrad` or `adam` (beta1 0.9, beta2 0.999, eps 1e-8); adagrad "
           "and adam keep per-weight state and update only the rows a batch touches."),
      Int("model.negatives", "1",
          "bpr: negatives drawn per positive (each makes one triple); softmax: negatives drawn "
          "per batch and shared by its rows (added to the in-batch ones).")
          .ge(0),
      Float("model.negative_exp", "0",
            "bpr, softmax: negatives are drawn with probability proportional to "
            "(interactions + 1)^negative_exp; 0 draws uniformly.")
          .ge(0)
          .le(2),
      Bool("model.reject_seen", "true",
           "bpr: redraw a negative the user has interacted with (checked against the training "
           "CSR, up to 16 draws)."),
      Int("model.hard_negatives", "1",
          "bpr: draw this many candidates for each negative and train on the one the user "
          "currently scores highest (dynamic negative sampling, Zhang et al. 2013); 1 is plain "
          "BPR.")
          .ge(1)
          .le(1024),
      Bool("model.item_bias", "false",
           "bpr, softmax: learn an item bias, stored as one more column of the factors (users "
           "hold 1 there), so exports and indexes score it with a plain inner product."),
      Float("model.temperature", "1.0",
            "softmax: logits are scores divided by this temperature; at least 1e-18, since the "
            "gradients grow as 1/temperature and Adam and Adagrad square them, which overflows "
            "float32 (3.4e38) below about 1e-19.")
          .ge(1e-18),
      Bool("model.in_batch", "true",
           "softmax: the batch's other positives count as negatives of each row."),
      Bool("model.logq", "true",
           "softmax: subtract from each candidate's logit the log of its expected count among "
           "the batch's candidates (the sampling-bias correction)."),
      Bool("model.normalize", "false",
           "softmax: keep every user and item row at unit norm (gradients projected onto the "
           "sphere, rows rescaled after each step), so scores are cosine similarities; pair "
           "with a temperature around 0.05 to 0.2. With model.item_bias the bias column stays "
           "outside the sphere: score = cosine + item bias."),
      Int("model.eval_every", "0",
          "Evaluate on the validation set every N iterations (0: only after training).")
          .ge(0),
      Int("model.patience", "0",
          "Stop after this many validation evaluations without improvement of `eval.metric`, "
          "keeping the best factors (0: never stop early; needs eval_every > 0).")
          .ge(0),

      // ---- eval -------------------------------------------------------------------------------
      IntList("eval.ks", "[10, 20, 50]", "Cutoffs K at which every metric is computed.").ge(1),
      String("eval.metric", "ndcg@20",
             "Metric used for early stopping and model selection, as NAME@K; K must be in "
             "`eval.ks`.")
          .check(check_metric, "`NAME@K`"),
      Bool("eval.test", "true",
           "Evaluate on the test part after training. Tuning runs set it to false so that "
           "hyperparameters are chosen on validation without ever looking at test."),

      // ---- index ------------------------------------------------------------------------------
      Enum("index.type", {"flat", "ivf_flat", "ivf_pq", "hnsw"}, "flat",
           "Faiss index over the item factors: `flat` scores every item (exact), `ivf_flat` "
           "probes `nprobe` of `nlist` k-means cells, `ivf_pq` does the same over "
           "product-quantized vectors, `hnsw` walks a navigable small-world graph."),
      Enum("index.metric", {"inner_product", "cosine"}, "inner_product",
           "Similarity: `inner_product` is the model's score; `cosine` normalizes item and query "
           "vectors to unit length first (the index then holds normalized vectors)."),
      Enum("index.device", {"auto", "cpu", "cuda"}, "auto",
           "Where `flat`, `ivf_flat` and `ivf_pq` indices are searched: `cuda` on GPU 0 through "
           "GPU Faiss (a build with `RECFORGE_FAISS_GPU=ON`, see docs/export.md), `cpu` on the "
           "CPU, `auto` on the GPU when the build has GPU Faiss and a GPU answers. `hnsw` stays on "
           "the CPU; the exported index file is a CPU index either way."),
      Int("index.nlist", "0",
          "Number of IVF cells (`ivf_flat`, `ivf_pq`); 0 picks 4 * sqrt(items), at most the "
          "number of training vectors.")
          .ge(0),
      Int("index.nprobe", "16",
          "IVF cells visited per query (stored in the index file; at most `nlist` are used).")
          .ge(1),
      Int("index.pq_m", "0",
          "Sub-quantizers of `ivf_pq` (bytes per vector at 8 bits); must divide the factor "
          "dimension; 0 picks the largest divisor that leaves at least 4 dimensions each.")
          .ge(0),
      Int("index.pq_nbits", "8",
          "Bits per sub-quantizer code of `ivf_pq`; training needs at least 2^pq_nbits vectors.")
          .ge(1)
          .le(16),
      Int("index.hnsw_m", "32", "Graph neighbours per node of `hnsw`.").ge(2).le(1024),
      Int("index.ef_construction", "200", "Candidate list size while building `hnsw`.").ge(1),
      Int("index.ef_search", "128",
          "Candidate list size while searching `hnsw` (stored in the index file; a query for "
          "more than ef_search results uses its k instead).")
          .ge(1),
      Int("index.train_sample", "100000",
          "Item vectors sampled (seeded) to train the IVF cells and the product quantizer; all "
          "items when there are fewer.")
          .ge(1),
      Int("index.seed", "", "Seed of the index training (k-means, sampling, HNSW levels); unset "
                            "uses `run.seed`.")
          .ge(0)
          .optional(),

      // ---- export -----------------------------------------------------------------------------
      Bool("export.enabled", "false",
           "Write the serving artifact (docs/export.md) at the end of `recforge train`."),
      String("export.out", "\"\"",
             "Directory of the artifact written by `export.enabled`; empty means `export/` "
             "inside the run directory. An existing export there is replaced atomically."),
  };
  return table;
}

}  // namespace recforge::config
