#pragma once
/// @file npy.h
/// NumPy `.npy` files (format 1.0): float32 C-order 2-D matrices, and 1-D int64 / int32 vectors
/// (CSR offsets and indices) — what `numpy.load` reads directly.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace recforge {

/// A 2-D float32 matrix, row-major.
struct Matrix {
  int64_t rows = 0;         ///< number of rows
  int64_t cols = 0;         ///< number of columns
  std::vector<float> data;  ///< rows × cols values, row-major
  /// Pointer to row r.
  float* row(int64_t r) { return data.data() + r * cols; }
  /// Pointer to row r.
  const float* row(int64_t r) const { return data.data() + r * cols; }
};

/// Writes `m` as `<f4`, C order, shape (rows, cols), atomically (temporary file + rename).
/// Throws recforge::Error naming the path on failure.
void write_npy(const std::string& path, const Matrix& m);

/// Reads a 2-D `<f4` C-order `.npy` file. Throws recforge::Error naming the file and what is
/// wrong (missing, not .npy, other dtype, Fortran order, not 2-D, truncated).
Matrix read_npy(const std::string& path);

/// Writes a 1-D `<i8` array of shape (n,), atomically. Throws recforge::Error on failure.
void write_npy(const std::string& path, const std::vector<int64_t>& v);

/// Writes a 1-D `<i4` array of shape (n,), atomically. Throws recforge::Error on failure.
void write_npy(const std::string& path, const std::vector<int32_t>& v);

/// Reads a 1-D `<i8` `.npy` file; errors as read_npy.
std::vector<int64_t> read_npy_i64(const std::string& path);

/// Reads a 1-D `<i4` `.npy` file; errors as read_npy.
std::vector<int32_t> read_npy_i32(const std::string& path);

/// The same three from the bytes of a whole `.npy` file already in memory (a reader that hashes
/// a file parses the very bytes it hashed); `name` is the file named in errors.
Matrix parse_npy(std::string_view bytes, const std::string& name);
/// 1-D `<i8` from bytes; errors as read_npy.
std::vector<int64_t> parse_npy_i64(std::string_view bytes, const std::string& name);
/// 1-D `<i4` from bytes; errors as read_npy.
std::vector<int32_t> parse_npy_i32(std::string_view bytes, const std::string& name);

/// Throws recforge::Error naming `name`, the row and the column of the first NaN or infinity in
/// `m`: factors that are not finite give scores of nonsense and are never served or exported.
void check_finite(const Matrix& m, const std::string& name);

}  // namespace recforge
