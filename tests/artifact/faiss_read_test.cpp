// Reading index files: Faiss 1.7.3's read_index leaks everything it allocated when it rejects a
// file, so recforge walks a file's structure before Faiss sees it. Repeated rejected loads must
// not grow the heap, and every malformed file must be a recforge::Error, never a crash.
#include <gtest/gtest.h>
#include <malloc.h>

#include <cstring>

#include "core/error.h"
#include "index/index.h"
#include "index/index_fixtures.h"
#include "test_util.h"

namespace recforge::index {
namespace {

using fixtures::clustered;
using fixtures::gaussian;

/// Bytes the allocator has handed out and not got back (small chunks and mmapped ones).
int64_t heap_in_use() {
  const struct mallinfo2 mi = mallinfo2();
  return static_cast<int64_t>(mi.uordblks + mi.hblkhd);
}

/// The bytes of `index` written by ItemIndex::write.
std::string index_bytes(const ItemIndex& index, const test::TempDir& t) {
  const std::string path = t.file("i.faiss");
  index.write(path);
  return test::read_file(path);
}

/// The error message of from_bytes, or "read".
std::string read_error(const std::string& bytes, Type type) {
  try {
    ItemIndex::from_bytes(bytes, "x.faiss", type, Metric::kInnerProduct);
  } catch (const Error& e) {
    return e.what();
  }
  return "read";
}

TEST(FaissRead, RejectedIndexFilesDoNotGrowTheHeap) {
  // A flat index of 5000 items in 128 dimensions holds 2.56 MB of vectors; Faiss 1.7.3's
  // read_index leaked all of them for each file it rejected (51 MB over the 20 reads below).
  test::TempDir t;
  const Matrix items = gaussian(5000, 128, 3);
  const int64_t vector_bytes = items.rows * items.cols * 4;
  const std::string good = index_bytes(ItemIndex::build(items, Options{}), t);
  ASSERT_EQ(read_error(good, Type::kFlat), "read");
  // Truncated: the vectors are cut short (Faiss resized its buffer to the full length first).
  const std::string truncated = good.substr(0, good.size() - 100);
  // Complete, but the header says one vector more than the file holds.
  std::string miscounted = good;
  const int64_t ntotal = items.rows + 1;
  std::memcpy(miscounted.data() + 8, &ntotal, sizeof ntotal);  // after fourcc and d
  EXPECT_EQ(read_error(truncated, Type::kFlat),
            "x.faiss: not a readable Faiss index (the flat index's vectors claims 640000 "
            "elements, more than the file holds)");
  EXPECT_EQ(read_error(miscounted, Type::kFlat),
            "x.faiss: not a readable Faiss index (a flat index of 5001 vectors of dimension 128 "
            "holds 640000 floats)");
  const int64_t before = heap_in_use();
  for (int i = 0; i < 10; ++i) {
    EXPECT_THROW(ItemIndex::from_bytes(truncated, "x.faiss", Type::kFlat, Metric::kInnerProduct),
                 Error);
    EXPECT_THROW(ItemIndex::from_bytes(miscounted, "x.faiss", Type::kFlat, Metric::kInnerProduct),
                 Error);
  }
  // A single leaked read would add vector_bytes; what the error messages allocate is returned.
  EXPECT_LT(heap_in_use() - before, vector_bytes);
}

TEST(FaissRead, EveryKindReadsBackAndEveryTruncationIsAnError) {
  test::TempDir t;
  const Matrix items = clustered(400, 16, 8, 5);
  const Matrix users = gaussian(10, 16, 6);
  for (Type type : {Type::kFlat, Type::kIvfFlat, Type::kIvfPq, Type::kHnsw}) {
    SCOPED_TRACE(type_name(type));
    Options o;
    o.type = type;
    o.nlist = 8;
    o.pq_m = 4;
    o.pq_nbits = 6;
    o.hnsw_m = 8;
    const ItemIndex built = ItemIndex::build(items, o);
    const std::string bytes = index_bytes(built, t);
    const ItemIndex back = ItemIndex::from_bytes(bytes, "x.faiss", type, Metric::kInnerProduct);
    std::vector<float> s1(50), s2(50);
    std::vector<int64_t> l1(50), l2(50);
    built.search(users.data.data(), 10, 5, s1.data(), l1.data());
    back.search(users.data.data(), 10, 5, s2.data(), l2.data());
    EXPECT_EQ(l1, l2);
    EXPECT_EQ(s1, s2);
    // Cut anywhere (every header field, every vector length, inside the data), and with a byte
    // too many, the file is refused with a recforge::Error before Faiss reads it.
    const int64_t before = heap_in_use();
    for (size_t cut = 0; cut < bytes.size(); cut += std::max<size_t>(1, bytes.size() / 997)) {
      const std::string e = read_error(bytes.substr(0, cut), type);
      EXPECT_EQ(e.rfind("x.faiss: not a readable Faiss index (", 0), 0u) << cut << ": " << e;
    }
    EXPECT_EQ(read_error(bytes + "\n", type),
              "x.faiss: not a readable Faiss index (1 bytes after the end of the index)");
    EXPECT_LT(heap_in_use() - before, static_cast<int64_t>(bytes.size()));
    // The kind the manifest names is checked first.
    const Type other = type == Type::kFlat ? Type::kHnsw : Type::kFlat;
    EXPECT_EQ(read_error(bytes, other), fmt::format("x.faiss: the Faiss index is not of type {} "
                                                    "as the manifest says",
                                                    type_name(other)));
  }
}

}  // namespace
}  // namespace recforge::index
