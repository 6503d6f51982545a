#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <vector>

#include "core/context.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/hash.h"
#include "core/secret.h"
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

// The sampled digest equals SHA-256 of the size (8 bytes, native order) followed by the
// sampled blocks, computed here from the bytes: the whole file when small; else blocks at
// b * (n - block) / (blocks - 1). A change inside a block or of the size changes it; one between
// blocks does not (its stated limit).
TEST(Hash, SampledFileDigestHashesTheSizeAndEvenlySpacedBlocks) {
  TempDir t;
  auto expected = [](const std::string& bytes, int blocks, int64_t block) {
    Sha256 h;
    const int64_t n = static_cast<int64_t>(bytes.size());
    h.update(&n, sizeof n);
    if (n <= blocks * block) {
      h.update(bytes.data(), bytes.size());
    } else {
      for (int b = 0; b < blocks; ++b)
        h.update(bytes.data() + b * (n - block) / (blocks - 1), static_cast<size_t>(block));
    }
    return h.hex();
  };
  std::string bytes(1000, 'a');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>('a' + i % 26);
  test::write_file(t.file("f"), bytes);
  int64_t size = 0;
  const std::string d = sha256_file_sample(t.file("f"), &size, 4, 10);  // blocks at 0, 330, 660, 990
  EXPECT_EQ(size, 1000);
  EXPECT_EQ(d, expected(bytes, 4, 10));
  std::string edited = bytes;
  edited[335] = '#';  // inside the second block
  test::write_file(t.file("f"), edited);
  EXPECT_NE(sha256_file_sample(t.file("f"), nullptr, 4, 10), d);
  edited = bytes;
  edited[999] = '#';  // the last byte
  test::write_file(t.file("f"), edited);
  EXPECT_NE(sha256_file_sample(t.file("f"), nullptr, 4, 10), d);
  edited = bytes;
  edited[100] = '#';  // between blocks: not seen
  test::write_file(t.file("f"), edited);
  EXPECT_EQ(sha256_file_sample(t.file("f"), nullptr, 4, 10), d);
  test::write_file(t.file("f"), bytes + "x");  // one byte longer
  EXPECT_NE(sha256_file_sample(t.file("f"), nullptr, 4, 10), d);
  // At most blocks * block bytes: the whole file, so any change is seen.
  test::write_file(t.file("g"), bytes.substr(0, 40));
  EXPECT_EQ(sha256_file_sample(t.file("g"), &size, 4, 10), expected(bytes.substr(0, 40), 4, 10));
  EXPECT_EQ(size, 40);
  test::write_file(t.file("g"), "");
  EXPECT_EQ(sha256_file_sample(t.file("g"), &size, 4, 10), expected("", 4, 10));
  EXPECT_EQ(size, 0);
  EXPECT_THROW(sha256_file_sample(t.file("missing")), Error);
}

TEST(Hash, HmacSha256MatchesRfc4231) {
  // RFC 4231 test cases 1 and 2.
  EXPECT_EQ(hmac_sha256_hex(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

// The 32-byte digest is the hex digest's bytes (RFC 4231 case 2: first byte 0x5b, last 0x43),
// its hex parses back, anything but 64 lowercase hex characters does not, and digests order
// as their hex texts do (files of sorted hashes are read into sorted vectors).
TEST(Hash, DigestBytesAreTheHexDigestsBytesAndOrderAsTheirHex) {
  const Digest d = hmac_sha256("Jefe", "what do ya want for nothing?");
  EXPECT_EQ(d.front(), 0x5b);
  EXPECT_EQ(d.back(), 0x43);
  EXPECT_EQ(to_hex(d), hmac_sha256_hex("Jefe", "what do ya want for nothing?"));
  EXPECT_EQ(parse_hex_digest(to_hex(d)), d);
  const std::string hex = to_hex(d);
  std::string upper = hex;
  upper[0] = 'B';  // "5b..." with an upper-case letter
  upper[1] = 'B';
  for (const std::string& bad : {hex.substr(1), hex + "0", upper, std::string(63, '0') + "g", std::string()})
    EXPECT_FALSE(parse_hex_digest(bad).has_value()) << bad;
  std::vector<std::string> texts;
  std::vector<Digest> digests;
  for (int i = 0; i < 200; ++i) {
    texts.push_back(hmac_sha256_hex("k", std::to_string(i)));
    digests.push_back(hmac_sha256("k", std::to_string(i)));
  }
  std::sort(texts.begin(), texts.end());
  std::sort(digests.begin(), digests.end());
  for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(to_hex(digests[i]), texts[i]) << i;
}

TEST(Hash, StableHash64IsFnv1aThenTheSplitmixFinaliser) {
  // Which users eval.validation_sample scores depends on these values: they must never change.
  // Expected values from an independent implementation (Python integers: FNV-1a 64 with offset
  // basis 0xcbf29ce484222325 and prime 0x100000001b3, then splitmix64's finaliser).
  EXPECT_EQ(stable_hash64(""), 0xf52a15e9a9b5e89bull);
  EXPECT_EQ(stable_hash64("a"), 0x02c0bdbf481420f8ull);
  EXPECT_EQ(stable_hash64("user 42"), 0x56560ae22a6977a6ull);
  EXPECT_EQ(stable_hash64(std::string("recforge eval.validation_sample\x1f" "17")),
            0x5ab61417ffea5f4bull);
  // Bytes above 0x7f are taken unsigned (a sign-extended char would change the value).
  EXPECT_EQ(stable_hash64("\xe9"), 0x5ad2f93fc008067dull);
}

TEST(SecretKey, ReadsFileOrEnvironmentAndNeverPrintsTheKey) {
  TempDir t;
  const std::string key = "0123456789abcdef-secret-key";
  test::write_file(t.file("key"), key + "\n");
  const SecretKey k = SecretKey::from_file(t.file("key"), "export.pseudonym_key_file");
  EXPECT_EQ(k.bytes(), key);  // the trailing newline is not part of it
  EXPECT_EQ(k.pseudonym("user-1"), hmac_sha256_hex(key, "user-1"));
  EXPECT_EQ(k.check_value(), hmac_sha256_hex(key, "recforge key check").substr(0, 16));
  ::setenv("RECFORGE_TEST_KEY", key.c_str(), 1);
  EXPECT_EQ(SecretKey::from_env("RECFORGE_TEST_KEY", "export.pseudonym_key_env").bytes(), key);
  // Too short: the message names the file and the length, never the bytes.
  const std::string short_key = "tiny-secret";
  test::write_file(t.file("short"), short_key);
  ::setenv("RECFORGE_TEST_KEY", short_key.c_str(), 1);
  for (const auto& load : std::vector<std::function<void()>>{
           [&] { SecretKey::from_file(t.file("short"), "export.pseudonym_key_file"); },
           [&] { SecretKey::from_env("RECFORGE_TEST_KEY", "export.pseudonym_key_env"); }}) {
    try {
      load();
      ADD_FAILURE() << "a short key was accepted";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("11 byte(s) long, expected at least 16"), std::string::npos) << m;
      EXPECT_EQ(m.find(short_key), std::string::npos) << m;
    }
  }
  ::unsetenv("RECFORGE_TEST_KEY");
  EXPECT_THROW(SecretKey::from_env("RECFORGE_TEST_KEY", "x"), Error);
  EXPECT_THROW(SecretKey::from_file(t.file("missing"), "x"), Error);
  EXPECT_THROW(SecretKey::from_file(t.str(), "x"), Error);  // a directory
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

TEST(FileAtomic, SeveralFilesAreAllReplacedOrNoneIs) {
  TempDir t;
  write_file_atomic(t.file("a.csv"), "old a");
  // The second file cannot be written: the first keeps its old contents, no temporary is left.
  EXPECT_THROW(write_files_atomic({{t.file("a.csv"), "new a"}, {t.file("no/dir/b.csv"), "b"}}),
               Error);
  EXPECT_EQ(test::read_file(t.file("a.csv")), "old a");
  int files = 0;
  for (auto& e : fs::directory_iterator(t.str())) (void)e, ++files;
  EXPECT_EQ(files, 1);
  write_files_atomic({{t.file("a.csv"), "new a"}, {t.file("b.csv"), "b"}});
  EXPECT_EQ(test::read_file(t.file("a.csv")), "new a");
  EXPECT_EQ(test::read_file(t.file("b.csv")), "b");
}

// The directories an unfinished output created are removed when it is abandoned, deepest first
// and each only while empty; those that existed before, and everything once kept, stay.
TEST(MadeDirs, RemovesOnlyWhatItCreatedAndOnlyWhileEmpty) {
  TempDir t;
  fs::create_directories(t.file("a"));
  write_file_atomic(t.file("a/keep.txt"), "k");
  std::error_code ec;
  {
    MadeDirs made;
    ASSERT_TRUE(made.create(t.file("a/b/c/d"), ec)) << ec.message();
    EXPECT_TRUE(fs::is_directory(t.file("a/b/c/d")));
  }
  EXPECT_FALSE(fs::exists(t.file("a/b")));
  EXPECT_EQ(test::read_file(t.file("a/keep.txt")), "k");
  {
    MadeDirs made;
    ASSERT_TRUE(made.create(t.file("a/b/c"), ec)) << ec.message();
    write_file_atomic(t.file("a/b/other.txt"), "o");  // written there meanwhile by someone else
  }
  EXPECT_FALSE(fs::exists(t.file("a/b/c")));
  EXPECT_EQ(test::read_file(t.file("a/b/other.txt")), "o");  // b is not empty: it stays
  {
    MadeDirs made;
    ASSERT_TRUE(made.create(t.file("x/y"), ec)) << ec.message();
    made.keep();
  }
  EXPECT_TRUE(fs::is_directory(t.file("x/y")));
  // Below a file: the error, and the file untouched.
  write_file_atomic(t.file("file"), "f");
  {
    MadeDirs made;
    EXPECT_FALSE(made.create(t.file("file/z"), ec));
    EXPECT_TRUE(ec);
  }
  EXPECT_EQ(test::read_file(t.file("file")), "f");
}

TEST(StagedDir, AppearsOnlyOnCommitAndVanishesOnError) {
  TempDir t;
  const std::string root = t.file("runs");
  {
    StagedDir d(root, "exp", "suffix");
    write_file_atomic(d.file("x"), "1");
    EXPECT_EQ(d.final_path(), root + "/exp");
    EXPECT_FALSE(fs::exists(root + "/exp"));
    // Destroyed without commit: as if an error was thrown.
  }
  EXPECT_FALSE(fs::exists(root + "/exp"));
  EXPECT_FALSE(fs::exists(root));  // it created the runs directory: removed with the staging one
  {
    StagedDir d(root, "exp", "suffix");
    write_file_atomic(d.file("x"), "1");
    write_file_atomic(d.file("run.json"), R"({"recforge_version": "0", "status": "complete"})");
    EXPECT_EQ(d.commit(), root + "/exp");
  }
  EXPECT_EQ(test::read_file(root + "/exp/x"), "1");
  {
    StagedDir d(root, "exp", "suffix");
    EXPECT_EQ(d.commit(), root + "/exp.1");
  }
  {  // exp is a run (it has recforge's run.json), so it may be replaced
    StagedDir d(root, "exp", "overwrite");
    write_file_atomic(d.file("x"), "2");
    EXPECT_EQ(d.commit(), root + "/exp");
  }
  EXPECT_EQ(test::read_file(root + "/exp/x"), "2");
  EXPECT_FALSE(fs::exists(root + "/exp/run.json"));
  // exp is no longer a run: overwrite refuses it before anything is written, naming it.
  try {
    StagedDir d(root, "exp", "overwrite");
    ADD_FAILURE() << "overwrote a directory that is not a recforge run";
  } catch (const Error& e) {
    const std::string expected = root + "/exp: exists and is not a recforge run directory";
    EXPECT_EQ(std::string(e.what()).rfind(expected, 0), 0u) << e.what();
  }
  EXPECT_EQ(test::read_file(root + "/exp/x"), "2");
  EXPECT_THROW(StagedDir(root, "exp", "error"), Error);
  EXPECT_THROW(StagedDir(root, "../evil", "suffix"), Error);
  // The final name is claimed when the object is created: a second one gets the next name,
  // "error" fails at once, and each lands where it said, whichever commits first.
  {
    StagedDir a(root, "new", "suffix");
    EXPECT_EQ(a.final_path(), root + "/new");
    StagedDir b(root, "new", "suffix");
    EXPECT_EQ(b.final_path(), root + "/new.1");
    EXPECT_THROW(StagedDir(root, "new", "error"), Error);
    EXPECT_EQ(b.commit(), root + "/new.1");
    EXPECT_EQ(a.commit(), root + "/new");
  }
  EXPECT_TRUE(fs::is_empty(root + "/new"));
  fs::remove(root + "/new");
  fs::remove(root + "/new.1");
  // Only the finished runs remain: no staging or old directories.
  int entries = 0;
  for (auto& e : fs::directory_iterator(root)) (void)e, ++entries;
  EXPECT_EQ(entries, 2);
}

TEST(InterruptCleanup, RemovesRegisteredPathsOnlyAsAsked) {
  TempDir t;
  fs::create_directories(t.file("tree/sub"));
  test::write_file(t.file("tree/sub/f"), "x");
  fs::create_directories(t.file("full"));
  test::write_file(t.file("full/f"), "x");
  fs::create_directories(t.file("forgotten"));
  add_interrupt_cleanup(t.file("tree"));
  add_interrupt_cleanup(t.file("full"), false);  // not empty: kept
  add_interrupt_cleanup(t.file("forgotten"));
  EXPECT_TRUE(remove_interrupt_cleanup(t.file("forgotten")));
  EXPECT_FALSE(remove_interrupt_cleanup(t.file("never")));
  run_interrupt_cleanup();
  EXPECT_FALSE(fs::exists(t.file("tree")));
  EXPECT_EQ(test::read_file(t.file("full/f")), "x");
  EXPECT_TRUE(fs::exists(t.file("forgotten")));
  run_interrupt_cleanup();  // the list was emptied
  EXPECT_TRUE(fs::exists(t.file("full/f")));
  // The scoped registration of a temporary file: removed while in scope, forgotten after.
  test::write_file(t.file("tmp"), "x");
  {
    const InterruptCleanup guard(t.file("tmp"));
    run_interrupt_cleanup();
    EXPECT_FALSE(fs::exists(t.file("tmp")));
  }
  test::write_file(t.file("tmp"), "x");
  {
    const InterruptCleanup guard(t.file("tmp"));
  }
  run_interrupt_cleanup();
  EXPECT_TRUE(fs::exists(t.file("tmp")));
}

}  // namespace
}  // namespace recforge
