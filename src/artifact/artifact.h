#pragma once
/// @file artifact.h
/// The export artifact: a directory that serving fleets load with stock tools (`numpy.load`,
/// `faiss.read_index`) and that `recforge recommend` serves from alone.
///
///   current            symbolic link to the version directory in service, e.g. "v-3"
///   v-<N>/             one complete export (the files below); the one `current` names and the
///                      one it named before are kept, others removed
///   manifest.json ...  symbolic links current/<file>, for clients that open files by path
///
/// and in each version directory:
///
///   manifest.json      format, format_version, model, counts, dtype, metric, index, metrics,
///                      config, fold_in (what folding in new users needs), created, and the
///                      size and SHA-256 of every other file
///   index.faiss        the Faiss index of the item vectors (faiss::write_index)
///   item_factors.npy   float32 (items × dim), C order; row i is item_ids.txt line i + 1
///   user_factors.npy   float32 (users × dim), C order; row u is user_ids.txt line u + 1
///   item_ids.txt       raw item ids, one per line, in factor-row order
///   user_ids.txt       raw user ids, one per line, in factor-row order; with
///                      export.pseudonymize, HMAC-SHA256(key, raw id) in hex instead (the
///                      manifest's "user_ids" says which, with the key's check value)
///   opt_out.txt        the user ids of privacy.opt_out at export time, sorted, one per line
///                      (pseudonyms when the export is pseudonymised); absent in exports of
///                      earlier recforge, which load with an empty list
///   chain_users.txt    users that earlier models of this model's chain of warm starts
///                      (model.init_from) were trained on and this export does not hold, as
///                      HMAC-SHA256(salt, tagged id) in hex, sorted (the manifest's
///                      "chain_users": salt and the key checks of pseudonymised ids); only in
///                      exports of warm-started runs with such users
///   seen_indptr.npy    int64 (users + 1): CSR offsets of each user's training items
///   seen_indices.npy   int32 (nnz): item rows, sorted within each user
///   seen_data.npy      float32 (nnz): the confidences the model trained on, parallel to
///                      seen_indices (explanations); optional: exports before it lack it
///
/// Exports of earlier recforge builds hold these files directly in the directory ("flat"); they
/// still load, and the next export to such a directory replaces it with the versioned layout.
/// The layout and the guarantees to readers and after crashes are described in docs/export.md.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/hash.h"
#include "core/npy.h"
#include "core/secret.h"
#include "data/csr.h"
#include "data/interactions.h"
#include "index/index.h"

namespace recforge::artifact {

/// The format version this recforge writes and reads. Bump it for any change that an older
/// reader would misread; readers refuse other versions.
constexpr int kFormatVersion = 1;
/// The value of the manifest's "format" field.
constexpr const char* kFormatName = "recforge-export";
/// The files of a version-1 artifact besides manifest.json, in the order they are written.
const std::vector<std::string>& data_files();
/// Files that exports written by this recforge hold besides data_files(), but that exports of
/// earlier builds lack: listed and checksummed in the manifest when present, optional to load.
const std::vector<std::string>& optional_files();
/// The scheme of pseudonymised user ids (manifest "user_ids": {"scheme"}).
constexpr const char* kPseudonymScheme = "hmac-sha256";
/// The optional file of the training confidences (written since explain; not in data_files()).
constexpr const char* kSeenDataFile = "seen_data.npy";
/// The file of a warm-started model's chain users (ExportInput::chain_users), only in version
/// directories (no link beside `current`): absent from most exports.
constexpr const char* kChainUsersFile = "chain_users.txt";
/// The symbolic link naming the version in service.
constexpr const char* kCurrentLink = "current";
/// N of a version directory name "v-<N>" (N ≥ 1, no leading zero), or -1 for any other name.
long version_number(const std::string& name);

/// What an export holds; the pointers must stay valid during write().
struct ExportInput {
  std::string model_type;                             ///< "ials", ...
  nlohmann::json model_parameters;                    ///< Model::describe()
  const Matrix* users = nullptr;                      ///< user factors
  const Matrix* items = nullptr;                      ///< item factors
  const data::IdMap* user_ids = nullptr;              ///< raw user ids by row
  const data::IdMap* item_ids = nullptr;              ///< raw item ids by row
  const data::Csr* seen = nullptr;                    ///< users × items training items
  index::Options index;                               ///< how to build index.faiss
  nlohmann::json metrics = nlohmann::json::object();  ///< the run's metrics.json
  nlohmann::json config = nlohmann::json::object();   ///< the resolved config (to_json)
  nlohmann::json source = nlohmann::json::object();   ///< run directory, data fingerprint
  /// Sum of the training interactions' raw weights (data::Bm25Corpus::total_weight): with the
  /// seen lists, what bm25 weighting of a folded-in user needs.
  double train_weight_total = 0;
  /// export.pseudonymize: user_ids.txt and opt_out.txt hold key.pseudonym(raw id); the manifest
  /// records the scheme and key.check_value(), never the key.
  std::optional<SecretKey> pseudonym_key;
  /// The user ids of privacy.opt_out at export time (pipeline::opt_out_ids), written to
  /// opt_out.txt.
  std::vector<std::string> opt_out;
  /// chain_users.txt and the manifest's "chain_users" (written when `chain_users` is not
  /// empty): pipeline::ChainUsers of a warm-started run.
  std::vector<Digest> chain_users;  ///< sorted, each once
  std::string chain_salt;           ///< 64 hex characters
  std::vector<std::string> chain_key_checks;
  /// What set the output directory, named in the advice of an error about it ("--out",
  /// "export.out").
  std::string out_option = "--out";
};

/// Checks, without writing anything, that `out` may receive an export: a new path, an empty
/// directory or an earlier recforge export, below a writable directory. Returns `out`
/// normalized; throws recforge::Error naming it otherwise, and `option` (what set the path:
/// "--out", "export.out") in the advice to choose another. `write` checks the same first.
std::string check_target(const std::string& out, const std::string& option = "--out");

/// Writes an artifact to `out` and returns `out`. Refuses non-finite factors, and an `out` that
/// exists and is not a recforge export (an empty directory is fine). Throws recforge::Error.
///
/// Into an export of the versioned layout: the files go to `out/.staging-<pid>` (each flushed,
/// manifest.json last), which is renamed to the next `out/v-<N>`; then `current` is replaced by
/// a new link to it in one rename, and the versions other than the new one and the one `current`
/// named before are removed (each renamed away first, so that a reader notices). Writers of one
/// `out` take turns (flock on `out`). Readers that resolved `current` to the previous version
/// keep reading it.
///
/// A new `out`, an empty directory or an export of the flat layout: the whole directory (v-1,
/// `current`, the links) is staged in the sibling `out.tmp-<pid>` and swapped with `out` in one
/// atomic rename (renameat2 RENAME_EXCHANGE; where the file system lacks it, `out` is renamed to
/// `out.old-<pid>` and the new one renamed in, a window in which `out` is absent), and the old
/// one removed. A kill at any moment leaves `out` holding the complete old export or the
/// complete new one. `shown_as` (when not empty) is the path the log line names instead of
/// `out`: a training run writes its export inside its staging directory, under another name.
std::string write(const ExportInput& in, const std::string& out, const std::string& shown_as = {});

/// A loaded and verified artifact.
struct Artifact {
  std::string dir;                                      ///< the export directory
  std::string version;                                  ///< "v-<N>" read, "" for a flat export
  nlohmann::json manifest;                              ///< manifest.json
  Matrix users, items;  ///< the factors: views of the mapped .npy files (copied if written to)
  data::IdMap user_ids, item_ids;                       ///< raw ids by row
  /// Training items per user; values: seen_data.npy's confidences, or empty when it is absent.
  data::Csr seen;
  index::ItemIndex index;                               ///< index.faiss
  index::Metric metric = index::Metric::kInnerProduct;  ///< the manifest's metric
  /// opt_out.txt: the opted-out user ids (pseudonyms when pseudonymised), sorted; empty for
  /// exports without the file.
  std::vector<std::string> opt_out;
  /// chain_users.txt (sorted hashes) and the manifest's "chain_users" salt and key checks;
  /// empty for exports without the file.
  std::vector<Digest> chain_users;
  std::string chain_salt;
  std::vector<std::string> chain_key_checks;
  /// The manifest's "user_ids": {"key_check"} of a pseudonymised export; "" when its user ids
  /// are raw.
  std::string key_check;
};

/// The manifest's "fold_in" section for a run's resolved config (config::Config::to_json):
/// its `model` and `weighting` sections, `seed` (run.seed), `threads` (train.threads) and
/// `train_weight_total`, what recommend::Recommender needs to fold in new users from the export
/// alone (with item_factors.npy, and the seen lists for bm25's item counts); null when `config`
/// lacks a model or weighting section. Exports written before fold-in from exports existed lack
/// it; they still load, and folding in from them is refused with a request to export again.
nlohmann::json fold_in_section(const nlohmann::json& config, double train_weight_total);

/// Parses chain_users.txt (of an export, or of a warm-started run's directory): one
/// is_hex_digest hash per line, increasing. Throws recforge::Error naming `path` and the line.
std::vector<Digest> parse_chain_users(std::string_view bytes, const std::string& path);

/// The text of chain_users.txt for sorted `hashes`: their hex, one per line.
std::string chain_users_text(const std::vector<Digest>& hashes);

/// The string at `pointer` (a JSON pointer such as "/model/type") of a manifest, or "" when it
/// is absent or not a string (fields that load() does not check, read by callers that can do
/// without them).
std::string manifest_text(const nlohmann::json& manifest, const char* pointer);

/// True when `dir` holds a `current` link or a manifest.json (an artifact rather than a run
/// directory).
bool is_artifact(const std::string& dir);

/// True when `dir` has a recforge manifest.json (a file, or the link into its current version)
/// whose "format" is kFormatName: another program's manifest.json does not make it an export.
bool has_export_manifest(const std::string& dir);

/// The innermost run directory (with `runs`) or export that holds `path` (itself included when
/// `self`), following links and ".." first, as "the run directory D" or "the export D"; "" when
/// none. Files recforge did not write have no place there.
std::string recforge_owner(const std::string& path, bool self, bool runs = true);

/// Where an export interrupted between moving the previous export at `dir` aside and the new one
/// in (file systems without an atomic exchange) left that previous export (`<dir>.old-<pid>`),
/// when `dir` is missing and such an export is there; "" otherwise. For the error that names it.
std::string export_left_aside(const std::string& dir);

/// Loads `dir`: resolves `current` once and maps every file of that version read-only once,
/// through one descriptor of its directory (a flat export: of `dir`), verifying the format
/// version, every file's size and SHA-256 on the bytes it then parses (the factor matrices keep
/// viewing their mapped files, shared with every process that loads the same version; see
/// FloatStore), the shapes of all arrays and lists against the manifest, and that the factors
/// are finite. A version removed while it is read (two exports within one load) is read again
/// from `current`. Throws recforge::Error with one sentence naming the file and what is wrong.
/// Without `with_index`, index.faiss is neither read nor checked and `index` stays empty;
/// without `with_seen`, neither are the seen lists (seen_indptr.npy, seen_indices.npy,
/// seen_data.npy) and `seen` stays empty (what a warm start, model.init_from, needs is the
/// factors and ids: the seen lists grow with the interactions).
Artifact load(const std::string& dir, bool with_index = true, bool with_seen = true);

}  // namespace recforge::artifact
