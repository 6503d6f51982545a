#include "core/utf8.h"

#include <algorithm>
#include <cstdint>

#include "core/error.h"

namespace recforge {

size_t utf8_sequence_length(std::string_view text, size_t i) {
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};  // shortest forms only
  const auto c = static_cast<unsigned char>(text[i]);
  size_t len = 0;  // bytes of the sequence starting at i; 0 when invalid
  uint32_t cp = 0;
  if (c < 0x80) len = 1, cp = c;
  else if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
  else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
  else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
  for (size_t k = 1; k < len; ++k) {
    const auto cc = i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0;
    if ((cc & 0xC0) != 0x80) len = 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if (len > 1 && (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) len = 0;
  return len;
}

size_t first_non_utf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const size_t len = utf8_sequence_length(text, i);
    if (len == 0) return i;
    i += len;
  }
  return std::string_view::npos;
}

void require_utf8(const std::string& text, const std::string& name) {
  const size_t i = first_non_utf8(text);
  if (i == std::string::npos) return;
  const auto c = static_cast<unsigned char>(text[i]);
  const size_t line = 1 + std::count(text.begin(), text.begin() + i, '\n');
  const size_t newline = i == 0 ? std::string::npos : text.rfind('\n', i - 1);
  const size_t col = newline == std::string::npos ? i + 1 : i - newline;
  fail("{}:{}:{}: byte 0x{:02X} is not UTF-8; expected UTF-8 text", name, line, col, c);
}

}  // namespace recforge
