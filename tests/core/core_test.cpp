#include <gtest/gtest.h>

#include <filesystem>

#include "core/context.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/hash.h"
#include "test_util.h"

namespace recforge {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

TEST(Hash, KnownSha256Vectors) {
  Sha256 empty;
  EXPECT_EQ(empty.hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 abc;
  abc.update("abc");
  EXPECT_EQ(abc.hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  TempDir t;
  test::write_file(t.file("abc"), "abc");
  EXPECT_EQ(sha256_file(t.file("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_THROW(sha256_file(t.file("missing")), Error);
}

TEST(Device, ParsesTheAcceptedSpellings) {
  EXPECT_TRUE(parse_device("auto").is_auto);
  EXPECT_EQ(parse_device("cpu").device.kind, Device::Kind::kCpu);
  EXPECT_EQ(parse_device("cuda").device.name(), "cuda:0");
  EXPECT_EQ(parse_device("cuda:3").device.name(), "cuda:3");
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "CUDA", "cuda:-1"}) {
    try {
      parse_device(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()),
                std::string("device \"") + bad + "\": expected auto, cpu, cuda or cuda:N");
    }
  }
}

TEST(Context, AutoFallsBackToCpuWithoutAGpu) {
  const Context ctx = Context::create("auto", 2);
  EXPECT_EQ(ctx.threads(), 2);
  if (backend::cuda_device_count() == 0) EXPECT_EQ(ctx.device().name(), "cpu");
  else EXPECT_EQ(ctx.device().name(), "cuda:0");
}

TEST(Context, AskingForAMissingGpuIsOneClearSentence) {
  if (backend::cuda_device_count() > 0) GTEST_SKIP() << "a GPU answers here; this checks the no-GPU path";
  try {
    Context::create("cuda:0", 1);
    FAIL() << "cuda:0 accepted without a GPU";
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (backend::cuda_compiled())
      EXPECT_EQ(msg, "device \"cuda:0\": 0 CUDA device(s) answer on this machine");
    else
      EXPECT_NE(msg.find("built without it; rebuild with"), std::string::npos) << msg;
  }
}

TEST(FileAtomic, WritesWholeFileAndLeavesNoTemporaries) {
  TempDir t;
  write_file_atomic(t.file("a.txt"), "hello");
  EXPECT_EQ(test::read_file(t.file("a.txt")), "hello");
  write_file_atomic(t.file("a.txt"), "bye");
  EXPECT_EQ(test::read_file(t.file("a.txt")), "bye");
  int files = 0;
  for (auto& e : fs::directory_iterator(t.str())) (void)e, ++files;
  EXPECT_EQ(files, 1);
  EXPECT_THROW(write_file_atomic(t.file("no/such/dir/x"), "x"), Error);
}

TEST(StagedDir, AppearsOnlyOnCommitAndVanishesOnError) {
  TempDir t;
  const std::string root = t.file("runs");
  {
    StagedDir d(root, "exp", "suffix");
    write_file_atomic(d.file("x"), "1");
    EXPECT_FALSE(fs::exists(root + "/exp"));
    // Destroyed without commit: as if an error was thrown.
  }
  EXPECT_FALSE(fs::exists(root + "/exp"));
  EXPECT_TRUE(fs::is_empty(root));
  {
    StagedDir d(root, "exp", "suffix");
    write_file_atomic(d.file("x"), "1");
    EXPECT_EQ(d.commit(), root + "/exp");
  }
  EXPECT_EQ(test::read_file(root + "/exp/x"), "1");
  {
    StagedDir d(root, "exp", "suffix");
    EXPECT_EQ(d.commit(), root + "/exp.1");
  }
  {
    StagedDir d(root, "exp", "overwrite");
    write_file_atomic(d.file("x"), "2");
    EXPECT_EQ(d.commit(), root + "/exp");
  }
  EXPECT_EQ(test::read_file(root + "/exp/x"), "2");
  EXPECT_THROW(StagedDir(root, "exp", "error"), Error);
  EXPECT_THROW(StagedDir(root, "../evil", "suffix"), Error);
  // Only the finished runs remain: no staging or old directories.
  int entries = 0;
  for (auto& e : fs::directory_iterator(root)) (void)e, ++entries;
  EXPECT_EQ(entries, 2);
}

}  // namespace
}  // namespace recforge
