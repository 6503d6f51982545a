#pragma once
/// @file config.h
/// The configuration system. Every parameter is declared once, as a typed field of a section
/// struct (sections.h) declared in sections.cpp; the parameter table params(), YAML validation,
/// `--set` overrides, the resolved-config dump and the Markdown reference
/// (docs/configuration.md) are all generated from those declarations. Config::settings() gives
/// the values as those typed structs.

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/sections.h"

namespace YAML {
class Node;  // yaml-cpp
}  // namespace YAML

namespace recforge::config {

/// Value type of a parameter.
enum class Type { kInt, kFloat, kBool, kString, kEnum, kIntList };

/// One declared parameter.
struct Param {
  /// Dotted path "section.key" (exactly one dot), e.g. "model.factors".
  std::string path;
  /// Value type.
  Type type;
  /// Default as YAML text ("42", "0.5", "true", "sum", "[20, 50]"); empty with `optional` means
  /// "no default" (the parameter starts unset).
  std::string default_yaml;
  /// May be left unset (omitted, or `null`/`~`); getters then throw InternalError, see is_set().
  bool optional = false;
  /// Numeric lower bound (ints, floats, each element of int lists).
  std::optional<double> min;
  /// Numeric upper bound (ints, floats, each element of int lists).
  std::optional<double> max;
  /// Whether `min` itself is excluded.
  bool min_exclusive = false;
  /// Whether `max` itself is excluded.
  bool max_exclusive = false;
  /// An integer (or integer list) that the code uses as a 32-bit `int`: values above 2^31 - 1
  /// are refused besides `max` (which the reference shows; this limit is stated once for all).
  bool int32 = false;
  /// Allowed values of a kEnum parameter.
  std::vector<std::string> choices;
  /// Defaults that depend on `model.type`: (type, YAML text) pairs. A value still at a default
  /// takes the one of the current model.type, or `default_yaml` for other types, and follows
  /// model.type when that changes; a value from the file or `--set` is kept.
  std::vector<std::pair<std::string, std::string>> model_defaults;
  /// One or two sentences for the reference documentation.
  std::string description;
  /// Optional extra check of a kString value: returns "" when valid, else the "expected ..." text.
  std::function<std::string(const std::string&)> check;
  /// Text of the reference's "allowed" column for a parameter with `check` (e.g. "`auto`, `cpu`").
  std::string allowed;
};

/// One configuration section (the part of a path before the dot), for the reference docs.
struct Section {
  /// Section name, e.g. "data".
  std::string name;
  /// One sentence describing the section.
  std::string description;
};

/// The parameter table, in documentation order (sections appear in first-use order), generated
/// from the declarations in sections.cpp.
const std::vector<Param>& params();

/// Descriptions of the sections used by params(), in the same order.
const std::vector<Section>& sections();

/// The parameter with this path, or nullptr if unknown.
const Param* find_param(const std::string& path);

/// A complete, validated set of parameter values with the origin of each value.
///
/// A Config refers to the parameter table it was built from: params() for defaults(), load() and
/// parse(), or a caller's table (which must outlive the Config) for the table overloads.
class Config {
 public:
  /// All parameters at their defaults (optionals without default unset).
  static Config defaults();
  /// Defaults of a caller-supplied table (validated; throws InternalError on a bad table).
  static Config defaults(const std::vector<Param>& table);

  /// What load() and parse() check: every value against its declaration and then the
  /// combinations of values (config::check), or the values only (for a sweep's base config,
  /// whose trials replace some values and are checked when they train).
  enum class Checks { kAll, kValuesOnly };

  /// Loads a YAML file, applies overrides ("section.key=value"), validates each value and then
  /// (kAll) the combinations of values (config::check). Throws recforge::Error.
  static Config load(const std::string& path, const std::vector<std::string>& overrides = {},
                     Checks checks = Checks::kAll);

  /// Same from YAML text; `name` is used as the file name in messages.
  static Config parse(const std::string& yaml_text, const std::string& name,
                      const std::vector<std::string>& overrides = {},
                      Checks checks = Checks::kAll);
  /// Same against a caller-supplied table.
  static Config parse(const std::vector<Param>& table, const std::string& yaml_text,
                      const std::string& name, const std::vector<std::string>& overrides = {});

  /// Applies one override "section.key=value" (value parsed as a YAML scalar or flow sequence;
  /// an empty value is YAML null, which unsets an optional parameter). Throws recforge::Error.
  /// Checks the value, not its combination with others: call config::check() after the last.
  void set(const std::string& assignment);

  /// Every value, typed (only for configs of the built-in table params(); the others throw
  /// InternalError). Code outside src/config and the sweep reads parameters here, not by path.
  const Settings& settings() const;

  /// Value of a kInt parameter (by path: for code that handles parameters generically, such as
  /// the sweep; everything else reads settings()).
  int64_t get_int(const std::string& path) const;
  /// Value of a kFloat parameter.
  double get_float(const std::string& path) const;
  /// Value of a kBool parameter.
  bool get_bool(const std::string& path) const;
  /// Value of a kString or kEnum parameter.
  const std::string& get_string(const std::string& path) const;
  /// Value of a kIntList parameter.
  std::vector<int64_t> get_int_list(const std::string& path) const;
  /// False only for optional parameters left unset.
  bool is_set(const std::string& path) const;

  /// Where a value came from, for error messages: "configs/x.yaml:7:3", "--set data.path=foo",
  /// or "default".
  std::string where(const std::string& path) const;

  /// The source file name given to load/parse ("" for defaults()).
  const std::string& source() const { return source_; }

  /// Names `where` as the origin of the value at `path` (a known parameter): for values set by
  /// code on behalf of a file, such as a sweep's searched values.
  void set_where(const std::string& path, const std::string& where);

  /// Every value's origin (where()) by path, and the source, as JSON: what a checkpoint keeps
  /// so that a resumed run's config.yaml and run.json name the files the values came from.
  nlohmann::json origins() const;
  /// Restores what origins() recorded: the source, and the origin of each value whose where()
  /// is now `replaced` (the checkpoint file it was re-read from) or one of `also` (the
  /// assignments that name the run on `train --resume`). Values set otherwise keep theirs.
  void restore_origins(const nlohmann::json& recorded, const std::string& replaced,
                       const std::vector<std::string>& also);

  /// Fully resolved config as YAML: every parameter, sections in table order, strings quoted
  /// where needed, unset optionals as comment lines `# key: (unset)`. parse() of the result gives
  /// an equal Config.
  std::string to_yaml() const;

  /// Same as a JSON object nested by section (unset optionals are null), for manifests.
  nlohmann::json to_json() const;

  /// True when both have the same table and equal values (origins and source are ignored).
  bool operator==(const Config& other) const;
  /// Negation of operator==.
  bool operator!=(const Config& other) const { return !(*this == other); }

  /// One parameter's value; only the member matching the parameter's type is meaningful.
  struct Value {
    bool set = false;               ///< false for an unset optional
    int64_t i = 0;                  ///< kInt
    double f = 0;                   ///< kFloat
    bool b = false;                 ///< kBool
    std::string s;                  ///< kString, kEnum
    std::vector<int64_t> list;      ///< kIntList
    std::string where = "default";  ///< origin, see where()
  };

 private:
  explicit Config(const std::vector<Param>* table) : table_(table) {}
  size_t index_of(const std::string& path, std::optional<Type> type) const;
  const Value& checked(const std::string& path, Type type) const;

  const std::vector<Param>* table_;
  std::vector<Value> values_;  // parallel to *table_
  std::string source_;
  bool typed_ = false;  // table_ is params(): settings_ mirrors values_
  Settings settings_;

  friend struct ConfigBuilder;
};

/// The checks that relate two or more parameters (eval.metric's K in eval.ks, model.patience
/// needs model.eval_every, the data format's columns, the split's files, the model's option
/// combinations, ...): throws recforge::Error naming the file:line of the offending key. load()
/// and parse() run it after the overrides, and so does pipeline::train, so `recforge config`
/// and `recforge train` refuse the same configs. Checks that need the device or the data stay
/// where those are known. Only for configs of the built-in table.
void check(const Config& cfg);

/// The model settings that depend on the device the run trains on: `device` is "cpu", "cuda" or
/// "cuda:N", or "auto" while the machine has not decided (only what holds on any device is then
/// refused). check() calls it with train.device as set; pipeline::make_model with the device
/// the run got, so both refuse with the same sentences.
void check_model_device(const Config& cfg, const std::string& device);

namespace detail {
/// Stores `v` into the field of params()[index] in `s` (sections.cpp).
void store_field(Settings& s, size_t index, const Config::Value& v);
/// The field of params()[index] in `s` as a Value (sections.cpp).
Config::Value load_field(const Settings& s, size_t index);
}  // namespace detail

/// The Markdown reference: title, how to set values (YAML file, --set), then one section per
/// config section with a table: key | type | default | allowed | description.
std::string markdown_reference();

/// The Markdown reference of a caller-supplied table and section list.
std::string markdown_reference(const std::vector<Param>& table,
                               const std::vector<Section>& section_list);

/// Throws recforge::Error at the first scalar (key or value) of a parsed YAML document that is not
/// UTF-8, naming `name`, its line and column. The text was checked before parsing (require_utf8),
/// but yaml-cpp decodes the escapes "\\_" and "\\N" into the single bytes 0xA0 and 0x85; such a
/// string could be neither written back into a resolved config nor put into JSON.
void require_utf8_scalars(const YAML::Node& node, const std::string& name);

/// Levenshtein (edit) distance between two strings, for "did you mean" suggestions.
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace recforge::config
