// privacy.file_mode in core/fs: what recforge creates gets 0600/0700 (owner), 0640/0750 (group)
// or the umask's modes; what already existed is never changed.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "test_util.h"

namespace recforge {
namespace {

using test::TempDir;

mode_t mode_of(const std::string& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

// Sets the umask and the process-wide mode for one test; restores both.
struct Modes {
  mode_t old_umask;
  FileMode old_mode = file_mode();
  Modes(mode_t mask, FileMode m) : old_umask(::umask(mask)) { set_file_mode(m); }
  ~Modes() {
    ::umask(old_umask);
    set_file_mode(old_mode);
  }
};

TEST(FileMode, NewFilesAndDirectoriesGetTheModeAndExistingOnesKeepTheirs) {
  struct Case {
    FileMode mode;
    mode_t mask, file, dir;
  };
  for (const Case c : {Case{FileMode::kOwner, 022, 0600, 0700}, Case{FileMode::kGroup, 022, 0640, 0750},
                       Case{FileMode::kGroup, 077, 0640, 0750},  // granted despite the umask
                       Case{FileMode::kUmask, 022, 0644, 0755}, Case{FileMode::kUmask, 027, 0640, 0750}}) {
    TempDir t;
    ::chmod(t.str().c_str(), 0755);
    const std::string existing = t.file("existing");
    ASSERT_EQ(::mkdir(existing.c_str(), 0755), 0);
    ::chmod(existing.c_str(), 0755);
    const std::string old_log = test::write_file(t.file("old.log"), "earlier\n");
    ::chmod(old_log.c_str(), 0644);
    Modes m(c.mask, c.mode);
    std::error_code ec;
    ASSERT_TRUE(create_directories(existing + "/a/b", ec)) << ec.message();
    EXPECT_EQ(mode_of(existing), 0755u);  // not created here: untouched
    EXPECT_EQ(mode_of(t.str()), 0755u);
    EXPECT_EQ(mode_of(existing + "/a"), c.dir);
    EXPECT_EQ(mode_of(existing + "/a/b"), c.dir);
    ASSERT_TRUE(create_directories(existing + "/a/b", ec));  // again: nothing to do
    write_file_atomic(existing + "/a/b/f.json", "{}\n");
    EXPECT_EQ(mode_of(existing + "/a/b/f.json"), c.file);
    ASSERT_EQ(make_directory(existing + "/d"), 0);
    EXPECT_EQ(mode_of(existing + "/d"), c.dir);
    // A new log file gets the mode; an existing one is appended to as it is.
    log_to_file(existing + "/log.txt");
    log_to_file(old_log);
    log().info("file mode test");
    close_log_file();
    close_log_file();
    EXPECT_EQ(mode_of(existing + "/log.txt"), c.file);
    EXPECT_EQ(mode_of(old_log), 0644u);
    // A file a library created (Faiss's index) is given the mode afterwards.
    const std::string lib = test::write_file(existing + "/d/index.faiss", "x");
    ::chmod(lib.c_str(), 0666);
    apply_file_mode(lib, false);
    EXPECT_EQ(mode_of(lib), c.mode == FileMode::kUmask ? 0666u : c.file);
  }
}

TEST(FileMode, RunStagingDirectoryAndARunsRootItCreatesGetTheMode) {
  TempDir t;
  ::chmod(t.str().c_str(), 0755);
  Modes m(022, FileMode::kOwner);
  {
    StagedDir dir(t.file("runs/deep"), "r", "error");
    EXPECT_EQ(mode_of(t.file("runs")), 0700u);
    EXPECT_EQ(mode_of(t.file("runs/deep")), 0700u);
    EXPECT_EQ(mode_of(dir.staging()), 0700u);
    write_file_atomic(dir.file("run.json"), "{}\n");
    dir.commit();
  }
  EXPECT_EQ(mode_of(t.file("runs/deep/r")), 0700u);
  EXPECT_EQ(mode_of(t.file("runs/deep/r/run.json")), 0600u);
  EXPECT_EQ(mode_of(t.str()), 0755u);
  EXPECT_EQ(file_mode_from("group"), FileMode::kGroup);
  EXPECT_THROW(file_mode_from("world"), Error);
}

}  // namespace
}  // namespace recforge
