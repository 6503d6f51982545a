#pragma once
/// @file npy.h
/// NumPy `.npy` files (format 1.0): float32 C-order 2-D matrices, and 1-D int64 / int32 vectors
/// (CSR offsets and indices) — what `numpy.load` reads directly.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace recforge {

/// The values of a Matrix: a float array with the part of std::vector<float>'s interface that the
/// code base uses, holding either its own std::vector<float> or a view of read-only memory that
/// others own (a read-only mapping of an export's .npy file, kept alive by `keep`, shared by
/// every copy of the store). Reading never copies. Every non-const access to a view (data(),
/// operator[], begin(), resize(), ...) first copies the values into an owned vector and drops
/// the view (copy-on-write), so no code can write into a mapping and nothing depends on who
/// writes. Unlike a vector's, a view's non-const accessors modify the store (they may copy it):
/// threads that share a store read it through const access only (as the recommend library and
/// the models' const methods do); concurrent const use is safe.
class FloatStore {
 public:
  using value_type = float;
  using size_type = size_t;
  using difference_type = std::ptrdiff_t;
  using reference = float&;
  using const_reference = const float&;
  using pointer = float*;
  using const_pointer = const float*;
  using iterator = float*;
  using const_iterator = const float*;

  FloatStore() = default;
  FloatStore(std::vector<float> v) : vec_(std::move(v)) {}  // NOLINT: implicit, like a vector
  FloatStore(std::initializer_list<float> v) : vec_(v) {}
  explicit FloatStore(size_t n, float value = 0.f) : vec_(n, value) {}

  /// A view of `n` floats at `p`, read-only, valid while `keep` lives (it is shared by copies).
  static FloatStore view(std::shared_ptr<const void> keep, const float* p, size_t n) {
    FloatStore s;
    if (n == 0) return s;  // nothing to view: an empty owned store
    if (!keep) return FloatStore(std::vector<float>(p, p + n));  // nobody keeps it: copy
    s.keep_ = std::move(keep);
    s.view_ = p;
    s.view_n_ = n;
    return s;
  }

  /// True while the values are a view of memory that the store does not own.
  bool is_view() const { return keep_ != nullptr; }
  /// What keeps the viewed memory alive (nullptr for an owned vector).
  const std::shared_ptr<const void>& keeper() const { return keep_; }

  const float* data() const { return keep_ ? view_ : vec_.data(); }
  float* data() { return own().data(); }
  size_t size() const { return keep_ ? view_n_ : vec_.size(); }
  bool empty() const { return size() == 0; }

  const float& operator[](size_t i) const { return data()[i]; }
  float& operator[](size_t i) { return own()[i]; }

  const float& front() const { return data()[0]; }
  const float& back() const { return data()[size() - 1]; }
  float& front() { return own().front(); }
  float& back() { return own().back(); }

  const float* begin() const { return data(); }
  const float* end() const { return data() + size(); }
  const float* cbegin() const { return begin(); }
  const float* cend() const { return end(); }
  float* begin() { return own().data(); }
  float* end() {
    std::vector<float>& o = own();
    return o.data() + o.size();
  }

  void resize(size_t n) { own().resize(n); }
  void resize(size_t n, float value) { own().resize(n, value); }
  void assign(size_t n, float value) { drop_view().assign(n, value); }
  template <typename It>
  void assign(It first, It last) {
    std::vector<float> v(first, last);  // `first` may point into this store
    drop_view() = std::move(v);
  }
  void reserve(size_t n) { own().reserve(n); }
  void clear() { drop_view().clear(); }
  void push_back(float v) { own().push_back(v); }
  /// Inserts [first, last) before `pos` (a pointer into this store); returns the first inserted.
  template <typename It>
  float* insert(const float* pos, It first, It last) {
    const auto at = pos - data();
    std::vector<float> v(first, last);  // the range may lie in this store
    std::vector<float>& o = own();
    return o.data() + (o.insert(o.begin() + at, v.begin(), v.end()) - o.begin());
  }

  /// The values as a vector of their own (a copy).
  std::vector<float> to_vector() const { return std::vector<float>(begin(), end()); }
  /// The values as a vector, moved out when owned, copied from a view.
  std::vector<float> take() && {
    std::vector<float> v = keep_ ? to_vector() : std::move(vec_);
    *this = FloatStore();
    return v;
  }

  friend bool operator==(const FloatStore& a, const FloatStore& b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
  }
  friend bool operator!=(const FloatStore& a, const FloatStore& b) { return !(a == b); }

 private:
  /// The owned vector, holding the viewed values first when it was a view.
  std::vector<float>& own() {
    if (keep_) {
      vec_.assign(view_, view_ + view_n_);
      release_view();
    }
    return vec_;
  }
  /// The owned vector, the view dropped without copying (its values are about to be replaced).
  std::vector<float>& drop_view() {
    if (keep_) {
      vec_.clear();
      release_view();
    }
    return vec_;
  }
  void release_view() {
    keep_.reset();
    view_ = nullptr;
    view_n_ = 0;
  }

  std::vector<float> vec_;            // the values, when owned
  std::shared_ptr<const void> keep_;  // the owner of the viewed memory, when a view
  const float* view_ = nullptr;       // the viewed values
  size_t view_n_ = 0;
};

/// A 2-D float32 matrix, row-major.
struct Matrix {
  int64_t rows = 0;  ///< number of rows
  int64_t cols = 0;  ///< number of columns
  FloatStore data;   ///< rows × cols values, row-major (owned, or a read-only mapping)
  /// Pointer to row r (copies a mapped store first: see FloatStore).
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

/// Writes a 1-D `<f4` array of shape (n,), atomically. Throws recforge::Error on failure.
void write_npy(const std::string& path, const std::vector<float>& v);

/// Reads a 1-D `<i8` `.npy` file; errors as read_npy.
std::vector<int64_t> read_npy_i64(const std::string& path);

/// Reads a 1-D `<i4` `.npy` file; errors as read_npy.
std::vector<int32_t> read_npy_i32(const std::string& path);

/// The same three from the bytes of a whole `.npy` file already in memory (a reader that hashes
/// a file parses the very bytes it hashed); `name` is the file named in errors.
Matrix parse_npy(std::string_view bytes, const std::string& name);
/// The same as parse_npy, but the matrix views the data part of `bytes` without copying when it
/// is aligned for float (FloatStore::view, kept alive by `keep`, which must own `bytes`); when
/// it is not (a header not padded as format 1.0 prescribes), the values are copied.
Matrix parse_npy_view(std::string_view bytes, std::shared_ptr<const void> keep,
                      const std::string& name);
/// 1-D `<i8` from bytes; errors as read_npy.
std::vector<int64_t> parse_npy_i64(std::string_view bytes, const std::string& name);
/// 1-D `<i4` from bytes; errors as read_npy.
std::vector<int32_t> parse_npy_i32(std::string_view bytes, const std::string& name);
/// 1-D `<f4` from bytes; errors as read_npy.
std::vector<float> parse_npy_f32_vector(std::string_view bytes, const std::string& name);

/// Throws recforge::Error naming `name`, the row and the column of the first NaN or infinity in
/// `m`: factors that are not finite give scores of nonsense and are never served or exported.
void check_finite(const Matrix& m, const std::string& name);

}  // namespace recforge
