// Fuzz target: loading an export (src/artifact/load.cpp) and the .npy and id files inside it.
// At start-up a small valid export is written (5 users, 4 items, dimension 3, flat index, three
// chain users). The input is a manifest.json, optionally followed by sections
// "\n--8<-- NAME\n<bytes>" that replace the data file NAME, optional ones and chain_users.txt
// included (not index.faiss: Faiss's own reader is not ours to fuzz); the
// size and SHA-256 of a replaced file are written into the manifest's entry for it when the
// manifest is a JSON object with one, so that the fuzzer gets past the checksums to the shape
// and content checks. An export that loads must be consistent with itself.
// RECFORGE_FUZZ_SEED_DIR=DIR writes the valid manifest to DIR/valid.json (the seed corpus).
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <functional>

#include "artifact/artifact.h"
#include "core/hash.h"
#include "fuzz_common.h"

namespace {

using namespace recforge;

/// The valid export's directory (written once) and its manifest.
struct Base {
  std::string dir;
  std::string manifest;
};

const Base& base() {
  static const Base b = [] {
    Matrix users{5, 3, {}}, items{4, 3, {}};
    for (int k = 0; k < 15; ++k) users.data.push_back(0.25f * static_cast<float>(k % 7) - 0.5f);
    for (int k = 0; k < 12; ++k) items.data.push_back(0.125f * static_cast<float>(k % 5) + 0.1f);
    const data::IdMap user_ids({"u1", "u2", "u3", "u4", "u5"});
    const data::IdMap item_ids({"10", "20", "30", "40"});
    data::Csr seen;
    seen.rows = 5;
    seen.cols = 4;
    seen.indptr = {0, 1, 3, 3, 4, 6};
    seen.indices = {2, 0, 3, 1, 0, 1};
    seen.data.assign(6, 1.0f);
    artifact::ExportInput in;
    in.model_type = "ials";
    in.model_parameters = {{"factors", 3}};
    in.users = &users;
    in.items = &items;
    in.user_ids = &user_ids;
    in.item_ids = &item_ids;
    in.seen = &seen;
    in.metrics = {{"test", {{"recall@10", 0.5}}}};
    // Users of an earlier model of its chain of warm starts (chain_users.txt).
    in.chain_salt = hmac_sha256_hex("fuzz", "salt");
    for (const char* id : {"gone-1", "gone-2", "gone-3"})
      in.chain_users.push_back(hmac_sha256(in.chain_salt, std::string("raw:") + id));
    std::sort(in.chain_users.begin(), in.chain_users.end());
    Base out;
    out.dir = (fuzz::scratch() / "base").string();
    artifact::write(in, out.dir);
    std::ifstream f(out.dir + "/manifest.json", std::ios::binary);
    out.manifest.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    if (const char* seed = std::getenv("RECFORGE_FUZZ_SEED_DIR"))
      fuzz::write_file(std::string(seed) + "/valid.json", out.manifest);
    return out;
  }();
  return b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  const Base& b = base();
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // The manifest, then the replaced files.
  const fuzz::Sections sections = fuzz::split_sections(input);
  std::string manifest(sections.head);
  std::vector<std::pair<std::string, std::string_view>> files;
  for (const auto& [name, body] : sections.files) {
    const auto& known = artifact::data_files();
    const auto& optional = artifact::optional_files();
    if (name != "index.faiss" && (std::find(known.begin(), known.end(), name) != known.end() ||
                                  std::find(optional.begin(), optional.end(), name) != optional.end() ||
                                  name == artifact::kChainUsersFile))
      files.emplace_back(name, body);
  }
  // A fresh copy of the valid export, then the input's manifest and files.
  const fs::path dir = fuzz::scratch() / "export";
  std::error_code ec;
  // libFuzzer's -timeout alarm can interrupt the copy (EINTR): try again.
  for (int attempt = 0; attempt == 0 || (ec == std::errc::interrupted && attempt < 100);
       ++attempt) {
    fs::remove_all(dir, ec);
    fs::copy(b.dir, dir, ec);
  }
  if (ec) {
    std::fprintf(stderr, "recforge fuzz: copying %s: %s\n", b.dir.c_str(), ec.message().c_str());
    std::abort();
  }
  if (!files.empty()) {
    nlohmann::json m = nlohmann::json::parse(manifest, nullptr, false);
    for (const auto& [name, body] : files) {
      fuzz::write_file(dir / name, body);
      if (m.is_object() && m.contains("files") && m["files"].is_object() &&
          m["files"].contains(name) && m["files"][name].is_object()) {
        m["files"][name]["bytes"] = body.size();
        m["files"][name]["sha256"] = sha256_file((dir / name).string());
      }
    }
    if (!m.is_discarded()) manifest = m.dump(2);
  }
  fuzz::write_file(dir / "manifest.json", manifest);
  fuzz::expect_user_errors_only([&] {
    const artifact::Artifact a = artifact::load(dir.string());
    RF_ASSERT(a.users.rows == a.user_ids.size() && a.items.rows == a.item_ids.size() &&
                  a.users.cols == a.items.cols && a.seen.rows == a.users.rows &&
                  a.seen.cols == a.items.rows && a.index.size() == a.items.rows &&
                  std::adjacent_find(a.chain_users.begin(), a.chain_users.end(),
                                     std::greater_equal<>()) == a.chain_users.end() &&
                  (a.chain_users.empty() || a.chain_salt.size() == 64),
              "artifact::load: a loaded export disagrees with itself");
  });
  return 0;
}
