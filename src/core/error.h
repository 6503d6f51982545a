#pragma once
/// @file error.h
/// The two kinds of error in recforge: user mistakes (`recforge::Error`, a message that names
/// the input and what was expected) and internal/API failures (`recforge::InternalError`).

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace recforge {

/// A mistake in the user's input (config, data file, command line). The message is one sentence
/// that names the file:line:column or key path and what was expected; the CLI prints it as is.
class Error : public std::runtime_error {
 public:
  /// Creates an error with a complete, user-facing message.
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// A failure that is not the user's fault (CUDA/cuBLAS errors, broken invariants).
class InternalError : public std::runtime_error {
 public:
  /// Creates an error; `where` is "file:line" of the failing call.
  InternalError(const std::string& message, const char* file, int line)
      : std::runtime_error(fmt::format("{} ({}:{})", message, file, line)) {}
};

/// Throws `recforge::Error` with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace recforge

/// Checks an internal invariant; throws InternalError with file:line when it does not hold.
#define RF_ASSERT(cond, msg)                                                     \
  do {                                                                           \
    if (!(cond)) throw ::recforge::InternalError((msg), __FILE__, __LINE__);     \
  } while (0)
