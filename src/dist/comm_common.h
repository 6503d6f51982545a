#pragma once
/// @file comm_common.h
/// What the two dist::Comm layers share (comm.cpp over MPI, comm_nompi.cpp without): the piece
/// size of large messages and the check of a block's size. comm_common.cpp also defines the
/// launcher queries, world() and set_max_piece_bytes of comm.h for both.

#include <cstddef>
#include <cstdint>

namespace recforge::dist::detail {

/// The largest piece of one message (set_max_piece_bytes may lower it, in tests).
constexpr int64_t kMaxPieceBytes = int64_t{1} << 30;

/// The current piece size in bytes.
int64_t piece_bytes();

/// bytes / elem, asserting that a block holds a whole number of elements.
int64_t whole_elements(int64_t bytes, size_t elem);

/// Copies `bytes` bytes (none when bytes <= 0).
void copy_bytes(void* dst, const void* src, int64_t bytes);

}  // namespace recforge::dist::detail
