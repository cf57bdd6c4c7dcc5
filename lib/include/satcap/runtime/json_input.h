// Reading JSON that comes from outside satcap: datasets, model bundles, vocabularies, feature
// stores, results. What every such reader must handle besides syntax errors (found by fuzz/).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace satcap {

// nlohmann's message without its tag: "number overflow parsing '1e999'" for
// "[json.exception.out_of_range.406] number overflow parsing '1e999'". A number beyond a double's
// range is not a parse_error but an out_of_range exception, which readers catching only
// parse_error let escape (exit 1 with the library's raw message).
inline std::string json_error_text(const nlohmann::json::exception& e) {
  const std::string what = e.what();
  const auto tag_end = what.rfind("] ", what.find(' '));
  return what.rfind("[json.exception.", 0) == 0 && tag_end != std::string::npos ? what.substr(tag_end + 2) : what;
}

}  // namespace satcap
