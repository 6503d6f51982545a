// Reading a directory's files once each, through one descriptor of the directory.
#include "artifact/files.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/hash.h"

namespace recforge::artifact {

DirReader::DirReader(int fd, int at, std::string entry, std::string shown)
    : fd_(fd), at_(at), entry_(std::move(entry)), shown_(std::move(shown)) {}

DirReader::~DirReader() {
  if (fd_ >= 0) ::close(fd_);
}

DirReader::DirReader(DirReader&& o) noexcept
    : fd_(o.fd_), at_(o.at_), entry_(std::move(o.entry_)), shown_(std::move(o.shown_)) {
  o.fd_ = -1;
}

DirReader& DirReader::operator=(DirReader&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    at_ = o.at_;
    entry_ = std::move(o.entry_);
    shown_ = std::move(o.shown_);
    o.fd_ = -1;
  }
  return *this;
}

std::optional<DirReader> DirReader::open(const std::string& entry, const std::string& shown,
                                         int at) {
  const int fd = ::openat(at, entry.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    if (errno == ENOTDIR) fail("{}: is not a directory", shown);
    fail("{}: cannot open the directory: {}", shown, std::strerror(errno));
  }
  return DirReader(fd, at, entry, shown);
}

namespace {

/// Closes a descriptor when it goes out of scope (a mapping outlives its descriptor).
struct Closer {
  int fd;
  ~Closer() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

int DirReader::open_regular(const std::string& file, struct stat* st) const {
  const int fd = ::openat(fd_, file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return -1;
    fail("{}: cannot open: {}", shown(file), std::strerror(errno));
  }
  Closer on_error{fd};
  if (::fstat(fd, st) != 0) fail("{}: cannot read: {}", shown(file), std::strerror(errno));
  if (!S_ISREG(st->st_mode)) fail("{}: is not a regular file", shown(file));
  on_error.fd = -1;  // the caller closes it
  return fd;
}

std::optional<std::string> DirReader::read(const std::string& file) const {
  struct stat st {};
  const int fd = open_regular(file, &st);
  if (fd < 0) return std::nullopt;
  Closer closer{fd};
  std::string bytes;
  bytes.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  for (;;) {
    if (done == bytes.size()) bytes.resize(bytes.size() + 4096);  // it grew: read to the end
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("{}: read error: {}", shown(file), std::strerror(errno));
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

MappedFile::~MappedFile() {
  if (size_ > 0) ::munmap(const_cast<char*>(data_), size_);
}

std::shared_ptr<const MappedFile> DirReader::map(const std::string& file) const {
  struct stat st {};
  const int fd = open_regular(file, &st);
  if (fd < 0) return nullptr;
  Closer closer{fd};  // the mapping outlives the descriptor
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) return std::make_shared<const MappedFile>(nullptr, 0);
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    fail("{}: cannot map the file read-only: {}", shown(file), std::strerror(errno));
  return std::make_shared<const MappedFile>(static_cast<const char*>(p), size);
}

bool DirReader::still_in_place() const {
  struct stat mine {}, there {};
  if (::fstat(fd_, &mine) != 0) return false;
  if (::fstatat(at_, entry_.c_str(), &there, 0) != 0) return false;
  return mine.st_dev == there.st_dev && mine.st_ino == there.st_ino;
}

std::string sha256_hex(std::string_view bytes) {
  Sha256 h;
  h.update(bytes);
  return h.hex();
}

nlohmann::json checksum_entry(std::string_view bytes) {
  return {{"bytes", bytes.size()}, {"sha256", sha256_hex(bytes)}};
}

void verify_entry(const std::string& shown, std::string_view bytes, const nlohmann::json& entry,
                  const std::string& listed_in) {
  if (!entry.is_object() || !entry.contains("bytes") || !entry["bytes"].is_number_unsigned() ||
      !entry.contains("sha256") || !entry["sha256"].is_string())
    fail("{}: its entry in {} \"files\" lacks bytes or sha256; expected both", shown, listed_in);
  const uint64_t want = entry["bytes"].get<uint64_t>();
  if (bytes.size() != want)
    fail("{}: {} bytes, but {} says {} (the file is truncated or was replaced)", shown,
         bytes.size(), listed_in, want);
  const std::string sha = sha256_hex(bytes);
  if (sha != entry["sha256"].get<std::string>())
    fail("{}: SHA-256 {} does not match {}'s {} (the file is corrupt or was modified)", shown, sha,
         listed_in, entry["sha256"].get<std::string>());
}

}  // namespace recforge::artifact
