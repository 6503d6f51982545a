// FloatStore, the values of a Matrix: a view of memory that others own is read in place, shared
// by copies, and copied into an owned vector before any write; .npy bytes are viewed when their
// data part is aligned for float and copied when not.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/npy.h"
#include "test_util.h"

namespace recforge {
namespace {

/// A view of `src`'s values, kept alive by `src`.
FloatStore view_of(const std::shared_ptr<const std::vector<float>>& src) {
  return FloatStore::view(src, src->data(), src->size());
}

TEST(FloatStore, AViewIsReadInPlaceSharedByCopiesAndCopiedBeforeEveryWrite) {
  const auto src = std::make_shared<const std::vector<float>>(std::vector<float>{1, 2, 3, 4});
  const FloatStore v = view_of(src);
  EXPECT_TRUE(v.is_view());
  EXPECT_EQ(v.data(), src->data());
  EXPECT_EQ(v.size(), 4u);
  EXPECT_EQ(v[2], 3.f);
  EXPECT_EQ(v, FloatStore({1, 2, 3, 4}));
  EXPECT_NE(v, FloatStore({1, 2, 3, 5}));
  EXPECT_EQ(src.use_count(), 2);  // the source and the view
  const FloatStore c = v;         // a copy shares the viewed memory
  EXPECT_EQ(c.data(), src->data());
  EXPECT_EQ(src.use_count(), 3);

  FloatStore w = v;
  w[1] = 20;  // non-const operator[]: copies, then writes
  EXPECT_FALSE(w.is_view());
  EXPECT_NE(static_cast<const FloatStore&>(w).data(), src->data());
  EXPECT_EQ(w, FloatStore({1, 20, 3, 4}));
  EXPECT_EQ(*src, (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(src.use_count(), 3);  // w let go of the source

  FloatStore d = v;
  d.data()[3] = 40;  // non-const data()
  EXPECT_EQ(d, FloatStore({1, 2, 3, 40}));
  FloatStore a = v;
  a.assign(2, 7.f);  // replaces the values: no copy needed, the view is dropped
  EXPECT_EQ(a, FloatStore({7, 7}));
  FloatStore s = v;
  s.assign(v.begin() + 1, v.end());
  EXPECT_EQ(s, FloatStore({2, 3, 4}));
  FloatStore self = v;
  self.insert(self.begin() + 1, v.begin(), v.begin() + 2);  // a range of the viewed memory
  EXPECT_EQ(self, FloatStore({1, 1, 2, 2, 3, 4}));
  FloatStore t = v;
  const std::vector<float> taken = std::move(t).take();  // from a view: a copy
  EXPECT_EQ(taken, (std::vector<float>{1, 2, 3, 4}));
  EXPECT_TRUE(t.empty());
  FloatStore owned(std::vector<float>{5, 6});
  const float* p = static_cast<const FloatStore&>(owned).data();
  const std::vector<float> moved = std::move(owned).take();  // owned: moved out
  EXPECT_EQ(moved.data(), p);

  EXPECT_EQ(*src, (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(v, FloatStore({1, 2, 3, 4}));
  EXPECT_TRUE(v.is_view());
  // A moved view stays a view; the moved-from store is empty.
  FloatStore from = v;
  const FloatStore to = std::move(from);
  EXPECT_TRUE(to.is_view());
  EXPECT_EQ(to.data(), src->data());
  EXPECT_TRUE(from.empty());  // NOLINT(bugprone-use-after-move): moved-from state is specified
  EXPECT_FALSE(from.is_view());
}

TEST(Npy, ParseViewViewsAlignedDataInPlaceAndCopiesMisalignedData) {
  test::TempDir t;
  Matrix m;
  m.rows = 3;
  m.cols = 2;
  m.data = std::vector<float>{0.5f, -1, 2, 3.25f, 4, 5};
  write_npy(t.file("m.npy"), m);
  const std::string file = test::read_file(t.file("m.npy"));
  ASSERT_EQ(file.size(), 128u + 6 * sizeof(float));  // format 1.0: the header padded to 64

  // Aligned (a heap buffer is): viewed at the data offset, kept alive by the owner.
  auto aligned = std::make_shared<const std::string>(file);
  const Matrix v = parse_npy_view(*aligned, aligned, "m.npy");
  EXPECT_TRUE(v.data.is_view());
  EXPECT_EQ(reinterpret_cast<const char*>(v.data.data()), aligned->data() + 128);
  EXPECT_EQ(v.rows, 3);
  EXPECT_EQ(v.cols, 2);
  EXPECT_EQ(v.data, m.data);

  // The same bytes one byte off alignment (as a header not padded to a multiple of 4 would put
  // them): copied, with the same values.
  auto shifted = std::make_shared<std::string>(" " + file);
  ASSERT_NE(reinterpret_cast<uintptr_t>(shifted->data() + 1 + 128) % alignof(float), 0u);
  const Matrix c = parse_npy_view(std::string_view(*shifted).substr(1), shifted, "m.npy");
  EXPECT_FALSE(c.data.is_view());
  EXPECT_EQ(c.data, m.data);

  // Damage is refused as by parse_npy, naming the file.
  try {
    parse_npy_view(std::string_view(file).substr(0, file.size() - 4), aligned, "x/m.npy");
    ADD_FAILURE() << "a truncated file was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "x/m.npy: truncated or padded: shape (3, 2) needs 24 data bytes, the file has 20");
  }
}

}  // namespace
}  // namespace recforge
