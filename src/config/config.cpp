/// @file config.cpp
/// Validation, overrides, dumps and the Markdown reference, all driven by the parameter table
/// (generated from the declarations in sections.cpp).

#include "config/config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <map>
#include <regex>

#include "core/error.h"
#include "core/utf8.h"

namespace recforge::config {
namespace {

// ---- Small helpers ----------------------------------------------------------------------------

std::string section_of(const std::string& path) { return path.substr(0, path.find('.')); }
std::string key_of(const std::string& path) { return path.substr(path.find('.') + 1); }

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

/// A string as a double-quoted YAML (and JSON) scalar.
std::string quoted(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// Section names in order of first use in the table.
std::vector<std::string> section_names(const std::vector<Param>& table) {
  std::vector<std::string> out;
  for (const Param& p : table) {
    const std::string s = section_of(p.path);
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return out;
}

const std::regex& float_re() {
  static const std::regex re("[-+]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][-+]?[0-9]+)?");
  return re;
}

bool is_null_word(const std::string& s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

/// YAML 1.1 boolean words (any case), or nullopt.
std::optional<bool> bool_word(const std::string& s) {
  const std::string l = lower(s);
  if (l == "true" || l == "yes" || l == "on") return true;
  if (l == "false" || l == "no" || l == "off") return false;
  return std::nullopt;
}

/// Whether a plain scalar reads as a literal (number, bool, nan/inf) rather than as text.
bool looks_literal(const std::string& s) {
  if (std::regex_match(s, float_re()) || bool_word(s)) return true;
  const std::string l = lower(s);
  return l == ".nan" || l == "nan" || l == ".inf" || l == "+.inf" || l == "-.inf" || l == "inf" ||
         l == "+inf" || l == "-inf";
}

bool is_plain(const YAML::Node& n) { return n.Tag() == "?"; }

/// A plain scalar, or one with one of YAML's core-schema tags `core` (`!!int 8`); a quoted
/// scalar ("8") or another tag (`!!str 8`) is text.
bool plain_or_tagged(const YAML::Node& n, std::initializer_list<const char*> core) {
  if (is_plain(n)) return true;
  for (const char* c : core)
    if (n.Tag() == std::string("tag:yaml.org,2002:") + c) return true;
  return false;
}

/// "got ..." text for a node: null, a list, a mapping, a literal as written, or quoted text.
std::string render(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return "null";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  const std::string& s = n.Scalar();
  return is_plain(n) && looks_literal(s) ? s : quoted(s);
}

std::string format_number(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

/// Bounds in words: " >= 1", " in (0, 1)", "" when unbounded.
std::string bounds_text(const Param& p) {
  if (p.min && p.max)
    return fmt::format(" in {}{}, {}{}", p.min_exclusive ? "(" : "[", format_number(*p.min),
                       format_number(*p.max), p.max_exclusive ? ")" : "]");
  if (p.min) return fmt::format(" {} {}", p.min_exclusive ? ">" : ">=", format_number(*p.min));
  if (p.max) return fmt::format(" {} {}", p.max_exclusive ? "<" : "<=", format_number(*p.max));
  return "";
}

bool in_bounds(const Param& p, double v) {
  if (p.min && (p.min_exclusive ? !(v > *p.min) : !(v >= *p.min))) return false;
  if (p.max && (p.max_exclusive ? !(v < *p.max) : !(v <= *p.max))) return false;
  return true;
}

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

/// The refusal of an integer beyond what a 32-bit `int` holds (Param::int32), else "".
std::string int32_refusal(const Param& p, const std::vector<int64_t>& values,
                          const std::string& shown) {
  if (!p.int32) return "";
  for (int64_t v : values)
    if (v > kInt32Max)
      return fmt::format("expected {}{}{} at most {} (recforge keeps it in a 32-bit integer), "
                         "got {}",
                         p.type == Type::kIntList ? "a list of integers" : "an integer",
                         bounds_text(p), p.min ? " and" : "", kInt32Max, shown);
  return "";
}

/// The refusal of a whole number beyond what a 64-bit integer holds.
std::string int64_refusal(const Param& p, const std::string& shown) {
  if (p.int32) return int32_refusal(p, {std::numeric_limits<int64_t>::max()}, shown);
  return fmt::format("expected {}{}{} between {} and {} (recforge keeps it in a 64-bit integer), "
                     "got {}",
                     p.type == Type::kIntList ? "a list of integers" : "an integer", bounds_text(p),
                     p.min || p.max ? " and" : "", std::numeric_limits<int64_t>::min(),
                     std::numeric_limits<int64_t>::max(), shown);
}

/// What a valid value looks like, for "expected ..." messages.
std::string expected_text(const Param& p) {
  switch (p.type) {
    case Type::kInt:
      return "an integer" + bounds_text(p);
    case Type::kFloat:
      return "a number" + bounds_text(p);
    case Type::kBool:
      return "true or false";
    case Type::kString:
      return "a string";
    case Type::kEnum:
      return "one of " + join(p.choices, ", ");
    case Type::kIntList:
      return "a list of integers" + bounds_text(p);
  }
  return "";
}

/// A plain scalar read as an integer: "-12", "+7", or decimal notation whose value is a whole
/// number ("1.5e9", "2000.0"; configs often write timestamps so), read exactly from its digits,
/// never through a double. nullopt for anything else; `*overflow` is set for a whole number
/// beyond int64.
std::optional<int64_t> parse_int(const YAML::Node& n, bool* overflow = nullptr) {
  if (overflow) *overflow = false;
  if (!n.IsScalar() || !plain_or_tagged(n, {"int", "float"})) return std::nullopt;
  const std::string& s = n.Scalar();
  if (!std::regex_match(s, float_re())) return std::nullopt;
  size_t i = 0;
  const bool negative = s[0] == '-';
  if (s[0] == '-' || s[0] == '+') ++i;
  std::string digits;  // the value is digits * 10^exponent
  int64_t exponent = 0;
  bool after_point = false;
  for (; i < s.size() && s[i] != 'e' && s[i] != 'E'; ++i) {
    if (s[i] == '.') {
      after_point = true;
    } else {
      digits += s[i];
      if (after_point) --exponent;
    }
  }
  digits.erase(0, std::min(digits.find_first_not_of('0'), digits.size()));
  if (digits.empty()) return 0;  // 0, -0.0, 0e99...
  while (digits.back() == '0') digits.pop_back(), ++exponent;
  if (i < s.size()) {  // the exponent
    std::string e = s.substr(i + 1);
    if (!e.empty() && e[0] == '+') e.erase(0, 1);
    int64_t written = 0;
    const auto [end, ec] = std::from_chars(e.data(), e.data() + e.size(), written);
    const bool read = ec == std::errc() && end == e.data() + e.size();
    if (!read || written > 100000 || written < -100000) {  // far beyond int64, or a tiny fraction
      if (overflow && e[0] != '-') *overflow = true;
      return std::nullopt;
    }
    exponent += written;
  }
  if (exponent < 0) return std::nullopt;  // a fraction remains (trailing zeros are gone)
  if (static_cast<int64_t>(digits.size()) + exponent > 19) {
    if (overflow) *overflow = true;
    return std::nullopt;
  }
  digits.append(static_cast<size_t>(exponent), '0');
  uint64_t magnitude = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude);
  const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + (negative ? 1 : 0);
  if (ec != std::errc() || end != digits.data() + digits.size() || magnitude > limit) {
    if (overflow) *overflow = true;
    return std::nullopt;
  }
  return negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
}

std::optional<double> parse_float(const YAML::Node& n) {
  if (!n.IsScalar() || !plain_or_tagged(n, {"float", "int"})) return std::nullopt;
  std::string s = n.Scalar();
  if (!std::regex_match(s, float_re())) return std::nullopt;
  if (s[0] == '+') s.erase(0, 1);
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

/// Converts a node to a value of `p`; returns "" on success, else "expected ..., got ...".
std::string convert(const Param& p, const YAML::Node& n, Config::Value* out) {
  const std::string fail_text = "expected " + expected_text(p) + ", got " + render(n);
  if (!n.IsDefined() || n.IsNull()) {
    if (!p.optional) return fail_text;
    out->set = false;
    return "";
  }
  switch (p.type) {
    case Type::kInt: {
      bool overflow = false;
      const auto v = parse_int(n, &overflow);
      if (overflow) return int64_refusal(p, render(n));
      if (!v || !in_bounds(p, static_cast<double>(*v))) return fail_text;
      if (std::string why = int32_refusal(p, {*v}, render(n)); !why.empty()) return why;
      out->i = *v;
      break;
    }
    case Type::kFloat: {
      const auto v = parse_float(n);
      if (!v || !in_bounds(p, *v)) return fail_text;
      out->f = *v;
      break;
    }
    case Type::kBool: {
      const auto v =
          n.IsScalar() && plain_or_tagged(n, {"bool"}) ? bool_word(n.Scalar()) : std::nullopt;
      if (!v) return fail_text;
      out->b = *v;
      break;
    }
    case Type::kString: {
      if (!n.IsScalar()) return fail_text;
      if (p.check) {
        const std::string why = p.check(n.Scalar());
        if (!why.empty()) return why + ", got " + render(n);
      }
      out->s = n.Scalar();
      break;
    }
    case Type::kEnum: {
      if (!n.IsScalar() ||
          std::find(p.choices.begin(), p.choices.end(), n.Scalar()) == p.choices.end())
        return fail_text;
      out->s = n.Scalar();
      break;
    }
    case Type::kIntList: {
      // A single integer is a list of one; every element is read as kInt reads its value.
      if (!n.IsScalar() && !n.IsSequence()) return fail_text;
      std::vector<YAML::Node> nodes;
      if (n.IsScalar()) nodes.push_back(n);
      else
        for (const YAML::Node& e : n) nodes.push_back(e);
      std::vector<int64_t> list;
      std::vector<std::string> elements;
      bool ok = true, overflow = false;
      for (const YAML::Node& e : nodes) {
        bool beyond = false;
        const auto v = parse_int(e, &beyond);
        overflow = overflow || beyond;
        ok = ok && v && in_bounds(p, static_cast<double>(*v));
        if (v) list.push_back(*v);
        elements.push_back(render(e));
      }
      const std::string shown = n.IsScalar() ? render(n) : "[" + join(elements, ", ") + "]";
      if (overflow) return int64_refusal(p, shown);
      if (!ok) return "expected " + expected_text(p) + ", got " + shown;
      if (std::string why = int32_refusal(p, list, shown); !why.empty()) return why;
      out->list = std::move(list);
      break;
    }
  }
  out->set = true;
  return "";
}

// ---- Output formatting ------------------------------------------------------------------------

/// A string as a YAML scalar: plain when it reads back as the same string, quoted otherwise.
/// `strict` also quotes words other YAML readers take for booleans or numbers ("off", "0").
std::string yaml_string(const std::string& s, bool strict) {
  bool plain = !s.empty() && !is_null_word(s) &&
               std::all_of(s.begin(), s.end(),
                           [](char c) {
                             return std::isalnum(static_cast<unsigned char>(c)) || c == '_' ||
                                    c == '.' || c == '/' || c == '-';
                           }) &&
               s[0] != '-' && s[0] != '.';
  if (strict && plain)
    plain = !std::isdigit(static_cast<unsigned char>(s[0])) && !bool_word(s) && lower(s) != "y" &&
            lower(s) != "n";
  return plain ? s : quoted(s);
}

std::string yaml_float(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_not_of("-0123456789") == std::string::npos) s += ".0";
  return s;
}

std::string yaml_int_list(const std::vector<int64_t>& list) {
  return fmt::format("[{}]", fmt::join(list, ", "));
}

/// A set value as YAML text.
std::string yaml_value(const Param& p, const Config::Value& v) {
  switch (p.type) {
    case Type::kInt:
      return std::to_string(v.i);
    case Type::kFloat:
      return yaml_float(v.f);
    case Type::kBool:
      return v.b ? "true" : "false";
    case Type::kString:
      return yaml_string(v.s, true);
    case Type::kEnum:
      return yaml_string(v.s, false);
    case Type::kIntList:
      return yaml_int_list(v.list);
  }
  return "";
}

// ---- Suggestions ------------------------------------------------------------------------------

size_t suggestion_limit(const std::string& typed) { return std::max<size_t>(2, typed.size() / 3); }

/// The known path nearest to section.key, or "" when none is near: keys of the same section by
/// edit distance, then other sections' paths by whole-path distance (or key distance + 1, for a
/// key put under the wrong section).
std::string suggest_path(const std::vector<Param>& table, const std::string& section,
                         const std::string& key) {
  const std::string typed = section + "." + key;
  size_t best = std::numeric_limits<size_t>::max();
  std::string best_path;
  for (int pass = 0; pass < 2; ++pass) {
    for (const Param& p : table) {
      const bool same = section_of(p.path) == section;
      if (same != (pass == 0)) continue;
      const size_t d =
          same ? edit_distance(key, key_of(p.path))
               : std::min(edit_distance(typed, p.path), edit_distance(key, key_of(p.path)) + 1);
      if (d < best) best = d, best_path = p.path;
    }
  }
  return best <= suggestion_limit(key) ? best_path : "";
}

/// "unknown key; did you mean ...?" or "unknown key; known keys in <section>: ...".
std::string unknown_key_text(const std::vector<Param>& table, const std::string& section,
                             const std::string& key) {
  const std::string near = suggest_path(table, section, key);
  if (!near.empty()) return fmt::format("unknown key; did you mean \"{}\"?", near);
  std::vector<std::string> keys;
  for (const Param& p : table)
    if (section_of(p.path) == section) keys.push_back(key_of(p.path));
  if (keys.empty()) return "unknown key; known sections: " + join(section_names(table), ", ");
  return fmt::format("unknown key; known keys in {}: {}", section, join(keys, ", "));
}

std::string unknown_section_text(const std::vector<Param>& table, const std::string& name) {
  const std::vector<std::string> names = section_names(table);
  size_t best = std::numeric_limits<size_t>::max();
  std::string near;
  for (const std::string& s : names) {
    const size_t d = edit_distance(name, s);
    if (d < best) best = d, near = s;
  }
  if (best > suggestion_limit(name)) {
    // A key written at the top level ("seed: 1") suggests its full path.
    near.clear();
    for (const Param& p : table)
      if (key_of(p.path) == name) {
        near = p.path;
        break;
      }
  }
  if (!near.empty()) return fmt::format("unknown section; did you mean \"{}\"?", near);
  return "unknown section; known sections: " + join(names, ", ");
}

// ---- Table checks and defaults ----------------------------------------------------------------

void validate_table(const std::vector<Param>& table) {
  const auto model_type = std::find_if(table.begin(), table.end(),
                                       [](const Param& q) { return q.path == "model.type"; });
  for (size_t i = 0; i < table.size(); ++i) {
    const Param& p = table[i];
    const size_t dot = p.path.find('.');
    RF_ASSERT(dot != std::string::npos && dot > 0 && dot + 1 < p.path.size() &&
                  p.path.find('.', dot + 1) == std::string::npos,
              "config parameter path '" + p.path + "' is not section.key");
    for (size_t j = 0; j < i; ++j)
      RF_ASSERT(table[j].path != p.path, "config parameter '" + p.path + "' declared twice");
    RF_ASSERT((p.type == Type::kEnum) == !p.choices.empty(),
              "config parameter '" + p.path + "': choices are for (and required by) enums");
    RF_ASSERT(!p.check || p.type == Type::kString,
              "config parameter '" + p.path + "': check is for strings only");
    RF_ASSERT(!p.description.empty(), "config parameter '" + p.path + "' has no description");
    RF_ASSERT(!p.default_yaml.empty() || p.optional,
              "config parameter '" + p.path + "' has no default and is not optional");
    for (const auto& [type, yaml] : p.model_defaults) {
      RF_ASSERT(model_type != table.end() &&
                    std::find(model_type->choices.begin(), model_type->choices.end(), type) !=
                        model_type->choices.end(),
                "config parameter '" + p.path + "': a default for unknown model.type '" + type +
                    "'");
      Config::Value v;
      RF_ASSERT(convert(p, YAML::Load(yaml), &v).empty(),
                "config parameter '" + p.path + "': its default for " + type + " is invalid");
    }
  }
}

/// The origin (Config::Value::where) of a value at its model.type's own default.
std::string model_default_origin(const std::string& type) { return "default for model.type " + type; }

Config::Value default_value(const Param& p) {
  Config::Value v;
  if (p.default_yaml.empty()) return v;  // optional without default: unset
  YAML::Node n;
  try {
    n = YAML::Load(p.default_yaml);
  } catch (const YAML::Exception& e) {
    RF_ASSERT(false, "default of config parameter '" + p.path + "' is not YAML: " + e.msg);
  }
  const std::string err = convert(p, n, &v);
  RF_ASSERT(err.empty(), "default of config parameter '" + p.path + "' is invalid: " + err);
  return v;
}

std::string location(const std::string& name, const YAML::Mark& m) {
  if (m.is_null()) return name;
  return fmt::format("{}:{}:{}", name, m.line + 1, m.column + 1);
}

// What YAML::Load would ignore without a word: a second document (a line "---" after content,
// or content after a "..." line), and a first document that yaml-cpp read as empty although
// the text holds more than comments (a first line starting with ',' made the whole file read as
// null, that is all defaults).
void require_one_document(const YAML::Node& root, const std::string& text, const std::string& name) {
  auto marker = [](const std::string& line, const char* m) {
    return line.compare(0, 3, m) == 0 &&
           (line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r');
  };
  bool ended = false;
  std::string first;  // the first line of content, trimmed
  size_t first_line = 0, first_col = 0, line_no = 0;
  for (size_t b = 0; b < text.size();) {
    size_t e = text.find('\n', b);
    if (e == std::string::npos) e = text.size();
    std::string line = text.substr(b, e - b);
    b = e + 1;
    if (++line_no == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);
    if (marker(line, "---")) {
      if (!first.empty() || ended)
        fail("{}:{}:1: a second YAML document starts here (\"---\"); a config is one document: "
             "merge the two or remove the \"---\" line",
             name, line_no);
      continue;
    }
    if (marker(line, "...")) {
      ended = true;
      continue;
    }
    const size_t at = line.find_first_not_of(" \t\r");
    if (at == std::string::npos || line[at] == '#' || (line[at] == '%' && first.empty())) continue;
    if (ended)
      fail("{}:{}:{}: this follows the end of the YAML document (\"...\"); a config is one "
           "document: remove the \"...\" line",
           name, line_no, at + 1);
    if (first.empty()) {
      first = line.substr(at, line.find_last_not_of(" \t\r") + 1 - at);
      first_line = line_no;
      first_col = at + 1;
    }
  }
  // "~" or "null" alone is a null document on purpose (all defaults).
  if (!first.empty() && (!root.IsDefined() || root.IsNull()) && first != "~" &&
      first != "null" && first != "Null" && first != "NULL")
    fail("{}:{}:{}: invalid YAML: the document cannot start with this line (yaml-cpp reads the "
         "whole file as empty); expected `section:` lines such as `model:`",
         name, first_line, first_col);
}

// A quoted scalar (key or value) ends on the line it starts on. yaml-cpp lets a double- or
// single-quoted value whose closing quote is missing run on over the following lines (folded
// into spaces) up to the end of the file, so `name: "exp1` would swallow the sections below it
// without an error. A config never needs a value over several lines.
void check_closed_quote(const YAML::Node& node, const std::string& text, const std::string& name) {
  const YAML::Mark m = node.Mark();
  // yaml-cpp counts positions after a byte order mark.
  const size_t bom = text.rfind("\xEF\xBB\xBF", 0) == 0 ? 3 : 0;
  if (m.is_null() || m.pos < 0 || static_cast<size_t>(m.pos) + bom >= text.size()) return;
  const size_t at = static_cast<size_t>(m.pos) + bom;
  const char quote = text[at];
  if (quote != '"' && quote != '\'') return;
  for (size_t i = at + 1; i < text.size(); ++i) {
    const char ch = text[i];
    if (ch == '\n' || ch == '\r') break;
    if (quote == '"' && ch == '\\') {
      ++i;  // an escaped character (\" included)
      continue;
    }
    if (ch == quote) {
      if (quote == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
        ++i;  // '' is a quote inside a single-quoted value
        continue;
      }
      return;
    }
  }
  fail("{}: the value quoted with {} here has no closing {} on its line; a config value is "
       "one line (close the quote)",
       location(name, m), quote, quote);
}

// A config has a few hundred values; YAML aliases (`*a`) can make a short text expand to
// exponentially many, each visited by every walk over the document.
constexpr int64_t kMaxConfigNodes = 100000;

// Every scalar (key or value) of `node`: UTF-8 after yaml-cpp's escapes, no NUL, and, when
// `text` (the YAML the node was read from) is given, check_closed_quote. One walk, bounded to
// kMaxConfigNodes visits.
void check_scalars(const YAML::Node& node, const std::string& name, const std::string* text,
                   int64_t& visited) {
  if (++visited > kMaxConfigNodes)
    fail("{}: the document expands to over {} values (YAML aliases?); a config is a few hundred "
         "settings",
         name, kMaxConfigNodes);
  if (node.IsScalar()) {
    const std::string& value = node.Scalar();
    const size_t i = first_non_utf8(value);
    if (i != std::string::npos)
      fail("{}: this value decodes to byte 0x{:02X}, which is not UTF-8 (yaml-cpp turns the "
           "escapes \\_ and \\N into single bytes); write the character itself",
           location(name, node.Mark()), static_cast<unsigned char>(value[i]));
    // "\0" in a double-quoted value: a path or name with a NUL would be cut there by every
    // system call, so another file than the one shown would be read or written.
    if (value.find('\0') != std::string::npos)
      fail("{}: this value holds a NUL byte (the escape \\0); settings are text without NUL",
           location(name, node.Mark()));
    if (text) check_closed_quote(node, *text, name);
  } else if (node.IsSequence()) {
    for (const YAML::Node& e : node) check_scalars(e, name, text, visited);
  } else if (node.IsMap()) {
    for (const auto& kv : node) {
      check_scalars(kv.first, name, text, visited);
      check_scalars(kv.second, name, text, visited);
    }
  }
}

}  // namespace

// ---- Public helpers ---------------------------------------------------------------------------

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

const Param* find_param(const std::string& path) {
  for (const Param& p : params())
    if (p.path == path) return &p;
  return nullptr;
}

/// Implementation of Config's construction and parsing (a friend of Config).
struct ConfigBuilder {
  /// Defaults of a table, after checking the table itself.
  static Config defaults(const std::vector<Param>& table) {
    validate_table(table);
    Config c(&table);
    c.typed_ = &table == &params();
    c.values_.reserve(table.size());
    for (const Param& p : table) c.values_.push_back(default_value(p));
    if (c.typed_) {
      // The table's defaults are the Settings' member initializers by construction; filling
      // settings_ from the values keeps the two views one.
      for (size_t i = 0; i < table.size(); ++i) detail::store_field(c.settings_, i, c.values_[i]);
    }
    return c;
  }

  /// Reads YAML text and overrides on top of `c` (the table's defaults).
  static Config parse_into(Config c, const std::string& yaml_text, const std::string& name,
                           const std::vector<std::string>& overrides,
                           Config::Checks checks = Config::Checks::kAll) {
    c.source_ = name;
    require_utf8(yaml_text, name);
    YAML::Node root;
    try {
      // YAML::Load reads the first document only (YAML::LoadAll never returns on some inputs,
      // e.g. a line starting with ','); require_one_document says what it would ignore.
      root = YAML::Load(yaml_text);
    } catch (const YAML::Exception& e) {
      fail("{}: invalid YAML: {}", location(name, e.mark), e.msg);
    }
    require_one_document(root, yaml_text, name);
    int64_t visited = 0;
    check_scalars(root, name, &yaml_text, visited);
    apply_document(c, root, name);
    resolve_model_defaults(c);
    for (const std::string& o : overrides) c.set(o);
    if (c.typed_ && checks == Config::Checks::kAll) check(c);
    return c;
  }

  /// Applies a parsed YAML document (the whole file) to `c`.
  static void apply_document(Config& c, const YAML::Node& root, const std::string& name) {
    const std::vector<Param>& table = *c.table_;
    if (!root.IsDefined() || root.IsNull()) return;  // empty file: all defaults
    if (!root.IsMap())
      fail("{}: expected a mapping of sections, got {}", location(name, root.Mark()), render(root));
    std::map<std::string, int> seen_sections;
    for (const auto& sec : root) {
      const YAML::Node& sk = sec.first;
      const std::string at = location(name, sk.Mark());
      if (!sk.IsScalar()) fail("{}: expected a section name, got {}", at, render(sk));
      const std::string section = sk.Scalar();
      const auto names = section_names(table);
      if (std::find(names.begin(), names.end(), section) == names.end())
        fail("{}: {}: {}", at, section, unknown_section_text(table, section));
      if (!seen_sections.emplace(section, sk.Mark().line + 1).second)
        fail("{}: {}: duplicate section, first given at line {}", at, section,
             seen_sections[section]);
      const YAML::Node& body = sec.second;
      if (body.IsNull()) continue;  // "data:" with everything commented out
      if (!body.IsMap())
        fail("{}: {}: expected a mapping of {} settings, got {}", at, section, section,
             render(body));
      std::map<std::string, int> seen_keys;
      for (const auto& kv : body) {
        const YAML::Node& k = kv.first;
        const std::string kat = location(name, k.Mark());
        if (!k.IsScalar()) fail("{}: {}: expected a key name, got {}", kat, section, render(k));
        const std::string path = section + "." + k.Scalar();
        const size_t idx = find_index(table, path);
        if (idx == table.size())
          fail("{}: {}: {}", kat, path, unknown_key_text(table, section, k.Scalar()));
        if (!seen_keys.emplace(path, k.Mark().line + 1).second)
          fail("{}: {}: duplicate key, first given at line {}", kat, path, seen_keys[path]);
        store(c, idx, kv.second, kat, kat);
      }
    }
  }

  /// Sets every parameter that is still at a default (its table default, or the default of an
  /// earlier model.type) to the default of the current model.type (Param::model_defaults).
  /// Called after the file and after every --set, so a default follows model.type wherever it
  /// is given, and a value from the file or --set is never replaced.
  static void resolve_model_defaults(Config& c) {
    if (!c.typed_) return;
    const std::vector<Param>& table = *c.table_;
    const std::string type = c.values_[find_index(table, "model.type")].s;
    for (size_t i = 0; i < table.size(); ++i) {
      const Param& p = table[i];
      if (p.model_defaults.empty()) continue;
      const std::string& where = c.values_[i].where;
      if (where != "default" && where.rfind(model_default_origin(""), 0) != 0) continue;
      std::string yaml = p.default_yaml;
      std::string origin = "default";
      for (const auto& [t, y] : p.model_defaults)
        if (t == type) yaml = y, origin = model_default_origin(t);
      store(c, i, YAML::Load(yaml), origin, origin);
    }
  }

  /// Value `idx` of `c`.
  static const Config::Value& value(const Config& c, size_t idx) { return c.values_[idx]; }

  /// Index of `path` in `table`, or table.size() when absent.
  static size_t find_index(const std::vector<Param>& table, const std::string& path) {
    for (size_t i = 0; i < table.size(); ++i)
      if (table[i].path == path) return i;
    return table.size();
  }

  /// Validates `node` for parameter `idx` and stores it; `prefix` starts error messages.
  static void store(Config& c, size_t idx, const YAML::Node& node, const std::string& prefix,
                    const std::string& where) {
    const Param& p = (*c.table_)[idx];
    Config::Value v;
    const std::string err = convert(p, node, &v);
    if (!err.empty()) fail("{}: {}: {}", prefix, p.path, err);
    v.where = where;
    if (c.typed_) detail::store_field(c.settings_, idx, v);
    c.values_[idx] = std::move(v);
  }
};

// ---- Config -----------------------------------------------------------------------------------

Config Config::defaults() {
  static const Config builtin = ConfigBuilder::defaults(params());
  return builtin;
}

Config Config::defaults(const std::vector<Param>& table) { return ConfigBuilder::defaults(table); }

Config Config::load(const std::string& path, const std::vector<std::string>& overrides,
                    Checks checks) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("{}: cannot open config file: {}", path, std::strerror(errno));
  std::string text;
  char buf[65536];
  size_t n;
  // A config is a small text file; a device or a runaway pipe (/dev/zero) must not be read
  // until memory runs out.
  constexpr size_t kMaxConfigBytes = size_t{1} << 20;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    text.append(buf, n);
    if (text.size() > kMaxConfigBytes) {
      std::fclose(f);
      fail("{}: the config file is over 1 MiB; expected a YAML config of a few hundred lines",
           path);
    }
  }
  const int read_errno = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (read_errno) fail("{}: cannot read config file: {}", path, std::strerror(read_errno));
  return parse(text, path, overrides, checks);
}

Config Config::parse(const std::string& yaml_text, const std::string& name,
                     const std::vector<std::string>& overrides, Checks checks) {
  return ConfigBuilder::parse_into(defaults(), yaml_text, name, overrides, checks);
}

Config Config::parse(const std::vector<Param>& table, const std::string& yaml_text,
                     const std::string& name, const std::vector<std::string>& overrides) {
  return ConfigBuilder::parse_into(defaults(table), yaml_text, name, overrides);
}

void Config::set(const std::string& assignment) {
  require_utf8(assignment, "--set");
  const std::string prefix = "--set " + assignment;
  const size_t eq = assignment.find('=');
  const std::string path = eq == std::string::npos ? "" : trim(assignment.substr(0, eq));
  const size_t dot = path.find('.');
  if (path.empty() || dot == std::string::npos || dot == 0 || dot + 1 == path.size())
    fail("{}: expected section.key=value", prefix);
  const size_t idx = ConfigBuilder::find_index(*table_, path);
  if (idx == table_->size())
    fail("{}: {}: {}", prefix, path,
         unknown_key_text(*table_, path.substr(0, dot), path.substr(dot + 1)));
  YAML::Node value;
  try {
    value = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    fail("{}: {}: invalid YAML value: {}", prefix, path, e.msg);
  }
  // Text that YAML reads as nothing (",", "#x") is what was typed, not null: a value refused
  // is then quoted as given ("got \",\"", not "got null"). Only ~, null and the empty text unset.
  const std::string raw = trim(assignment.substr(eq + 1));
  if (value.IsNull() && !raw.empty() && raw != "~" && raw != "null" && raw != "Null" &&
      raw != "NULL")
    value = YAML::Node(raw);
  const std::string value_text = assignment.substr(eq + 1);
  int64_t visited = 0;
  check_scalars(value, prefix, &value_text, visited);
  ConfigBuilder::store(*this, idx, value, prefix, prefix);
  ConfigBuilder::resolve_model_defaults(*this);
}

size_t Config::index_of(const std::string& path, std::optional<Type> type) const {
  const size_t idx = ConfigBuilder::find_index(*table_, path);
  RF_ASSERT(idx < table_->size(), "unknown config parameter '" + path + "'");
  if (type) {
    const Type t = (*table_)[idx].type;
    const bool ok = t == *type || (*type == Type::kString && t == Type::kEnum);
    RF_ASSERT(ok, "config parameter '" + path + "' read with a getter of the wrong type");
  }
  return idx;
}

const Config::Value& Config::checked(const std::string& path, Type type) const {
  const Value& v = values_[index_of(path, type)];
  RF_ASSERT(v.set, "config parameter '" + path + "' is unset; check is_set() first");
  return v;
}

const Settings& Config::settings() const {
  RF_ASSERT(typed_, "settings() of a config of a caller-supplied table");
  return settings_;
}

int64_t Config::get_int(const std::string& path) const { return checked(path, Type::kInt).i; }
double Config::get_float(const std::string& path) const { return checked(path, Type::kFloat).f; }
bool Config::get_bool(const std::string& path) const { return checked(path, Type::kBool).b; }
const std::string& Config::get_string(const std::string& path) const {
  return checked(path, Type::kString).s;
}
std::vector<int64_t> Config::get_int_list(const std::string& path) const {
  return checked(path, Type::kIntList).list;
}
bool Config::is_set(const std::string& path) const {
  return values_[index_of(path, std::nullopt)].set;
}
std::string Config::where(const std::string& path) const {
  return values_[index_of(path, std::nullopt)].where;
}

void Config::set_where(const std::string& path, const std::string& where) {
  values_[index_of(path, std::nullopt)].where = where;
}

nlohmann::json Config::origins() const {
  nlohmann::json where = nlohmann::json::object();
  for (size_t i = 0; i < table_->size(); ++i) where[(*table_)[i].path] = values_[i].where;
  return {{"source", source_}, {"where", std::move(where)}};
}

void Config::restore_origins(const nlohmann::json& recorded, const std::string& replaced,
                             const std::vector<std::string>& also) {
  if (!recorded.is_object() || !recorded.contains("where") || !recorded["where"].is_object())
    return;
  const nlohmann::json& where = recorded["where"];
  for (size_t i = 0; i < table_->size(); ++i) {
    Value& v = values_[i];
    const auto it = where.find((*table_)[i].path);
    if (it == where.end() || !it->is_string()) continue;
    const bool reread = v.where.rfind(replaced, 0) == 0 &&
                        (v.where.size() == replaced.size() || v.where[replaced.size()] == ':');
    if (reread || std::find(also.begin(), also.end(), v.where) != also.end())
      v.where = it->get<std::string>();
  }
  if (recorded.contains("source") && recorded["source"].is_string())
    source_ = recorded["source"].get<std::string>();
}

std::string Config::to_yaml() const {
  std::string out = "# Resolved recforge configuration";
  out += source_.empty() ? ".\n" : " (from " + source_ + ").\n";
  std::string section;
  for (size_t i = 0; i < table_->size(); ++i) {
    const Param& p = (*table_)[i];
    const Value& v = values_[i];
    if (section_of(p.path) != section) {
      section = section_of(p.path);
      out += section + ":\n";
    }
    if (!v.set) {
      out += fmt::format("  # {}: (unset)\n", key_of(p.path));
      continue;
    }
    out += fmt::format("  {}: {}", key_of(p.path), yaml_value(p, v));
    if (v.where != "default") {
      std::string origin = v.where;
      std::replace(origin.begin(), origin.end(), '\n', ' ');
      std::replace(origin.begin(), origin.end(), '\r', ' ');
      out += "  # " + origin;
    }
    out += "\n";
  }
  return out;
}

nlohmann::json Config::to_json() const {
  nlohmann::json out = nlohmann::json::object();
  for (size_t i = 0; i < table_->size(); ++i) {
    const Param& p = (*table_)[i];
    const Value& v = values_[i];
    nlohmann::json& slot = out[section_of(p.path)][key_of(p.path)];
    if (!v.set) {
      slot = nullptr;
      continue;
    }
    switch (p.type) {
      case Type::kInt:
        slot = v.i;
        break;
      case Type::kFloat:
        slot = v.f;
        break;
      case Type::kBool:
        slot = v.b;
        break;
      case Type::kString:
      case Type::kEnum:
        slot = v.s;
        break;
      case Type::kIntList:
        slot = v.list;
        break;
    }
  }
  return out;
}

namespace {

bool same_value(Type type, const Config::Value& a, const Config::Value& b) {
  if (a.set != b.set) return false;
  if (!a.set) return true;
  switch (type) {
    case Type::kInt:
      return a.i == b.i;
    case Type::kFloat:
      return a.f == b.f;
    case Type::kBool:
      return a.b == b.b;
    case Type::kString:
    case Type::kEnum:
      return a.s == b.s;
    case Type::kIntList:
      return a.list == b.list;
  }
  return false;
}

}  // namespace

bool Config::operator==(const Config& other) const {
  if (table_ != other.table_) return false;
  for (size_t i = 0; i < values_.size(); ++i)
    if (!same_value((*table_)[i].type, values_[i], other.values_[i])) return false;
  return true;
}

bool operator==(const Settings& a, const Settings& b) {
  const std::vector<Param>& table = params();
  for (size_t i = 0; i < table.size(); ++i)
    if (!same_value(table[i].type, detail::load_field(a, i), detail::load_field(b, i)))
      return false;
  return true;
}

void require_utf8_scalars(const YAML::Node& node, const std::string& name) {
  int64_t visited = 0;
  check_scalars(node, name, nullptr, visited);
}

// ---- Markdown reference -----------------------------------------------------------------------

namespace {

std::string type_name(Type t) {
  switch (t) {
    case Type::kInt:
      return "integer";
    case Type::kFloat:
      return "number";
    case Type::kBool:
      return "boolean";
    case Type::kString:
      return "string";
    case Type::kEnum:
      return "enum";
    case Type::kIntList:
      return "integer list";
  }
  return "";
}

std::string allowed_markdown(const Param& p) {
  std::string bounds = bounds_text(p);
  if (!bounds.empty()) bounds.erase(0, 1);  // leading space
  if (bounds.rfind("in ", 0) == 0) bounds.erase(0, 3);
  switch (p.type) {
    case Type::kInt:
    case Type::kFloat:
      return bounds.empty() ? "any" : bounds;
    case Type::kBool:
      return "`true`, `false`";
    case Type::kString:
      return p.allowed.empty() ? "any" : p.allowed;
    case Type::kEnum: {
      std::vector<std::string> c;
      for (const std::string& s : p.choices) c.push_back("`" + s + "`");
      return join(c, ", ");
    }
    case Type::kIntList:
      return bounds.empty() ? "any" : "each " + bounds;
  }
  return "";
}

std::string cell(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out;
}

}  // namespace

std::string markdown_reference(const std::vector<Param>& table,
                               const std::vector<Section>& section_list) {
  const Config defaults = Config::defaults(table);
  std::string out;
  out +=
      "# Configuration reference\n"
      "\n"
      "<!-- Generated from the declarations in src/config/sections.cpp by `recforge config "
      "--markdown`; "
      "do not edit by hand. -->\n"
      "\n"
      "recforge reads its settings from a YAML file made of sections, each a mapping of keys to "
      "values:\n"
      "\n"
      "```yaml\n"
      "data:\n"
      "  path: data/ratings.csv\n"
      "  header: true\n"
      "  user_col: userId\n"
      "  item_col: movieId\n"
      "split:\n"
      "  method: leave_last\n"
      "```\n"
      "\n"
      "- Every setting has a default, so a file lists only the settings it changes; an empty "
      "file is valid.\n"
      "- `--set section.key=value` on the command line overrides one setting and may be "
      "repeated. Overrides are applied after the file, in order, and the value is read as YAML: "
      "`--set split.method=time`, `--set split.test_fraction=0.1`.\n"
      "- Unknown keys and invalid values are errors that name the file, line and column (or the "
      "`--set` argument) and what was expected.\n"
      "- Combinations of settings that cannot work together (for example an `eval.metric` whose "
      "K is not in `eval.ks`, or `model.patience` without `model.eval_every`) are refused the "
      "same way, by `recforge config` as by `recforge train`. What depends on the machine or the "
      "data (the device `train.device: auto` picks, a column missing from the file, an empty "
      "validation set) is checked when `recforge train` meets it.\n"
      "- Settings whose default is *unset* are optional: leave them out, or write `null` or `~`.\n"
      "- A few `model` settings have defaults that depend on `model.type`, listed after the "
      "general default in the Default column (for example `model.negatives`): a setting left "
      "out takes the default of the `model.type` in force, wherever that is given. `recforge "
      "config FILE` prints every value with where it came from.\n"
      "- Types: *integer* is a whole number, in any notation without a fraction (`64`, `1.5e9`, "
      "read exactly, never rounded); *number* is an integer or a decimal "
      "(`0.5`, `1e-3`); *boolean* is `true` or `false` (`yes`/`no` and `on`/`off` also work); "
      "*string* is any text (quote it only when YAML requires); *enum* is one of the listed "
      "words; *integer list* is `[20, 50]` or a single integer.\n"
      "- Ranges: `[a, b]` includes both ends, `(a, b)` excludes them. An integer is at most "
      "2147483647 (2^31 - 1, recforge keeps most in 32 bits) besides its range, except the "
      "seeds, `synthetic.interactions` and `split.cutoff` (64 bits).\n";
  for (const std::string& name : section_names(table)) {
    out += "\n## " + name + "\n\n";
    for (const Section& s : section_list)
      if (s.name == name && !s.description.empty()) out += cell(s.description) + "\n\n";
    out += "| Key | Type | Default | Allowed | Description |\n";
    out += "|-----|------|---------|---------|-------------|\n";
    for (size_t i = 0; i < table.size(); ++i) {
      const Param& p = table[i];
      if (section_of(p.path) != name) continue;
      std::string def = defaults.is_set(p.path)
                            ? "`" + yaml_value(p, ConfigBuilder::value(defaults, i)) + "`"
                            : "*unset*";
      for (const auto& [type, yaml] : p.model_defaults) def += "; " + type + ": `" + yaml + "`";
      out += fmt::format("| `{}` | {} | {} | {} | {} |\n", p.path, type_name(p.type), cell(def),
                         cell(allowed_markdown(p)), cell(p.description));
    }
  }
  return out;
}

std::string markdown_reference() { return markdown_reference(params(), sections()); }

}  // namespace recforge::config
