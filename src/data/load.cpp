#include "data/load.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <limits>
#include <numeric>
#include <string_view>
#include <unordered_map>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/utf8.h"
#include "data/cache.h"

namespace recforge::data {
namespace {

namespace fs = std::filesystem;

// What a non-regular file is, for "expected a regular file" errors.
const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

[[noreturn]] void not_regular(const std::string& path, mode_t mode) {
  fail("{}: is {}, expected a regular file of interactions", path, file_kind(mode));
}

// Each data file exists and is a regular file (checked before hashing or reading: /dev/zero or
// a FIFO would never end).
void check_sources(const std::vector<std::string>& paths) {
  for (const auto& p : paths) {
    std::error_code ec;
    if (!fs::exists(p, ec)) fail("{}: data file not found", p);
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) not_regular(p, st.st_mode);
  }
}

std::string read_whole_file(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail("{}: cannot open data file: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const mode_t mode = st.st_mode;
    ::close(fd);
    not_regular(path, mode);
  }
  std::string buf;
  if (st.st_size > 0) buf.reserve(static_cast<size_t>(st.st_size));
  char chunk[1 << 16];
  bool bad = false;
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n > 0) buf.append(chunk, static_cast<size_t>(n));
    else if (n == 0) break;
    else if (errno != EINTR) {
      bad = true;
      break;
    }
  }
  const int err = errno;
  ::close(fd);
  if (bad) fail("{}: read error: {}", path, std::strerror(err));
  return buf;
}

// A regular file read by byte ranges with pread (load_shard reads its range, never the whole
// file).
class RangeFile {
 public:
  explicit RangeFile(const std::string& path) : path_(path) {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd_ < 0) fail("{}: cannot open data file: {}", path, std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      const mode_t mode = st.st_mode;
      ::close(fd_);
      not_regular(path, mode);
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~RangeFile() { ::close(fd_); }
  RangeFile(const RangeFile&) = delete;
  RangeFile& operator=(const RangeFile&) = delete;

  uint64_t size() const { return size_; }

  // Appends the bytes [at, at + n) to `out` (fewer at the end of the file); returns how many.
  size_t read(uint64_t at, size_t n, std::string& out) const {
    const size_t old = out.size();
    out.resize(old + n);
    size_t got = 0;
    while (got < n) {
      const ssize_t r = ::pread(fd_, out.data() + old + got, n - got, static_cast<off_t>(at + got));
      if (r > 0) got += static_cast<size_t>(r);
      else if (r == 0) break;
      else if (errno != EINTR) {
        const int err = errno;
        out.resize(old);
        fail("{}: read error: {}", path_, std::strerror(err));
      }
    }
    out.resize(old + got);
    return got;
  }

  // The number of '\n' bytes in [0, end), read in 1 MiB blocks.
  int64_t count_newlines(uint64_t end) const {
    constexpr size_t kBlock = size_t{1} << 20;
    std::string block;
    int64_t count = 0;
    for (uint64_t at = 0; at < end;) {
      block.clear();
      const size_t got = read(at, static_cast<size_t>(std::min<uint64_t>(kBlock, end - at)), block);
      if (got == 0) break;
      count += std::count(block.begin(), block.end(), '\n');
      at += got;
    }
    return count;
  }

 private:
  const std::string& path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// Input quoted in a message: control characters escaped, and at most kShownBytes bytes (cut at a
// UTF-8 character boundary) followed by "… (N bytes)", so a 20 MB field is not echoed whole.
// `total` is the length named after the cut (default: that of `s`).
constexpr size_t kShownBytes = 60;
std::string shown(std::string_view s, size_t total = std::string_view::npos) {
  size_t cut = s.size();
  if (cut > kShownBytes) {
    cut = kShownBytes;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  }
  std::string out;
  out.reserve(cut + 16);
  for (size_t k = 0; k < cut; ++k) {
    const unsigned char c = static_cast<unsigned char>(s[k]);
    if (c == '\r') out += "\\r";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7F) out += fmt::format("\\x{:02x}", c);
    else if (c < 0x80) out += static_cast<char>(c);
    else if (const size_t len = utf8_sequence_length(s.substr(0, cut), k); len > 0) {
      out.append(s.substr(k, len));
      k += len - 1;
    } else {
      out += fmt::format("\\x{:02x}", c);  // not UTF-8: messages stay UTF-8 text
    }
  }
  if (cut < s.size())
    out += fmt::format("\xE2\x80\xA6 ({} bytes)", total == std::string_view::npos ? s.size() : total);
  return out;
}

const char* delimiter_name(char d) {
  switch (d) {
    case ',': return "\",\"";
    case '\t': return "tabs";
    case ' ': return "spaces";
    case ';': return "\";\"";
    case '|': return "\"|\"";
    default: return "the delimiter";
  }
}

// The fields of one line: `value` is what a field means (outer quotes removed, "" unescaped to
// "), `raw` the bytes it came from inside the line (for column numbers in messages).
struct Fields {
  std::vector<std::string_view> value, raw;
  std::deque<std::string> unescaped;  // storage of fields that contained ""; stable addresses
  void clear() {
    value.clear();
    raw.clear();
    unescaped.clear();
  }
  void push(std::string_view v, std::string_view r) {
    value.push_back(v);
    raw.push_back(r);
  }
  size_t size() const { return value.size(); }
};

// Splits one line into fields. Whitespace mode (' ') splits on runs of spaces/tabs; other
// delimiters split exactly and honour double-quoted fields ("a,b"; "" inside quotes is one ").
// Returns nullptr, or what is wrong with the quoting (a quote left open, or text between a
// closing quote and the next delimiter).
const char* split_fields(std::string_view line, char delim, Fields& out) {
  out.clear();
  size_t i = 0;
  const size_t n = line.size();
  if (delim == ' ') {
    while (i < n) {
      while (i < n && (line[i] == ' ' || line[i] == '\t')) ++i;
      if (i >= n) break;
      const size_t b = i;
      while (i < n && line[i] != ' ' && line[i] != '\t') ++i;
      out.push(line.substr(b, i - b), line.substr(b, i - b));
    }
    return nullptr;
  }
  while (true) {
    if (i < n && line[i] == '"') {
      size_t j = i + 1;
      bool escaped = false;
      while (true) {
        if (j >= n) return "unterminated quoted field";
        if (line[j] == '"') {
          if (j + 1 < n && line[j + 1] == '"') {
            escaped = true;
            j += 2;
            continue;
          }
          break;
        }
        ++j;
      }
      const std::string_view raw = line.substr(i + 1, j - i - 1);
      if (escaped) {
        std::string& v = out.unescaped.emplace_back();
        v.reserve(raw.size());
        for (size_t k = 0; k < raw.size(); ++k) {
          v += raw[k];
          if (raw[k] == '"') ++k;  // the second quote of ""
        }
        out.push(v, raw);
      } else {
        out.push(raw, raw);
      }
      i = j + 1;
      if (i < n && line[i] != delim)
        return "text after the closing quote of a quoted field (a '\"' inside a quoted field is "
               "written as two)";
    } else {
      const size_t b = i;
      while (i < n && line[i] != delim) ++i;
      out.push(line.substr(b, i - b), line.substr(b, i - b));
    }
    if (i >= n) break;
    ++i;  // skip delimiter
    if (i == n) {
      out.push(std::string_view(), line.substr(n));
      break;
    }
  }
  return nullptr;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool parse_int(std::string_view s, int64_t& v) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

bool parse_double(std::string_view s, double& v) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

bool is_index(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Assigns temporary indices to ids in order of first appearance; `finish` sorts the ids
// (numerically or as text) and returns the temporary→final renumbering.
class Interner {
 public:
  Interner(bool strings, int64_t max_ids) : strings_(strings), max_ids_(max_ids) {}
  /// The index of `id`, numbered in order of first appearance; -1 for a new id when max_ids
  /// are held already (not added).
  index_t intern(int64_t id) {
    // Ids in [0, kDense) index a table directly (at most 64 MiB): a hash map's cache misses
    // made interning the slowest part of parsing with a million users (2.2–2.9M lines/s).
    if (id >= 0 && id < kDense) {
      const size_t k = static_cast<size_t>(id);
      if (k >= dense_.size())
        dense_.resize(std::min<size_t>(std::max(k + 1, 2 * dense_.size()), kDense), -1);
      index_t& slot = dense_[k];
      if (slot < 0) {
        if (full()) return -1;
        slot = static_cast<index_t>(int_ids_.size());
        int_ids_.push_back(id);
      }
      return slot;
    }
    const auto [it, inserted] = ints_.try_emplace(id, static_cast<index_t>(int_ids_.size()));
    if (!inserted) return it->second;
    if (full()) {
      ints_.erase(it);
      return -1;
    }
    int_ids_.push_back(id);
    return it->second;
  }
  index_t intern(std::string_view id) {
    auto it = strs_.find(id);
    if (it != strs_.end()) return it->second;
    if (full()) return -1;
    storage_.emplace_back(id);
    const index_t idx = static_cast<index_t>(str_ids_.size());
    str_ids_.push_back(storage_.back());
    strs_.emplace(storage_.back(), idx);
    return idx;
  }
  int64_t size() const { return strings_ ? static_cast<int64_t>(str_ids_.size()) : static_cast<int64_t>(int_ids_.size()); }
  int64_t max_ids() const { return max_ids_; }
  IdMap finish(std::vector<index_t>& renumber) const {
    const size_t n = static_cast<size_t>(size());
    std::vector<index_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    if (strings_)
      std::sort(order.begin(), order.end(), [&](index_t a, index_t b) { return str_ids_[a] < str_ids_[b]; });
    else
      std::sort(order.begin(), order.end(), [&](index_t a, index_t b) { return int_ids_[a] < int_ids_[b]; });
    renumber.assign(n, 0);
    std::vector<std::string> ids(n);
    for (size_t k = 0; k < n; ++k) {
      renumber[order[k]] = static_cast<index_t>(k);
      ids[k] = strings_ ? std::string(str_ids_[order[k]]) : std::to_string(int_ids_[order[k]]);
    }
    return IdMap(std::move(ids));
  }

 private:
  static constexpr int64_t kDense = int64_t{1} << 24;
  bool full() const { return size() >= max_ids_; }
  bool strings_;
  int64_t max_ids_;
  std::vector<index_t> dense_;  // id → temporary index (−1: not seen), for ids below kDense
  std::unordered_map<int64_t, index_t> ints_;  // the other ids
  std::vector<int64_t> int_ids_;
  std::deque<std::string> storage_;
  std::unordered_map<std::string_view, index_t> strs_;
  std::vector<std::string_view> str_ids_;
};

// Parses one file into `out`, interning ids. Malformed lines throw or are counted.
class FileParser {
 public:
  FileParser(const std::string& path, const LoadOptions& o, Interner& users, Interner& items,
             LoadReport& report)
      : path_(path), o_(o), users_(users), items_(items), report_(report) {}

  // The whole file (load).
  void parse(Interactions& out) {
    const std::string text = read_whole_file(path_);
    // A UTF-8 byte order mark (as spreadsheet programs write) is not part of the first field.
    const size_t bom = std::string_view(text).substr(0, 3) == "\xEF\xBB\xBF" ? 3 : 0;
    if (text.find_first_not_of(" \t\r\n", bom) == std::string::npos)
      fail("{}: the file is empty, expected interactions", path_);
    Progress progress("loading " + fs::path(path_).filename().string(),
                      static_cast<int64_t>(text.size()), "bytes");
    const auto t0 = std::chrono::steady_clock::now();
    if (o_.time_col) out.enable_times();
    const int64_t data_lines = parse_lines(text, bom, /*first=*/true, out, progress);
    progress.finish(static_cast<int64_t>(text.size()));
    report_.lines += data_lines;
    report_.parse_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (out.size() == 0 && data_lines > 0)
      fail("{}: no valid interactions in {} line(s){}", path_, data_lines,
           report_.skipped_lines ? " (every line was malformed and skipped)" : "");
    if (data_lines == 0) fail("{}: no data lines after the header, expected interactions", path_);
  }

  // The lines that start in shard `shard`'s byte range [S·index/count, S·(index+1)/count) of the
  // file (load_shard); the last one is read whole, also past the range's end. The file's first
  // non-blank line is read first (delimiter, header). No lines at all is not an error here.
  void parse_shard(Shard shard, Interactions& out) {
    const RangeFile file(path_);
    const uint64_t size = file.size();
    // floor(S·k/count) without overflowing S·k: with S = q·count + r, it is q·k + floor(r·k/count)
    // (r·k < count² < 2^62).
    const auto bound = [&](int k) {
      const uint64_t n = static_cast<uint64_t>(shard.count), kk = static_cast<uint64_t>(k);
      return size / n * kk + size % n * kk / n;
    };
    const uint64_t begin = bound(shard.index), end = bound(shard.index + 1);
    if (o_.time_col) out.enable_times();
    uint64_t first_line = 0;
    if (!setup_from_first_line(file, first_line)) return;  // only blank lines: no data lines
    if (begin >= end) return;
    // A line starts in the range at `begin` when begin is 0 or byte begin - 1 is '\n', else
    // after the first '\n' at or after `begin`: read from begin - 1 to see which.
    const uint64_t at = begin == 0 ? 0 : begin - 1;
    std::string text;
    file.read(at, static_cast<size_t>(end - at), text);
    size_t start = 0;
    if (begin > 0) {
      const size_t nl = text.find('\n');
      if (nl == std::string::npos || nl + 1 >= text.size()) return;  // inside one line
      start = nl + 1;
    }
    // The last line that starts in the range is read to its end.
    constexpr size_t kBlock = size_t{1} << 16;
    if (!text.empty() && text.back() != '\n') {
      for (;;) {
        const size_t old = text.size();
        if (file.read(at + old, kBlock, text) == 0) break;
        const size_t nl = text.find('\n', old);
        if (nl != std::string::npos) {
          text.resize(nl + 1);
          break;
        }
      }
    }
    if (begin == 0 && std::string_view(text).substr(0, 3) == "\xEF\xBB\xBF") start = 3;
    file_ = &file;
    text_begin_ = at + start;
    lines_before_known_ = false;
    Progress progress(fmt::format("loading {} (shard {} of {})",
                                  fs::path(path_).filename().string(), shard.index + 1, shard.count),
                      static_cast<int64_t>(text.size()), "bytes");
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t data_lines =
        parse_lines(text, start, /*first=*/first_line >= begin && first_line < end, out, progress);
    progress.finish(static_cast<int64_t>(text.size()));
    file_ = nullptr;
    report_.lines += data_lines;
    report_.parse_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

 private:
  // The one parsing loop (load and load_shard): the lines of `text` from byte `pos` on. `first`:
  // the first non-blank line is the file's first (set up from it unless done, skipped as the
  // header). Line numbers are counted from the start of `text` (line_number() makes them the
  // file's). Returns the number of data lines.
  int64_t parse_lines(std::string_view text, size_t pos, bool first, Interactions& out,
                      Progress& progress) {
    int64_t line_no = 0, data_lines = 0;
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + pos, end - pos);
      pos = end + 1;
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (trim(line).empty()) continue;
      if (first) {
        first = false;
        if (!set_up_) setup(line, line_number(line_no));
        if (o_.format == Format::kDelimited && o_.header) continue;
      }
      ++data_lines;
      if (o_.format == Format::kAdjacency) parse_adjacency(line, line_no, out);
      else parse_delimited(line, line_no, out);
      if ((data_lines & 0xFFFF) == 0) progress.update(static_cast<int64_t>(pos));
    }
    return data_lines;
  }

  // The true line number in the file of line `line_no` of the text being parsed: for a shard,
  // the '\n' bytes before the shard's first line are counted, once, when a message first needs
  // them (a run without messages never reads that prefix).
  int64_t line_number(int64_t line_no) {
    if (!lines_before_known_) {
      lines_before_ = file_->count_newlines(text_begin_);
      lines_before_known_ = true;
    }
    return lines_before_ + line_no;
  }

  // Reads the file from its start to its first non-blank line (after a UTF-8 byte order mark)
  // and sets up the columns from it, with its true line number. `first_line`: the byte where
  // that line starts (0 for the first line, byte order mark included). False when the file has
  // only blank lines.
  bool setup_from_first_line(const RangeFile& file, uint64_t& first_line) {
    constexpr size_t kBlock = size_t{1} << 16;
    std::string buf;
    uint64_t buf_at = 0;  // file offset of buf[0]
    bool eof = file.read(0, kBlock, buf) == 0;
    const size_t bom = std::string_view(buf).substr(0, 3) == "\xEF\xBB\xBF" ? 3 : 0;
    size_t pos = bom;
    int64_t line_no = 0;
    for (;;) {
      size_t nl = buf.find('\n', pos);
      while (nl == std::string::npos && !eof) {
        const size_t old = buf.size();
        eof = file.read(buf_at + old, kBlock, buf) == 0;
        nl = buf.find('\n', old);
      }
      if (nl == std::string::npos) {
        if (pos >= buf.size()) return false;
        nl = buf.size();
      }
      ++line_no;
      std::string_view line(buf.data() + pos, nl - pos);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (!trim(line).empty()) {
        setup(line, line_no);
        first_line = buf_at == 0 && pos == bom ? 0 : buf_at + pos;
        return true;
      }
      pos = nl + 1;
      if (pos >= kBlock) {  // drop the blank lines read so far
        buf.erase(0, pos);
        buf_at += pos;
        pos = 0;
      }
    }
  }

 private:
  void setup(std::string_view first_line, int64_t line_no) {
    set_up_ = true;
    delim_ = o_.delimiter;
    if (o_.format == Format::kAdjacency) {
      if (delim_ == 0) delim_ = ' ';
      return;
    }
    if (delim_ == 0) {
      if (first_line.find('\t') != std::string_view::npos) delim_ = '\t';
      else if (first_line.find(',') != std::string_view::npos) delim_ = ',';
      else if (first_line.find(';') != std::string_view::npos) delim_ = ';';
      else if (first_line.find('|') != std::string_view::npos) delim_ = '|';
      else delim_ = ' ';
    }
    Fields fields;
    // Every line has the first line's number of fields (header or not): a line with more or
    // fewer is malformed, so a file of another shape (one user and all their items per line,
    // which is data.format: adjacency) is not read as one interaction per line.
    // A first line that cannot be split would leave that count unknown (and the header empty):
    // refused whatever data.on_error says. Not quoted: it may hold a user id.
    if (const char* why = split_fields(first_line, delim_, fields))
      fail("{}:{}: the first line{} has broken quoting: {}; every line must have the first "
           "line's number of fields, so it cannot be skipped, even with data.on_error: skip; fix "
           "that line",
           path_, line_no, o_.header ? " (the header)" : "", why);
    fields_expected_ = static_cast<int>(fields.size());
    if (!o_.header) fields.clear();
    const std::vector<std::string_view>& header = fields.value;
    auto resolve = [&](const std::string& spec, const char* key) -> int {
      if (is_index(spec)) {
        // Range-checked: an index beyond int must not wrap round to a negative column.
        int k = 0;
        const auto [end, ec] = std::from_chars(spec.data(), spec.data() + spec.size(), k);
        if (ec != std::errc() || end != spec.data() + spec.size() ||
            k == std::numeric_limits<int>::max())
          fail("data.{}: column index {} is too large; expected a 0-based column index below {}",
               key, spec, std::numeric_limits<int>::max());
        return k;
      }
      if (!o_.header)
        fail("data.{}: column \"{}\" is a name, which needs data.header: true (or give a 0-based "
             "column index)",
             key, shown(spec));
      for (size_t k = 0; k < header.size(); ++k) {
        if (trim(header[k]) != spec) continue;
        for (size_t other = k + 1; other < header.size(); ++other)
          if (trim(header[other]) == spec)
            fail("{}:{}: data.{}: the header names two columns \"{}\" (0-based columns {} and "
                 "{}); give the column's 0-based index instead",
                 path_, line_no, key, shown(spec), k, other);
        return static_cast<int>(k);
      }
      // A number among the "column names" says that the first line is data (data.header true
      // on a file without a header line): listing it would quote a user id.
      for (const std::string_view f : header) {
        double number = 0;
        if (parse_double(trim(f), number))
          fail("{}:{}: data.{}: no column named \"{}\" in the header, and the first line looks "
               "like data rather than column names (it holds numbers; its {} fields are not "
               "shown, as one may be a user id); set data.header: false and give 0-based column "
               "indexes, or add a header line",
               path_, line_no, key, shown(spec), header.size());
      }
      std::string names;
      constexpr size_t kListed = 20;
      for (size_t k = 0; k < std::min(header.size(), kListed); ++k)
        names += (k ? ", " : "") + shown(trim(header[k]));
      if (header.size() > kListed)
        names += fmt::format(", \xE2\x80\xA6 ({} columns)", header.size());
      fail("{}:{}: data.{}: no column named \"{}\" in the header (columns: {})", path_, line_no,
           key, shown(spec), names);
    };
    user_col_ = resolve(o_.user_col, "user_col");
    item_col_ = resolve(o_.item_col, "item_col");
    weight_col_ = o_.weight_col ? resolve(*o_.weight_col, "weight_col") : -1;
    time_col_ = o_.time_col ? resolve(*o_.time_col, "time_col") : -1;
    min_fields_ = 1 + std::max({user_col_, item_col_, weight_col_, time_col_});
  }

  // The current line as messages quote it: user ids stay out of logs and errors, so the user
  // field (as split into fields_) is replaced by <user id>; a line not split as far as its user
  // field is not quoted at all, only its length.
  std::string shown_line(std::string_view line) const {
    const size_t k = o_.format == Format::kAdjacency ? 0 : static_cast<size_t>(user_col_);
    if (k >= fields_.raw.size())
      return fmt::format("(the line's {} bytes are not shown: it may hold a user id)", line.size());
    const std::string_view raw = fields_.raw[k];
    const size_t at = static_cast<size_t>(raw.data() - line.data());
    const std::string redacted = fmt::format("{}<user id>{}", line.substr(0, at),
                                             line.substr(std::min(line.size(), at + raw.size())));
    return fmt::format("\"{}\"", shown(redacted, line.size()));
  }

  // A malformed line; `column` (1-based, 0 = none) points at the offending byte.
  void bad(int64_t line_no, std::string_view line, const std::string& what, size_t column = 0) {
    const int64_t at = line_number(line_no);
    const std::string where = column ? fmt::format("{}:{}:{}", path_, at, column)
                                     : fmt::format("{}:{}", path_, at);
    const std::string msg = fmt::format("{}: {}: {}", where, what, shown_line(line));
    if (!o_.skip_errors) throw Error(msg + " (set data.on_error: skip to skip such lines)");
    if (report_.skipped_lines < 5) log().warn("skipping malformed line {}", msg);
    ++report_.skipped_lines;
  }

  // Interns field `k` of the current line as a user or item id.
  bool id(size_t k, Interner& in, index_t& out, const char* what, int64_t line_no,
          std::string_view line) {
    const std::string_view field = trim(fields_.value[k]);
    // A user id is never quoted (user ids stay out of logs and errors): its length is. Made
    // only for a message: formatting it for every field halved the parser's speed.
    const auto quoted = [&] {
      return std::string_view(what) == "user"
                 ? fmt::format("of {} byte{}", field.size(), field.size() == 1 ? "" : "s")
                 : fmt::format("\"{}\"", shown(field));
    };
    if (field.empty()) {
      bad(line_no, line, fmt::format("empty {} id", what));
      return false;
    }
    if (o_.string_ids) {
      // A control character (a stray \r, a tab inside a comma-separated field, ...) would reach
      // the exported id maps; refuse it here, pointing at the byte. The trailing \r of a CRLF
      // line end is not part of the field (trimmed above).
      auto is_control = [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7F; };
      if (std::any_of(field.begin(), field.end(), is_control)) {
        // Leading spaces/tabs are trimmed alike from the raw bytes and the (unescaped) value.
        const std::string_view raw = fields_.raw[k];
        size_t lead = 0;
        while (lead < raw.size() && (raw[lead] == ' ' || raw[lead] == '\t')) ++lead;
        const size_t at = static_cast<size_t>(
            std::find_if(raw.begin() + static_cast<std::ptrdiff_t>(lead), raw.end(), is_control) -
            raw.begin());
        bad(line_no, line,
            fmt::format("{} id {} contains the control character 0x{:02x}, expected "
                        "printable text",
                        what, quoted(), static_cast<unsigned char>(raw[at])),
            static_cast<size_t>(raw.data() - line.data()) + at + 1);
        return false;
      }
      // Ids go into JSON answers and the export's id files, which are UTF-8 text: another
      // encoding (Latin-1 "caf\xe9") is refused here rather than breaking every JSON output later.
      if (std::any_of(field.begin(), field.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
        const std::string_view raw = fields_.raw[k];
        const size_t at = first_non_utf8(raw);
        if (at != std::string_view::npos) {
          bad(line_no, line,
              fmt::format("{} id {} holds byte 0x{:02X}, which is not UTF-8; expected UTF-8 text "
                          "(convert the file, e.g. with iconv)",
                          what, quoted(),
                          static_cast<unsigned char>(raw[at])),
              static_cast<size_t>(raw.data() - line.data()) + at + 1);
          return false;
        }
      }
      out = in.intern(field);
      return out >= 0 || too_many(in, what, line_no);
    }
    int64_t v;
    if (!parse_int(field, v)) {
      bad(line_no, line,
          fmt::format("{} id {} is not an integer (set data.id_type: string for text ids{})",
                      what, quoted(),
                      line_number(line_no) == 1 && !o_.header ? ", or data.header: true" : ""));
      return false;
    }
    out = in.intern(v);
    return out >= 0 || too_many(in, what, line_no);
  }

  // A new id beyond Interner::max_ids: the whole load is refused (not a malformed line).
  // Out of line: the message's formatting stays out of id(), which runs for every field.
  [[noreturn, gnu::noinline, gnu::cold]] bool too_many(const Interner& in, const char* what,
                                                       int64_t line_no) {
    fail("{}:{}: more than {} distinct {} ids; recforge numbers users and items with 32-bit "
         "integers (at most {} of each)",
         path_, line_number(line_no), in.max_ids(), what, kMaxIds);
  }

  void parse_delimited(std::string_view line, int64_t line_no, Interactions& out) {
    if (const char* why = split_fields(line, delim_, fields_)) {
      bad(line_no, line, why);
      return;
    }
    if (static_cast<int>(fields_.size()) < min_fields_) {
      bad(line_no, line, fmt::format("expected at least {} fields separated by {}, got {}",
                                     min_fields_, delimiter_name(delim_), fields_.size()));
      return;
    }
    if (__builtin_expect(
            fields_expected_ > 0 && static_cast<int>(fields_.size()) != fields_expected_, 0)) {
      bad(line_no, line, other_field_count());
      return;
    }
    index_t u, i;
    if (!id(static_cast<size_t>(user_col_), users_, u, "user", line_no, line)) return;
    if (!id(static_cast<size_t>(item_col_), items_, i, "item", line_no, line)) return;
    double w = 1.0;
    if (weight_col_ >= 0) {
      const std::string_view f = trim(fields_.value[weight_col_]);
      if (!parse_double(f, w) || !(std::fabs(w) <= std::numeric_limits<float>::max())) {
        bad(line_no, line,
            fmt::format("weight \"{}\" is not a finite number in float32's range (at most 3.4e38)",
                        shown(f)));
        return;
      }
      if (w < 0) {
        bad(line_no, line, fmt::format("weight {} is negative, expected a weight >= 0", shown(f)));
        return;
      }
      // Weights are stored as float: a larger double would become infinite (and its conversion
      // is undefined behaviour).
      if (w > std::numeric_limits<float>::max()) {
        bad(line_no, line,
            fmt::format("weight {} is too large, expected at most {} (weights are 32-bit floats)",
                        f, std::numeric_limits<float>::max()));
        return;
      }
    }
    int64_t t = 0;
    if (time_col_ >= 0) {
      const std::string_view f = trim(fields_.value[time_col_]);
      if (!parse_int(f, t)) {
        bad(line_no, line, fmt::format("timestamp \"{}\" is not an integer", shown(f)));
        return;
      }
    }
    out.push(u, i, static_cast<float>(w), t);
    ++report_.raw_interactions;
  }

  void parse_adjacency(std::string_view line, int64_t line_no, Interactions& out) {
    // A quote left open leaves no fields (and fields_[0] below would be out of bounds).
    if (const char* why = split_fields(line, delim_, fields_)) {
      bad(line_no, line, why);
      return;
    }
    index_t u;
    if (!id(0, users_, u, "user", line_no, line)) return;
    // Validate the whole line first so a bad item skips the line, not half of it.
    items_buf_.clear();
    for (size_t k = 1; k < fields_.size(); ++k) {
      index_t i;
      if (!id(k, items_, i, "item", line_no, line)) return;
      items_buf_.push_back(i);
    }
    for (index_t i : items_buf_) out.push(u, i, 1.0f, 0);
    report_.raw_interactions += static_cast<int64_t>(items_buf_.size());
  }

  const std::string& path_;
  const LoadOptions& o_;
  Interner& users_;
  Interner& items_;
  LoadReport& report_;
  bool set_up_ = false;  // setup() ran
  // Line numbers of a shard (parse_shard): its first line starts at byte text_begin_ of file_;
  // lines_before_ ('\n' bytes before it) is counted on first use.
  const RangeFile* file_ = nullptr;
  uint64_t text_begin_ = 0;
  int64_t lines_before_ = 0;
  bool lines_before_known_ = true;
  char delim_ = ' ';
  // A line's field count other than the first line's, in words (out of the per-line path).
  [[gnu::noinline, gnu::cold]] std::string other_field_count() const {
    return fmt::format(
        "expected {} fields separated by {}, as the first line has, got {}{}", fields_expected_,
        delimiter_name(delim_), fields_.size(),
        delim_ == ' ' || fields_.size() > static_cast<size_t>(fields_expected_) + 1
            ? " (for one user and all their items on a line, set data.format: adjacency)"
            : "");
  }

  int user_col_ = 0, item_col_ = 1, weight_col_ = -1, time_col_ = -1, min_fields_ = 2;
  int fields_expected_ = 0;  // the first line's fields (0: not known)
  Fields fields_;
  std::vector<index_t> items_buf_;
};

// After parsing: the parse rate, the ids numbered in sorted order (Interner::finish) and the
// skipped-lines warning.
void number_ids(Loaded& d, const Interner& users, const Interner& items) {
  d.report.lines_per_second = d.report.parse_seconds > 0 ? d.report.lines / d.report.parse_seconds : 0;
  std::vector<index_t> user_renumber, item_renumber;
  d.users = users.finish(user_renumber);
  d.items = items.finish(item_renumber);
  for (auto& part : d.parts) {
    for (auto& u : part.users) u = user_renumber[u];
    for (auto& i : part.items) i = item_renumber[i];
  }
  if (d.report.skipped_lines > 0)
    log().warn("skipped {} malformed line(s) (data.on_error: skip)", d.report.skipped_lines);
}

}  // namespace

std::string LoadOptions::fingerprint() const {
  return fmt::format(
      "format={};delim={};header={};user={};item={};weight={};time={};string_ids={};dup={};"
      "min_weight={:.17g};min_user={};min_item={};skip={};max_age_days={};max_age_from={};"
      "time_unit={}",
      static_cast<int>(format), static_cast<int>(delimiter), header, user_col, item_col,
      weight_col.value_or("<none>"), time_col.value_or("<none>"), string_ids,
      static_cast<int>(duplicates), min_weight, min_user_interactions, min_item_interactions,
      skip_errors, max_age_days, max_age_from, static_cast<int>(time_unit)) +
         (exclusion ? ";exclusion=" + exclusion->fingerprint() : std::string());
}

std::vector<std::string> source_hashes(const std::vector<std::string>& paths) {
  check_sources(paths);
  std::vector<std::string> out;
  for (const auto& p : paths) out.push_back(sha256_file(p));
  return out;
}

void exclude_users(Loaded& d, const UserExclusion& e) {
  LoadReport& r = d.report;
  r.exclusion_applied = true;
  if (e.empty()) return;
  using Set = UserExclusion::Set;
  const int64_t nu = d.users.size(), ni = d.items.size();
  // Each distinct user is hashed once (not each line).
  std::vector<uint8_t> in_opt(static_cast<size_t>(nu), 0), in_forgot(static_cast<size_t>(nu), 0);
  std::vector<std::string> hashes(static_cast<size_t>(nu));
#pragma omp parallel for schedule(static)
  for (int64_t u = 0; u < nu; ++u) {
    std::string h = e.hash(d.users.external(static_cast<index_t>(u)));
    in_opt[u] = e.in(Set::kOptOut, h);
    in_forgot[u] = e.in(Set::kForgotten, h);
    if (in_opt[u] || in_forgot[u]) hashes[u] = std::move(h);
  }
  std::vector<uint8_t> keep_u(static_cast<size_t>(nu), 1), keep_i(static_cast<size_t>(ni), 1);
  for (int64_t u = 0; u < nu; ++u) {
    if (!in_opt[u] && !in_forgot[u]) continue;
    keep_u[u] = 0;
    if (in_opt[u]) ++r.opt_out_users, r.opt_out_matched.push_back(hashes[u]);
    if (in_forgot[u]) ++r.forgotten_users, r.forgotten_matched.push_back(hashes[u]);
  }
  if (r.opt_out_users + r.forgotten_users == 0) return;
  std::sort(r.opt_out_matched.begin(), r.opt_out_matched.end());
  std::sort(r.forgotten_matched.begin(), r.forgotten_matched.end());
  // Items are removed only when every occurrence belonged to an excluded user: an item that
  // occurs in no interaction at all (interned from a skipped line) is left as it was.
  std::vector<int64_t> before(static_cast<size_t>(ni), 0), after(static_cast<size_t>(ni), 0);
  for (const auto& part : d.parts) {
    for (offset_t k = 0; k < part.size(); ++k) {
      const index_t u = part.users[k], i = part.items[k];
      ++before[i];
      if (keep_u[u]) ++after[i];
      r.opt_out_interactions += in_opt[u];
      r.forgotten_interactions += in_forgot[u];
    }
  }
  for (int64_t i = 0; i < ni; ++i)
    if (before[i] > 0 && after[i] == 0) keep_i[i] = 0;
  const auto user_map = d.users.compact(keep_u);
  const auto item_map = d.items.compact(keep_i);
  for (auto& part : d.parts) part.remap(user_map, item_map);
}

std::string default_cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/recforge";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/recforge";
  return ".recforge-cache";
}

void clean(Loaded& d, const LoadOptions& o, const std::vector<std::string>& paths) {
  LoadReport& r = d.report;
  const int64_t n_users = d.users.size(), n_items = d.items.size();
  for (size_t p = 0; p < d.parts.size(); ++p) {
    Interactions& part = d.parts[p];
    r.duplicates_combined += combine_duplicates(part, n_users, o.duplicates);
    check_combined_weights(part, d.users, d.items, paths[std::min(p, paths.size() - 1)]);
    if (o.min_weight > 0) {
      const offset_t before = part.size();
      offset_t w = 0;
      for (offset_t k = 0; k < part.size(); ++k) {
        if (part.weights[k] < o.min_weight) continue;
        part.users[w] = part.users[k];
        part.items[w] = part.items[k];
        part.weights[w] = part.weights[k];
        if (part.has_times()) part.times[w] = part.times[k];
        ++w;
      }
      part.users.resize(w);
      part.items.resize(w);
      part.weights.resize(w);
      if (part.has_times()) part.times.resize(w);
      r.below_min_weight += before - w;
    }
  }
  // Per-user and per-item minimums on the first part, repeated until nothing changes.
  Interactions& train = d.parts.front();
  std::vector<uint8_t> keep_u(n_users, 1), keep_i(n_items, 1);
  std::vector<int64_t> cu(n_users), ci(n_items);
  const offset_t before = train.size();
  for (;;) {
    ++r.filter_rounds;
    std::fill(cu.begin(), cu.end(), 0);
    std::fill(ci.begin(), ci.end(), 0);
    for (offset_t k = 0; k < train.size(); ++k) {
      if (keep_u[train.users[k]] && keep_i[train.items[k]]) {
        ++cu[train.users[k]];
        ++ci[train.items[k]];
      }
    }
    bool changed = false;
    for (int64_t u = 0; u < n_users; ++u)
      if (keep_u[u] && cu[u] < o.min_user_interactions) keep_u[u] = 0, changed = true;
    for (int64_t i = 0; i < n_items; ++i)
      if (keep_i[i] && ci[i] < o.min_item_interactions) keep_i[i] = 0, changed = true;
    if (!changed) break;
  }
  const auto user_map = d.users.compact(keep_u);
  const auto item_map = d.items.compact(keep_i);
  for (size_t k = 1; k < d.parts.size(); ++k) {
    const Interactions& x = d.parts[k];
    for (offset_t j = 0; j < x.size(); ++j) {
      if (user_map[x.users[j]] < 0) ++r.test_unknown_user_interactions;
      else if (item_map[x.items[j]] < 0) ++r.test_unknown_item_interactions;
    }
  }
  for (auto& part : d.parts) part.remap(user_map, item_map);
  r.filtered_users = n_users - d.users.size();
  r.filtered_items = n_items - d.items.size();
  r.filtered_interactions = before - train.size();
}

Loaded load(const std::vector<std::string>& paths, const LoadOptions& o) {
  RF_ASSERT(!paths.empty(), "load: no paths");
  std::string cache_path;
  std::vector<std::string> sources;
  const auto cache_path_for = [&](const LoadOptions& opts) {
    Sha256 key;
    key.update(fmt::format("recforge-cache-v{};", kCacheVersion));
    for (const auto& h : sources) key.update(h + ";");
    key.update(opts.fingerprint());
    return o.cache_dir + "/" + key.hex() + ".rfcache";
  };
  if (o.use_cache && !o.cache_dir.empty()) {
    sources = source_hashes(paths);
    cache_path = cache_path_for(o);
    if (auto cached = read_cache(cache_path, o, paths.size())) {
      cached->report.from_cache = true;
      cached->report.cache_file = cache_path;
      log().info("loaded {} from cache {}", paths.front(), cache_path);
      return std::move(*cached);
    }
  }

  if (sources.empty()) check_sources(paths);
  Loaded d;
  Interner users(o.string_ids, o.max_ids), items(o.string_ids, o.max_ids);
  for (const auto& p : paths) {
    d.parts.emplace_back();
    FileParser(p, o, users, items, d.report).parse(d.parts.back());
  }
  number_ids(d, users, items);
  // Excluded users go before any filter, so that the rest is what files without them give.
  if (o.exclusion) exclude_users(d, *o.exclusion);
  apply_retention(d, o, paths.front());  // data.max_age_days: after the exclusion (an excluded user's
  // newest timestamp must not set the reference), before any cleaning
  clean(d, o, paths);
  if (d.parts.front().size() == 0 && d.report.opt_out_users + d.report.forgotten_users > 0)
    fail("{}: no interactions left after excluding {} opted-out and {} forgotten user(s) and "
         "filtering (min_weight {}, min_user_interactions {}, min_item_interactions {})",
         paths.front(), d.report.opt_out_users, d.report.forgotten_users, o.min_weight,
         o.min_user_interactions, o.min_item_interactions);
  if (d.parts.front().size() == 0)
    fail("{}: no interactions left after filtering (min_weight {}, min_user_interactions {}, "
         "min_item_interactions {})",
         paths.front(), o.min_weight, o.min_user_interactions, o.min_item_interactions);
  log().info("parsed {} line(s) in {:.2f} s ({} lines/s): {} users, {} items, {} interactions",
             d.report.lines, d.report.parse_seconds, human_count(d.report.lines_per_second),
             d.users.size(), d.items.size(), d.parts.front().size());
  if (!cache_path.empty()) {
    d.report.cache_file = cache_path;
    write_cache(cache_path, d, sources);
    // An exclusion listing ids the data lacks loads what its matched ids alone load, and a run
    // reopened later (recommend, evaluate, export) excludes those only (run.json records no
    // others): the same entry under that key too, a hard link (no second copy; a purge finds
    // both names), so that reopening does not parse the files again.
    if (o.exclusion && !o.exclusion->empty()) {
      UserExclusion matched(o.exclusion->salt());
      for (const auto& h : d.report.opt_out_matched) matched.add_hash(UserExclusion::Set::kOptOut, h);
      for (const auto& h : d.report.forgotten_matched)
        matched.add_hash(UserExclusion::Set::kForgotten, h);
      if (matched.fingerprint() != o.exclusion->fingerprint()) {
        LoadOptions as_matched = o;  // none matched: what loading without an exclusion gives
        if (!matched.empty())
          as_matched.exclusion = std::make_shared<const UserExclusion>(std::move(matched));
        else
          as_matched.exclusion = nullptr;
        const std::string alias = cache_path_for(as_matched);
        if (::link(cache_path.c_str(), alias.c_str()) != 0 && errno != EEXIST)
          log().debug("data cache: cannot link {} to {}: {}", alias, cache_path,
                      std::strerror(errno));
      }
    }
  }
  return d;
}

Loaded load_shard(const std::vector<std::string>& paths, const LoadOptions& o, Shard shard) {
  RF_ASSERT(!paths.empty(), "load_shard: no paths");
  RF_ASSERT(shard.count >= 1 && shard.index >= 0 && shard.index < shard.count,
            "load_shard: shard index outside 0 .. count - 1");
  check_sources(paths);
  Loaded d;
  Interner users(o.string_ids, o.max_ids), items(o.string_ids, o.max_ids);
  for (const auto& p : paths) {
    d.parts.emplace_back();
    FileParser(p, o, users, items, d.report).parse_shard(shard, d.parts.back());
  }
  number_ids(d, users, items);
  if (o.exclusion) exclude_users(d, *o.exclusion);
  log().debug("shard {} of {}: parsed {} line(s) in {:.2f} s: {} users, {} items, {} interactions",
              shard.index + 1, shard.count, d.report.lines, d.report.parse_seconds, d.users.size(),
              d.items.size(), d.parts.front().size());
  return d;
}

}  // namespace recforge::data
