// Options structs that list their fields once. Each field's name is its JSON key (config files,
// bundles, config.effective.json) and, with '_' written '-', its command-line flag unless the field
// names another; its default is the member's initialiser; its help text is written here once. From
// that one table come the JSON reader and writer (this header) and the command-line options
// (app/options_cli.h), so a setting cannot be spelled, typed or defaulted twice.
//
//   struct SearchOptions {
//     int beam_size = 3;
//     static constexpr auto fields() {
//       return std::make_tuple(option("beam_size", &SearchOptions::beam_size, "Beam width (1 = greedy)", "--beam"));
//     }
//   };
//
// Closed choices are enums with one name table each (EnumNames<E>); a field whose type has its own
// fields() is a nested object. No torch here.
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "satcap/runtime/error.h"

namespace satcap {

// The names of an enum's values on the command line and in JSON: specialise with
//   static const std::vector<std::pair<std::string, E>>& table();
template <typename E>
struct EnumNames;

template <typename T, typename = void>
struct has_enum_names : std::false_type {};
template <typename T>
struct has_enum_names<T, std::void_t<decltype(EnumNames<T>::table())>> : std::true_type {};

template <typename E>
std::string enum_name(E value) {
  for (const auto& [name, v] : EnumNames<E>::table())
    if (v == value) return name;
  return std::to_string(static_cast<int>(value));
}

template <typename E>
std::optional<E> enum_from_name(const std::string& name) {
  for (const auto& [n, v] : EnumNames<E>::table())
    if (n == name) return v;
  return std::nullopt;
}

// "soft or hard", "fp32, bf16 or fp16": for messages.
template <typename E>
std::string enum_choices() {
  const auto& table = EnumNames<E>::table();
  std::string s;
  for (std::size_t i = 0; i < table.size(); ++i)
    s += (i == 0 ? "" : i + 1 == table.size() ? " or " : ", ") + table[i].first;
  return s;
}

// The enum value named `name`, or a UsageError: "--attention must be soft or hard (got 'medium')".
template <typename E>
E parse_enum(const std::string& name, const std::string& option) {
  if (auto v = enum_from_name<E>(name)) return *v;
  throw UsageError(option + " must be " + enum_choices<E>() + " (got '" + name + "')");
}

// Where a field may be set.
enum class FieldUse {
  user,  // config files, bundles and the command line
  data,  // derived from the data (a vocabulary size, a feature dimension): bundles only
};

template <typename S, typename T>
struct OptionField {
  const char* key;     // JSON key; the flag is "--" + key with '_' as '-' unless `flag` is set
  T S::*member;
  const char* help;    // what the field means, for --help
  const char* flag;    // the command-line name(s) in CLI11's syntax ("--batch"), or nullptr
  FieldUse use;

  using Struct = S;
  using Type = T;
};

template <typename S, typename T>
constexpr OptionField<S, T> option(const char* key, T S::*member, const char* help, const char* flag = nullptr,
                                   FieldUse use = FieldUse::user) {
  return {key, member, help, flag, use};
}

// The command-line flag of a field: its own (the first name of `flag`), or "--" + key with '_' as '-'.
inline std::string option_flag(const char* key, const char* flag) {
  if (flag != nullptr) {
    std::string f = flag;
    return f.substr(0, f.find(','));
  }
  std::string f = std::string("--") + key;
  for (char& ch : f)
    if (ch == '_') ch = '-';
  return f;
}

template <typename T, typename = void>
struct has_option_fields : std::false_type {};
template <typename T>
struct has_option_fields<T, std::void_t<decltype(T::fields())>> : std::true_type {};

// Calls f(field) for each field of S, in declaration order.
template <typename S, typename F>
void for_each_field(F&& f) {
  std::apply([&](const auto&... field) { (f(field), ...); }, S::fields());
}

// The flag of S's field `key` ("beam_size" -> "--beam"), for messages.
template <typename S>
std::string flag_of(const std::string& key) {
  std::string flag;
  for_each_field<S>([&](const auto& field) {
    if (key == field.key) flag = option_flag(field.key, field.flag);
  });
  return flag;
}

namespace detail {

// The error class of `code` (UsageError for a config file, ModelError for a bundle, ...).
[[noreturn]] inline void bad_field(ExitCode code, const std::string& message) {
  switch (code) {
    case ExitCode::usage: throw UsageError(message);
    case ExitCode::input: throw InputError(message);
    case ExitCode::model: throw ModelError(message);
    default: throw Error(code, message);
  }
}

template <typename T>
nlohmann::json value_to_json(const T& value, bool with_data);

template <typename S>
nlohmann::json fields_to_json(const S& object, bool with_data) {
  nlohmann::json j = nlohmann::json::object();
  for_each_field<S>([&](const auto& field) {
    if (field.use == FieldUse::data && !with_data) return;
    j[field.key] = value_to_json(object.*(field.member), with_data);
  });
  return j;
}

template <typename T>
nlohmann::json value_to_json(const T& value, bool with_data) {
  if constexpr (has_option_fields<T>::value) {
    return fields_to_json(value, with_data);
  } else if constexpr (has_enum_names<T>::value) {
    return enum_name(value);
  } else {
    return value;
  }
}

template <typename T>
const char* expected_json(const T* = nullptr) {
  if constexpr (std::is_same_v<T, bool>) return "true or false";
  else if constexpr (std::is_same_v<T, std::string>) return "a string";
  else if constexpr (std::is_floating_point_v<T>) return "a finite number";
  else if constexpr (std::is_unsigned_v<T>) return "a non-negative integer";
  else return "an integer";
}

// Exactly the JSON type of T: integers must be integral and in T's range (no 256.5 read as 256,
// no 4294967297 read as 1), numbers finite, strings strings.
template <typename T>
bool read_plain(const nlohmann::json& v, T& out) {
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) return false;
    out = v.get<bool>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) return false;
    out = v.get<std::string>();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number() || !std::isfinite(v.get<double>())) return false;
    out = static_cast<T>(v.get<double>());
  } else if constexpr (std::is_unsigned_v<T>) {
    if (v.is_number_unsigned()) {
      const auto u = v.get<std::uint64_t>();
      if (u > std::numeric_limits<T>::max()) return false;
      out = static_cast<T>(u);
    } else if (v.is_number_integer()) {
      const auto i = v.get<std::int64_t>();
      if (i < 0 || static_cast<std::uint64_t>(i) > std::numeric_limits<T>::max()) return false;
      out = static_cast<T>(i);
    } else {
      return false;
    }
  } else {
    static_assert(std::is_integral_v<T>, "option fields are bool, integers, floating point, strings, enums or structs");
    if (v.is_number_unsigned()) {
      if (v.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return false;
      out = static_cast<T>(v.get<std::uint64_t>());
    } else if (v.is_number_integer()) {
      const auto i = v.get<std::int64_t>();
      if (i < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
          i > static_cast<std::int64_t>(std::numeric_limits<T>::max()))
        return false;
      out = static_cast<T>(i);
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace detail

// How a reader treats keys a JSON object does not have.
enum class MissingFields {
  keep,    // keep the value already there (config files: only what they set)
  refuse,  // every field must be there (bundles)
};

// `object` as a JSON object, every field by its key, enums by name, nested options as objects.
// `with_data`: also the fields derived from the data (FieldUse::data).
template <typename S>
nlohmann::json options_to_json(const S& object, bool with_data = true) {
  return detail::fields_to_json(object, with_data);
}

// Reads the keys of `j` into `object`. Unknown keys, values of the wrong type or out of range,
// unknown enum names and (with `allow_data` false) data fields are refused with an Error of `code`
// naming `source` and the key ("runs/a/config.json: \"decoder.hidden_dim\" must be an integer
// (got 256.5)"). The object is left as it was when anything is refused.
template <typename S>
void options_from_json(const nlohmann::json& j, S& object, const std::string& source, ExitCode code,
                       MissingFields missing = MissingFields::keep, bool allow_data = true,
                       const std::string& prefix = "") {
  if (!j.is_object()) detail::bad_field(code, source + ": " + (prefix.empty() ? "expected a JSON object" : "\"" + prefix + "\" must be a JSON object"));
  S result = object;
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool known = false;
    for_each_field<S>([&](const auto& field) {
      if (it.key() != field.key) return;
      known = true;
      using T = typename std::decay_t<decltype(field)>::Type;
      const std::string key = prefix + field.key;
      if (field.use == FieldUse::data && !allow_data)
        detail::bad_field(code, source + ": \"" + key + "\" is set from the data and cannot be given");
      T& target = result.*(field.member);
      if constexpr (has_option_fields<T>::value) {
        options_from_json(it.value(), target, source, code, missing, allow_data, key + ".");
      } else if constexpr (has_enum_names<T>::value) {
        std::optional<T> v;
        if (it.value().is_string()) v = enum_from_name<T>(it.value().template get<std::string>());
        if (!v)
          detail::bad_field(code, source + ": \"" + key + "\" must be " + enum_choices<T>() + " (got " +
                                      it.value().dump() + ")");
        target = *v;
      } else {
        if (!detail::read_plain(it.value(), target))
          detail::bad_field(code, source + ": \"" + key + "\" must be " + detail::expected_json<T>() + " (got " +
                                      it.value().dump() + ")");
      }
    });
    if (!known) {
      std::string names;
      for_each_field<S>([&](const auto& field) {
        if (field.use == FieldUse::user || allow_data) names += (names.empty() ? "" : ", ") + std::string(field.key);
      });
      detail::bad_field(code, source + ": unknown " + (prefix.empty() ? "option" : "option in \"" + prefix.substr(0, prefix.size() - 1) + "\"") +
                                  " \"" + it.key() + "\" (known: " + names + ")");
    }
  }
  if (missing == MissingFields::refuse) {
    for_each_field<S>([&](const auto& field) {
      if (!j.contains(field.key)) detail::bad_field(code, source + ": missing \"" + prefix + field.key + "\"");
    });
  }
  object = std::move(result);
}

}  // namespace satcap
