#pragma once
/// @file errors.h
/// Errors of a distributed run: those every rank raises together, and those of one rank.

#include <fmt/format.h>

#include <utility>

#include "core/error.h"

namespace recforge::dist {

/// An error that every rank of the job raises together (a bad config, a check decided by a
/// collective): the CLI prints it once, from rank 0, and every rank exits with status 1. Any
/// other error is one rank's: that rank prints it, naming itself, and ends the job (abort).
struct CollectiveError : Error {
  using Error::Error;
};

/// Throws a CollectiveError with a formatted message (as `fail` throws an Error): only where
/// every rank reaches the same decision, such as after a collective.
template <typename... Args>
[[noreturn]] void fail_collective(fmt::format_string<Args...> format, Args&&... args) {
  throw CollectiveError(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace recforge::dist
