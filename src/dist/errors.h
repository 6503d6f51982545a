#pragma once
/// @file errors.h
/// Errors of a distributed run: those every rank raises together, and those of one rank.

#include <fmt/format.h>

#include <string>
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

class Comm;

/// Every rank learns whether an error happened on any rank (`error` is this rank's message, empty
/// when none): returns when none did; otherwise every rank throws the same CollectiveError, the
/// message itself when every rank had the same one (a missing file every rank misses), else the
/// first failing rank's message (by rank order) prefixed with "process R of P: ". A collective.
void agree(const Comm& comm, const std::string& error);

}  // namespace recforge::dist
