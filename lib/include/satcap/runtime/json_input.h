// Reading JSON that comes from outside satcap: datasets, model bundles, vocabularies, feature
// stores, results. What every such reader must handle besides syntax errors (found by fuzz/).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "satcap/runtime/error.h"
#include "satcap/runtime/option_table.h"

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

// The deepest nesting accepted. nlohmann's parser keeps its own stack, so it reads any depth, but
// copying, comparing or printing a value (an error message's "got ...") recurses once per level:
// 100,000 levels (a 200 KB file of '[') overflowed the stack (SIGSEGV), 32,000 under
// AddressSanitizer. satcap's own files nest 4 levels, COCO's and Karpathy's 3.
constexpr int kMaxJsonDepth = 256;

// A parser callback, json::parse(input, json_depth_limit(file, code)), that keeps every value and
// throws the Error of `code` (InputError for ExitCode::input, ModelError for ExitCode::model)
// naming `source` once the nesting passes kMaxJsonDepth, before anything can recurse into it.
inline nlohmann::json::parser_callback_t json_depth_limit(const std::string& source, ExitCode code) {
  return [source, code](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > kMaxJsonDepth)
      detail::bad_field(code, source + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    return true;
  };
}

}  // namespace satcap
