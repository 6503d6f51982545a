#pragma once
/// @file fuzz_common.h
/// Shared by the fuzz targets (fuzz/*_fuzz.cpp): a private scratch directory, writing the input
/// to a file there, and the rule of every target: recforge::Error (a user error naming the input)
/// is the expected answer to bad input; any other exception, crash or sanitizer report is a
/// finding. The targets are built two ways: with libFuzzer (preset `fuzz`, clang) and, in the
/// normal build, with replay_main.cpp, which runs the committed regression inputs under ctest.

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/log.h"

namespace recforge::fuzz {

/// A scratch directory private to this process, removed at exit (only what the target made).
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    std::error_code ec;
    std::filesystem::path base = std::filesystem::temp_directory_path(ec);
    if (ec) base = "/tmp";
    std::string tmpl = (base / "recforge-fuzz-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) {
      std::perror("recforge fuzz: mkdtemp");
      std::abort();
    }
    set_log_level("off");  // warnings about damaged input would flood the fuzzer's output
    return std::filesystem::path(tmpl);
  }();
  // Registered after `dir` is constructed, so that it runs before `dir` is destroyed.
  static const bool cleanup = [] {
    std::atexit([] {
      std::error_code e;
      std::filesystem::remove_all(scratch(), e);
    });
    return true;
  }();
  (void)cleanup;
  return dir;
}

/// Writes `bytes` to `path` (replacing it); aborts when that fails (a broken harness, not a
/// finding in recforge).
inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) ||
      std::fclose(f) != 0) {
    std::perror(("recforge fuzz: writing " + path.string()).c_str());
    std::abort();
  }
}

/// An input of the form HEAD, then sections "\n--8<-- NAME\n<bytes>" (a file NAME replaced by
/// <bytes>, as the artifact and checkpoint targets read it): HEAD and the sections in order. A
/// marker without a newline after its name ends the input.
struct Sections {
  std::string_view head;
  std::vector<std::pair<std::string, std::string_view>> files;
};
inline Sections split_sections(std::string_view input) {
  constexpr std::string_view marker = "\n--8<-- ";
  Sections out;
  size_t cut = input.find(marker);
  out.head = input.substr(0, cut);
  while (cut != std::string_view::npos) {
    const size_t name_at = cut + marker.size();
    const size_t nl = input.find('\n', name_at);
    if (nl == std::string_view::npos) break;
    std::string name(input.substr(name_at, nl - name_at));
    cut = input.find(marker, nl);
    out.files.emplace_back(std::move(name), input.substr(nl + 1, cut == std::string_view::npos
                                                                      ? cut
                                                                      : cut - nl - 1));
  }
  return out;
}

/// Runs `body`; a recforge::Error is the expected outcome for bad input and is swallowed (shown
/// on stderr when RECFORGE_FUZZ_VERBOSE is set, to check what the seed inputs reach).
template <typename F>
void expect_user_errors_only(F&& body) {
  try {
    body();
  } catch (const recforge::Error& e) {
    static const bool verbose = std::getenv("RECFORGE_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "recforge::Error: %s\n", e.what());
  }
}

}  // namespace recforge::fuzz
