// Loading an export: every check names the file and what is wrong, in one sentence.
#include <filesystem>
#include <fstream>
#include <unordered_set>

#include "artifact/artifact.h"
#include "core/error.h"
#include "core/hash.h"

namespace recforge::artifact {

namespace fs = std::filesystem;

namespace {

/// An integer field of the manifest ("counts.users"), or an error naming it.
int64_t int_field(const nlohmann::json& m, const std::string& mpath, const char* a,
                  const char* b = nullptr) {
  const nlohmann::json* j = m.contains(a) ? &m[a] : nullptr;
  if (j && b) j = j->is_object() && j->contains(b) ? &(*j)[b] : nullptr;
  const std::string name = b ? fmt::format("{}.{}", a, b) : a;
  if (!j || !j->is_number_integer() || j->get<int64_t>() < 0)
    fail("{}: field \"{}\" is missing or not a count; expected a non-negative integer", mpath,
         name);
  return j->get<int64_t>();
}

/// A string field of the manifest, or an error naming it.
std::string string_field(const nlohmann::json& m, const std::string& mpath, const char* a,
                         const char* b = nullptr) {
  const nlohmann::json* j = m.contains(a) ? &m[a] : nullptr;
  if (j && b) j = j->is_object() && j->contains(b) ? &(*j)[b] : nullptr;
  const std::string name = b ? fmt::format("{}.{}", a, b) : a;
  if (!j || !j->is_string()) fail("{}: field \"{}\" is missing or not a string", mpath, name);
  return j->get<std::string>();
}

/// Reads an id list (one per line) and checks its length and uniqueness.
data::IdMap read_ids(const std::string& path, int64_t expected) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::vector<std::string> ids;
  for (std::string line; std::getline(in, line);) ids.push_back(line);
  if (static_cast<int64_t>(ids.size()) != expected)
    fail("{}: {} ids, expected {} as manifest.json counts", path, ids.size(), expected);
  std::unordered_set<std::string_view> unique;
  unique.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i)
    if (!unique.insert(ids[i]).second)
      fail("{}: line {}: id \"{}\" appears twice; expected unique ids", path, i + 1, ids[i]);
  return data::IdMap(std::move(ids));
}

/// Checks that a factor matrix has the manifest's shape.
void check_shape(const std::string& path, const Matrix& m, int64_t rows, int64_t cols) {
  if (m.rows != rows || m.cols != cols)
    fail("{}: shape ({}, {}), expected ({}, {}) as manifest.json counts", path, m.rows, m.cols,
         rows, cols);
}

}  // namespace

Artifact load(const std::string& dir) {
  const fs::path root(dir);
  if (!fs::is_directory(root)) {
    // An export interrupted between moving the old one aside and the new one in (only on file
    // systems without atomic exchange) leaves the old one at <dir>.old-<pid>.
    std::error_code ec;
    const fs::path abs = fs::absolute(root, ec).lexically_normal();
    const std::string prefix =
        (abs.has_filename() ? abs.filename() : abs.parent_path().filename()).string() + ".old-";
    for (const auto& e : fs::directory_iterator(abs.parent_path(), ec))
      if (e.path().filename().string().rfind(prefix, 0) == 0 && is_artifact(e.path().string()))
        fail(
            "{}: no such export directory; an interrupted export left the previous one at {} "
            "(rename it back, or export again)",
            dir, e.path().string());
    fail("{}: no such export directory", dir);
  }
  Artifact a;
  a.dir = dir;
  const std::string mpath = (root / "manifest.json").string();
  {
    std::ifstream in(mpath);
    if (!in) fail("{}: missing; {} is not a recforge export", mpath, dir);
    try {
      a.manifest = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not valid JSON ({})", mpath, e.what());
    }
  }
  const nlohmann::json& m = a.manifest;
  // value(key, default) throws nlohmann's type_error when the key holds another type.
  auto is_text = [&](const char* key, const char* want) {
    return m.contains(key) && m[key].is_string() && m[key].get<std::string>() == want;
  };
  if (!m.is_object() || !is_text("format", kFormatName))
    fail("{}: \"format\" is not \"{}\"; this is not a recforge export manifest", mpath,
         kFormatName);
  if (!m.contains("format_version") || !m["format_version"].is_number_integer())
    fail("{}: field \"format_version\" is missing or not an integer", mpath);
  const int64_t version = m["format_version"].get<int64_t>();
  if (version != kFormatVersion)
    fail(
        "{}: format_version {} is not supported; this recforge {} reads format_version {} "
        "(export again, or use a matching recforge)",
        mpath, version, RECFORGE_VERSION, kFormatVersion);
  if (!is_text("dtype", "float32"))
    fail("{}: dtype is {}, expected \"float32\"", mpath,
         m.contains("dtype") ? m["dtype"].dump() : "missing");

  // Every file: listed, present, of the listed size and SHA-256.
  if (!m.contains("files") || !m["files"].is_object())
    fail("{}: field \"files\" is missing or not an object", mpath);
  for (const std::string& f : data_files())
    if (!m["files"].contains(f)) fail("{}: no entry for {} in \"files\"", mpath, f);
  for (const auto& [name, entry] : m["files"].items()) {
    const std::string path = (root / name).string();
    if (name.find('/') != std::string::npos || name == "manifest.json")
      fail("{}: \"files\" lists \"{}\"; expected plain file names other than manifest.json", mpath,
           name);
    if (!entry.is_object() || !entry.contains("bytes") || !entry["bytes"].is_number_unsigned() ||
        !entry.contains("sha256") || !entry["sha256"].is_string())
      fail("{}: the entry of {} in \"files\" lacks bytes or sha256", mpath, name);
    const uint64_t want = entry["bytes"].get<uint64_t>();
    std::error_code ec;
    if (!fs::is_regular_file(path, ec))
      fail("{}: missing (manifest.json lists it with {} bytes)", path, want);
    const uint64_t have = fs::file_size(path, ec);
    if (have != want)
      fail("{}: {} bytes, but manifest.json says {} (the file is truncated or was replaced)", path,
           have, want);
    const std::string sha = sha256_file(path);
    if (sha != entry["sha256"].get<std::string>())
      fail("{}: SHA-256 {} does not match manifest.json's {} (the file is corrupt or was modified)",
           path, sha, entry["sha256"].get<std::string>());
  }

  // Shapes and contents against the counts.
  const int64_t n_users = int_field(m, mpath, "counts", "users");
  const int64_t n_items = int_field(m, mpath, "counts", "items");
  const int64_t dim = int_field(m, mpath, "counts", "dim");
  const int64_t nnz = int_field(m, mpath, "counts", "seen");
  const std::string S = dir + "/";
  a.items = read_npy(S + "item_factors.npy");
  check_shape(S + "item_factors.npy", a.items, n_items, dim);
  a.users = read_npy(S + "user_factors.npy");
  check_shape(S + "user_factors.npy", a.users, n_users, dim);
  a.item_ids = read_ids(S + "item_ids.txt", n_items);
  a.user_ids = read_ids(S + "user_ids.txt", n_users);

  std::vector<int64_t> indptr = read_npy_i64(S + "seen_indptr.npy");
  if (static_cast<int64_t>(indptr.size()) != n_users + 1)
    fail("{}seen_indptr.npy: {} offsets, expected users + 1 = {} as manifest.json counts", S,
         indptr.size(), n_users + 1);
  if (indptr.front() != 0 || indptr.back() != nnz)
    fail("{}seen_indptr.npy: offsets run from {} to {}, expected 0 to {} (counts.seen)", S,
         indptr.front(), indptr.back(), nnz);
  std::vector<int32_t> indices = read_npy_i32(S + "seen_indices.npy");
  if (static_cast<int64_t>(indices.size()) != nnz)
    fail("{}seen_indices.npy: {} entries, expected {} (counts.seen in manifest.json)", S,
         indices.size(), nnz);
  for (int64_t u = 0; u < n_users; ++u) {
    if (indptr[u + 1] < indptr[u])
      fail("{}seen_indptr.npy: offset {} decreases; expected non-decreasing offsets", S, u + 1);
    for (int64_t e = indptr[u]; e < indptr[u + 1]; ++e)
      if (indices[e] < 0 || indices[e] >= n_items ||
          (e > indptr[u] && indices[e] <= indices[e - 1]))
        fail(
            "{}seen_indices.npy: entry {} (user row {}) is {}; expected increasing item rows "
            "from 0 to {} within a user",
            S, e, u, indices[e], n_items - 1);
  }
  a.seen.rows = n_users;
  a.seen.cols = n_items;
  a.seen.indptr.assign(indptr.begin(), indptr.end());
  a.seen.indices.assign(indices.begin(), indices.end());

  a.metric = index::parse_metric(string_field(m, mpath, "metric"), mpath);
  const index::Type type = index::parse_type(string_field(m, mpath, "index", "type"), mpath);
  a.index = index::ItemIndex::read(S + "index.faiss", type, a.metric);
  if (a.index.size() != n_items || a.index.dim() != dim)
    fail(
        "{}index.faiss: {} vectors of dimension {}, expected {} of dimension {} as manifest.json "
        "counts",
        S, a.index.size(), a.index.dim(), n_items, dim);
  return a;
}

}  // namespace recforge::artifact
