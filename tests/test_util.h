#pragma once
// Helpers shared by the tests: temporary directories, file writing, the shared data location.

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace recforge::test {

/// Whether this build runs under AddressSanitizer (the `debug` preset), whose shadow memory
/// reserves terabytes of address space (so `ulimit -v` cannot apply) and whose leak check cannot
/// run under ptrace (strace).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif

/// A fresh temporary directory, removed when the object goes out of scope.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("recforge-test-" + std::to_string(rd()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  /// Path of `name` inside the directory.
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  /// The directory itself.
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

/// Writes `text` to `path`, returning the path.
inline std::string write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

/// Reads a whole file.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// `../shared/data/<rel>` beside the repository, or "" when absent.
inline std::string shared_data(const std::string& rel) {
  const std::string p = std::string(RECFORGE_SHARED_DIR) + "/data/" + rel;
  return std::filesystem::exists(p) ? p : std::string();
}

/// What one run of the recforge binary printed (stdout and stderr together) and its exit status
/// (-1 when it did not exit normally).
struct Result {
  int rc = -1;
  std::string out;
};

/// Runs the shell command `cmd` (stdout and stderr together).
inline Result run_shell(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  Result r;
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

/// Runs `recforge ARGS` (the binary of this build) in directory `cwd`, with `env`
/// ("NAME=value ..." or "") in its environment.
inline Result run_recforge(const std::string& cwd, const std::string& args,
                           const std::string& env = "") {
  return run_shell("cd '" + cwd + "' && env " + env + " '" + RECFORGE_BINARY + "' " + args);
}

}  // namespace recforge::test

/// Skips the test with a clear message when ../shared/data/<rel> is absent.
#define RF_REQUIRE_SHARED(var, rel)                                                         \
  const std::string var = ::recforge::test::shared_data(rel);                               \
  if (var.empty())                                                                          \
    GTEST_SKIP() << "../shared/data/" << (rel)                                              \
                 << " is absent beside the repository; this test needs the shared data set"
