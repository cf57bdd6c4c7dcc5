// Single values of the JSON files satcap reads (bundles, vocabularies, feature stores,
// checkpoints, encoder descriptions), with the option tables' strictness (option_table.h): the
// JSON type must be T's, integers integral and in T's range (4294967297 is not read as 1, 256.5
// not as 256), numbers finite. A wrong value is an Error of the reader's code naming the file and
// the key: "models/x/config.json: \"format_version\" must be an integer (got 4294967297)".
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "satcap/runtime/option_table.h"

namespace satcap {

namespace detail {

template <typename T>
struct is_vector : std::false_type {};
template <typename T>
struct is_vector<std::vector<T>> : std::true_type {};

template <typename T>
std::string expected_value() {
  if constexpr (!is_vector<T>::value) {
    return expected_json<T>();
  } else {
    using E = typename T::value_type;
    if constexpr (std::is_same_v<E, bool>) return "an array of true or false";
    else if constexpr (std::is_same_v<E, std::string>) return "an array of strings";
    else if constexpr (std::is_floating_point_v<E>) return "an array of finite numbers";
    else if constexpr (std::is_unsigned_v<E>) return "an array of non-negative integers";
    else return "an array of integers";
  }
}

template <typename T>
bool read_value(const nlohmann::json& v, T& out) {
  if constexpr (is_vector<T>::value) {
    if (!v.is_array()) return false;
    T result;
    result.reserve(v.size());
    for (const auto& e : v) {
      typename T::value_type x{};
      if (!read_value(e, x)) return false;
      result.push_back(std::move(x));
    }
    out = std::move(result);
    return true;
  } else {
    return read_plain(v, out);
  }
}

}  // namespace detail

// `value` as T, or an Error of `code`: "<source>: \"<key>\" must be <T's JSON type> (got <value>)".
template <typename T>
T json_as(const nlohmann::json& value, const std::string& key, const std::string& source, ExitCode code) {
  T out{};
  if (!detail::read_value(value, out)) {
    std::string got = value.dump();
    if (got.size() > 80) got = got.substr(0, 77) + "...";
    detail::bad_field(code, source + ": \"" + key + "\" must be " + detail::expected_value<T>() + " (got " + got + ")");
  }
  return out;
}

// object[key] as T; missing (or `object` not an object) is an Error of `code` naming the key.
template <typename T>
T json_field(const nlohmann::json& object, const std::string& key, const std::string& source, ExitCode code) {
  if (!object.is_object() || !object.contains(key)) detail::bad_field(code, source + ": \"" + key + "\" is missing");
  return json_as<T>(object.at(key), key, source, code);
}

// object[key] as T, or `fallback` when the key is absent; a value of another type is refused.
template <typename T>
T json_field_or(const nlohmann::json& object, const std::string& key, const T& fallback, const std::string& source,
                ExitCode code) {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  if (it == object.end()) return fallback;
  return json_as<T>(*it, key, source, code);
}

}  // namespace satcap
