// Loading an export: every check names the file and what is wrong, in one sentence.
//
// The export directory is opened once, `current` is resolved once to a version directory, and
// that directory is opened once; every file is then opened relative to it (openat) and mapped
// read-only (manifest.json: read), and checked (size, SHA-256) on the very bytes that are
// parsed. The factor matrices keep viewing their mappings (FloatStore::view), so server
// processes that load one export share one copy of the factors in the page cache; that the
// verified bytes stay the bytes used rests on writers never modifying a published version's
// files in place (they write new files and rename them in; see write.cpp). A writer that
// installs a new version meanwhile cannot mix its files into this load; a version removed while
// it was being read (two exports in the time of one load) is noticed and the load starts over.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "artifact/artifact.h"
#include "artifact/files.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/text.h"

namespace recforge::artifact {

namespace fs = std::filesystem;

namespace {

/// The version directory being read was removed or replaced meanwhile: read `current` again.
struct Vanished {};

/// Loads read again at most this many times when writers keep replacing the export.
constexpr int kAttempts = 20;

/// A manifest field by path ("counts", "users"), or nullptr when absent.
const nlohmann::json* field(const nlohmann::json& m, const char* a, const char* b = nullptr) {
  if (!m.is_object() || !m.contains(a)) return nullptr;
  const nlohmann::json* j = &m[a];
  if (b == nullptr) return j;
  return j->is_object() && j->contains(b) ? &(*j)[b] : nullptr;
}

std::string field_name(const char* a, const char* b) {
  return b ? fmt::format("{}.{}", a, b) : std::string(a);
}

/// An integer field of the manifest ("counts.users"), or an error naming it.
int64_t int_field(const nlohmann::json& m, const std::string& mpath, const char* a,
                  const char* b = nullptr) {
  const nlohmann::json* j = field(m, a, b);
  if (!j || !j->is_number_integer() || j->get<int64_t>() < 0)
    fail("{}: field \"{}\" is missing or not a count; expected a non-negative integer", mpath,
         field_name(a, b));
  return j->get<int64_t>();
}

/// A string field of the manifest, or an error naming it.
std::string string_field(const nlohmann::json& m, const std::string& mpath, const char* a,
                         const char* b = nullptr) {
  const nlohmann::json* j = field(m, a, b);
  if (!j || !j->is_string())
    fail("{}: field \"{}\" is missing or not a string; expected a string", mpath,
         field_name(a, b));
  return j->get<std::string>();
}

/// Parses an id list (one per line) and checks its length and uniqueness.
data::IdMap parse_ids(std::string_view bytes, const std::string& path, int64_t expected) {
  std::vector<std::string> ids = split_lines(bytes);
  if (static_cast<int64_t>(ids.size()) != expected)
    fail("{}: {} ids, expected {} as manifest.json counts", path, ids.size(), expected);
  std::unordered_map<std::string_view, size_t> unique;  // id → its first line
  unique.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i)
    if (const auto [it, fresh] = unique.emplace(ids[i], i); !fresh)
      // Not quoted: the file may hold user ids, which stay out of logs (a refused reload).
      fail("{}: line {} repeats the id of line {}; expected unique ids", path, i + 1,
           it->second + 1);
  return data::IdMap(std::move(ids));
}

/// Checks that a factor matrix has the manifest's shape and finite values.
void check_factors(const std::string& path, const Matrix& m, int64_t rows, int64_t cols) {
  if (m.rows != rows || m.cols != cols)
    fail("{}: shape ({}, {}), expected ({}, {}) as manifest.json counts", path, m.rows, m.cols,
         rows, cols);
  check_finite(m, path);
}

/// Reads one version directory (or a flat export): manifest, then each file once.
Artifact load_version(const DirReader& v, const std::string& dir, const std::string& version,
                      bool with_index, bool with_seen) {
  Artifact a;
  a.dir = dir;
  a.version = version;
  const std::string mpath = v.shown("manifest.json");
  {
    std::optional<std::string> text = v.read("manifest.json");
    if (!text) {
      if (!v.still_in_place()) throw Vanished{};
      fail("{}: missing; {} is not a recforge export", mpath, dir);
    }
    try {
      a.manifest = nlohmann::json::parse(*text);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not valid JSON ({})", mpath, e.what());
    }
  }
  const nlohmann::json& m = a.manifest;
  if (!m.is_object())
    fail("{}: the manifest is a JSON {}; expected an object with \"format\": \"{}\"", mpath,
         m.type_name(), kFormatName);
  const nlohmann::json* format = field(m, "format");
  if (!format || !format->is_string() || format->get<std::string>() != kFormatName)
    fail("{}: \"format\" is not \"{}\"; this is not a recforge export manifest", mpath,
         kFormatName);
  const nlohmann::json* fv = field(m, "format_version");
  if (!fv || !fv->is_number_integer())
    fail("{}: field \"format_version\" is missing or not an integer", mpath);
  const int64_t version_number = fv->get<int64_t>();
  if (version_number != kFormatVersion)
    fail(
        "{}: format_version {} is not supported; this recforge {} reads format_version {} "
        "(export again, or use a matching recforge)",
        mpath, version_number, RECFORGE_VERSION, kFormatVersion);
  const nlohmann::json* dtype = field(m, "dtype");
  if (!dtype || !dtype->is_string() || dtype->get<std::string>() != "float32")
    fail("{}: dtype is {}, expected \"float32\"", mpath, dtype ? dtype->dump() : "missing");

  // Every file listed, with a plain name; the files of this format all listed.
  const nlohmann::json* files = field(m, "files");
  if (!files || !files->is_object())
    fail("{}: field \"files\" is missing or not an object; expected an object of file entries",
         mpath);
  for (const std::string& f : data_files())
    if (!files->contains(f)) fail("{}: no entry for {} in \"files\"", mpath, f);
  for (const auto& [name, entry] : files->items())
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == ".." ||
        name == "manifest.json")
      fail("{}: \"files\" lists \"{}\"; expected plain file names other than manifest.json", mpath,
           name);
  const int64_t n_users = int_field(m, mpath, "counts", "users");
  const int64_t n_items = int_field(m, mpath, "counts", "items");
  const int64_t dim = int_field(m, mpath, "counts", "dim");
  const int64_t nnz = int_field(m, mpath, "counts", "seen");
  a.metric = index::parse_metric(string_field(m, mpath, "metric"), mpath);
  const index::Type type = index::parse_type(string_field(m, mpath, "index", "type"), mpath);

  // Each file: mapped once, its size and SHA-256 checked, then those bytes parsed (the factors:
  // viewed in place, so that the mapping stays and is shared with other processes).
  // A file missing because its directory was removed meanwhile is not a defect of the export:
  // the caller reads `current` again.
  std::set<std::string> read;  // the files verified so far
  auto verified = [&](const std::string& name) {
    read.insert(name);
    std::shared_ptr<const MappedFile> file = v.map(name);
    const std::string path = v.shown(name);
    const nlohmann::json& entry = (*files)[name];
    if (!file) {
      if (!v.still_in_place()) throw Vanished{};
      const nlohmann::json* want = field(entry, "bytes");
      fail("{}: missing (manifest.json lists it with {} bytes)", path,
           want ? want->dump() : "unknown");
    }
    verify_entry(path, file->bytes(), entry, "manifest.json");
    return file;
  };
  auto factors = [&](const std::string& name) {
    const std::shared_ptr<const MappedFile> file = verified(name);
    return parse_npy_view(file->bytes(), file, v.shown(name));
  };
  a.items = factors("item_factors.npy");
  check_factors(v.shown("item_factors.npy"), a.items, n_items, dim);
  a.users = factors("user_factors.npy");
  check_factors(v.shown("user_factors.npy"), a.users, n_users, dim);
  a.item_ids = parse_ids(verified("item_ids.txt")->bytes(), v.shown("item_ids.txt"), n_items);
  a.user_ids = parse_ids(verified("user_ids.txt")->bytes(), v.shown("user_ids.txt"), n_users);
  if (const nlohmann::json* u = field(m, "user_ids"); u && field(*u, "pseudonymized") &&
                                                      (*u)["pseudonymized"] == true) {
    const nlohmann::json* scheme = field(*u, "scheme");
    if (!scheme || *scheme != kPseudonymScheme)
      fail("{}: user_ids.scheme is {}; expected \"{}\" (pseudonymised by another program?)", mpath,
           scheme ? scheme->dump() : "missing", kPseudonymScheme);
    const nlohmann::json* check = field(*u, "key_check");
    if (!check || !check->is_string() || check->get<std::string>().empty())
      fail("{}: user_ids.key_check is {}; expected the key's check value (a hex string)", mpath,
           check ? check->dump() : "missing");
    a.key_check = check->get<std::string>();
  }
  // The opt-out list, sorted, each id once: absent in exports of earlier recforge (empty).
  if (files->contains("opt_out.txt")) {
    a.opt_out = split_lines(verified("opt_out.txt")->bytes());
    for (size_t i = 0; i < a.opt_out.size(); ++i)
      if (a.opt_out[i].empty() || (i > 0 && a.opt_out[i] <= a.opt_out[i - 1]))
        fail("{}: line {} is empty or out of order; expected non-empty ids in increasing order, "
             "each once",
             v.shown("opt_out.txt"), i + 1);
  }
  if (files->contains(kChainUsersFile)) {  // only after warm starts
    a.chain_users = parse_chain_users(verified(kChainUsersFile)->bytes(), v.shown(kChainUsersFile));
    const nlohmann::json* chain = field(m, "chain_users");
    const nlohmann::json* salt = chain ? field(*chain, "salt") : nullptr;
    const nlohmann::json* checks = chain ? field(*chain, "key_checks") : nullptr;
    const bool hex_salt = salt && salt->is_string() && is_hex_digest(salt->get<std::string>());
    if (!hex_salt || !checks || !checks->is_array() ||
        !std::all_of(checks->begin(), checks->end(), [](const auto& c) { return c.is_string(); }))
      fail("{}: chain_users is {}; expected {{\"salt\": 64 hex characters, \"key_checks\": "
           "[strings]}} beside chain_users.txt",
           mpath, chain ? chain->dump() : "missing");
    a.chain_salt = salt->get<std::string>();
    a.chain_key_checks = checks->get<std::vector<std::string>>();
  }

  if (with_seen) {  // the training items per user (a warm start does not need them)
    const std::string indptr_path = v.shown("seen_indptr.npy");
    const std::string indices_path = v.shown("seen_indices.npy");
    std::vector<int64_t> indptr = parse_npy_i64(verified("seen_indptr.npy")->bytes(), indptr_path);
    if (static_cast<int64_t>(indptr.size()) != n_users + 1)
      fail("{}: {} offsets, expected users + 1 = {} as manifest.json counts", indptr_path,
           indptr.size(), n_users + 1);
    if (indptr.front() != 0 || indptr.back() != nnz)
      fail("{}: offsets run from {} to {}, expected 0 to {} (counts.seen)", indptr_path,
           indptr.front(), indptr.back(), nnz);
    std::vector<int32_t> indices =
        parse_npy_i32(verified("seen_indices.npy")->bytes(), indices_path);
    if (static_cast<int64_t>(indices.size()) != nnz)
      fail("{}: {} entries, expected {} (counts.seen in manifest.json)", indices_path,
           indices.size(), nnz);
    for (int64_t u = 0; u < n_users; ++u) {
      if (indptr[u + 1] < indptr[u] || indptr[u + 1] > nnz)
        fail("{}: offset {} is out of order; expected non-decreasing offsets", indptr_path, u + 1);
      for (int64_t e = indptr[u]; e < indptr[u + 1]; ++e)
        if (indices[e] < 0 || indices[e] >= n_items ||
            (e > indptr[u] && indices[e] <= indices[e - 1]))
          fail(
              "{}: entry {} (user row {}) is {}; expected increasing item rows from 0 to {} within "
              "a user",
              indices_path, e, u, indices[e], n_items - 1);
    }
    a.seen.rows = n_users;
    a.seen.cols = n_items;
    a.seen.indptr = std::move(indptr);  // moved, not copied: the Csr's types are the file's
    a.seen.indices = std::move(indices);
    if (files->contains(kSeenDataFile)) {  // optional: exports before it lack it
      const std::string data_path = v.shown(kSeenDataFile);
      std::vector<float> data = parse_npy_f32_vector(verified(kSeenDataFile)->bytes(), data_path);
      if (static_cast<int64_t>(data.size()) != nnz)
        fail("{}: {} entries, expected {} (counts.seen in manifest.json)", data_path, data.size(),
             nnz);
      for (size_t e = 0; e < data.size(); ++e)
        if (!std::isfinite(data[e]) || data[e] < 0)
          fail("{}: entry {} is {}; expected finite confidences >= 0", data_path, e, data[e]);
      a.seen.data = std::move(data);
    }
  }

  if (with_index) {
    const std::string index_path = v.shown("index.faiss");
    a.index =
        index::ItemIndex::from_bytes(verified("index.faiss")->bytes(), index_path, type, a.metric);
    if (a.index.size() != n_items || a.index.dim() != dim)
      fail("{}: {} vectors of dimension {}, expected {} of dimension {} as manifest.json counts",
           index_path, a.index.size(), a.index.dim(), n_items, dim);
  }

  // Files listed beyond those of the format, and not read above, are checked too.
  for (const auto& [name, entry] : files->items()) {
    const auto& known = data_files();
    const auto& optional = optional_files();
    if (std::find(known.begin(), known.end(), name) == known.end() &&
        std::find(optional.begin(), optional.end(), name) == optional.end() && !read.count(name))
      verified(name);
  }
  return a;
}

/// The target of `dir/current`, or nullopt when `dir` has no `current` (a flat export).
std::optional<std::string> read_current(const DirReader& root) {
  std::string target(4096, '\0');
  const ssize_t n = ::readlinkat(root.fd(), kCurrentLink, target.data(), target.size());
  if (n < 0) {
    if (errno == ENOENT) return std::nullopt;
    if (errno == EINVAL)
      fail("{}: is not a symbolic link; expected a link to the export's current version "
           "directory (v-<N>)",
           root.shown(kCurrentLink));
    fail("{}: cannot read the link: {}", root.shown(kCurrentLink), std::strerror(errno));
  }
  target.resize(static_cast<size_t>(n));
  if (version_number(target) < 0)
    fail("{}: points to \"{}\"; expected a version directory v-<N> beside it",
         root.shown(kCurrentLink), target);
  return target;
}

}  // namespace

std::vector<Digest> parse_chain_users(std::string_view bytes, const std::string& path) {
  std::vector<Digest> hashes;
  hashes.reserve(bytes.size() / 65);
  for_each_line(bytes, [&](std::string_view line) {
    const std::optional<Digest> h = parse_hex_digest(line);
    if (!h || (!hashes.empty() && *h <= hashes.back()))
      fail("{}: line {} is not a hash in order; expected 64 lowercase hex characters per line, "
           "increasing",
           path, hashes.size() + 1);
    hashes.push_back(*h);
  });
  return hashes;
}

std::string chain_users_text(const std::vector<Digest>& hashes) {
  std::string text;
  text.reserve(hashes.size() * 65);
  for (const Digest& h : hashes) {
    text += to_hex(h);
    text += '\n';
  }
  return text;
}

std::string manifest_text(const nlohmann::json& manifest, const char* pointer) {
  const nlohmann::json::json_pointer p(pointer);
  if (!manifest.contains(p)) return {};
  const nlohmann::json& v = manifest.at(p);
  return v.is_string() ? v.get<std::string>() : std::string();
}

long version_number(const std::string& name) {
  if (name.size() < 3 || name.size() > 11 || name.compare(0, 2, "v-") != 0) return -1;
  if (name.find_first_not_of("0123456789", 2) != std::string::npos) return -1;
  if (name[2] == '0') return -1;
  return std::stol(name.substr(2));
}

std::string export_left_aside(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(fs::symlink_status(dir, ec))) return "";
  const fs::path abs = fs::absolute(fs::path(dir), ec).lexically_normal();
  const fs::path name = abs.has_filename() ? abs.filename() : abs.parent_path().filename();
  const fs::path parent = abs.has_filename() ? abs.parent_path() : abs.parent_path().parent_path();
  const std::string prefix = name.string() + ".old-";
  for (const auto& e : fs::directory_iterator(parent, ec))
    if (e.path().filename().string().rfind(prefix, 0) == 0 && is_artifact(e.path().string()))
      return e.path().string();
  return "";
}

Artifact load(const std::string& dir, bool with_index, bool with_seen) {
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    std::optional<DirReader> root = DirReader::open(dir, dir);
    if (!root) {
      if (const std::string aside = export_left_aside(dir); !aside.empty())
        fail("{}: no such export directory; an interrupted export left the previous one at {} "
             "(rename it back, or export again)",
             dir, aside);
      fail("{}: no such export directory", dir);
    }
    const std::optional<std::string> target = read_current(*root);
    try {
      if (!target) return load_version(*root, dir, "", with_index, with_seen);  // the flat layout of earlier recforge
      const std::optional<DirReader> v = DirReader::open(*target, dir + "/" + *target, root->fd());
      if (!v) continue;  // removed since `current` was read: read it again
      return load_version(*v, dir, *target, with_index, with_seen);
    } catch (const Vanished&) {
      continue;
    }
  }
  fail(
      "{}: the export was replaced {} times while it was being read; expected the writers to "
      "leave it alone for the time of one load",
      dir, kAttempts);
}

}  // namespace recforge::artifact
