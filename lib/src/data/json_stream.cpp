#include "data/json_stream.h"

#include <fstream>

#include "satcap/runtime/error.h"
#include "satcap/runtime/json_input.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace satcap::detail {

std::string json_type_name(const json& j) {
  std::string t = j.type_name();
  if (t == "null") return t;
  return (t == "array" || t == "object" ? "an " : "a ") + t;
}

std::ifstream open_regular_file(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec)) throw InputError(file.string() + ": no such file");
  if (fs::is_directory(file, ec)) throw InputError(file.string() + ": is a folder, expected a file");
  if (!fs::is_regular_file(file, ec)) throw InputError(file.string() + ": not a regular file");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError(file.string() + ": cannot open");
  return in;
}

StreamedJson stream_json_arrays(const fs::path& file, const std::vector<ArrayReader>& readers) {
  std::ifstream in = open_regular_file(file);
  std::error_code ec;

  StreamedJson out;
  out.present.assign(readers.size(), false);
  std::vector<std::size_t> counts(readers.size(), 0);
  int current = -1;        // the reader of the top-level key being parsed, or -1
  bool in_array = false;   // inside that key's array value
  const auto depth_limit = json_depth_limit(file.string(), ExitCode::input);
  // nlohmann reports a top-level key and its value at depth 1, the array's elements at depth 2.
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    using E = json::parse_event_t;
    depth_limit(depth, event, parsed);
    if (depth == 1) {
      if (event == E::key) {
        current = -1;
        for (std::size_t r = 0; r < readers.size(); ++r)
          if (parsed.is_string() && parsed.get_ref<const std::string&>() == readers[r].key) current = static_cast<int>(r);
        in_array = false;
      } else if (event == E::array_start) {
        in_array = current >= 0;
        if (in_array) out.present[static_cast<std::size_t>(current)] = true;
      } else if (event == E::array_end || event == E::object_start) {
        in_array = false;
      }
      return true;
    }
    if (depth == 2 && in_array && (event == E::object_end || event == E::array_end || event == E::value)) {
      const auto r = static_cast<std::size_t>(current);
      readers[r].on_element(counts[r]++, parsed);
      return false;  // dropped from the document: one element in memory at a time
    }
    return true;
  };
  try {
    out.rest = json::parse(in, callback);
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    // nlohmann's message: "[json.exception.parse_error.101] parse error at line 1, column 5: ..."
    auto at = what.find("parse error");
    const auto size = fs::file_size(file, ec);
    throw InputError(file.string() + ": malformed JSON at byte " + std::to_string(e.byte) + " of " +
                     (ec ? std::string("?") : std::to_string(size)) +
                     (at == std::string::npos ? what : " (" + what.substr(at) + ")"));
  } catch (const json::out_of_range& e) {  // a number beyond a double's range (1e999)
    throw InputError(file.string() + ": malformed JSON (" + json_error_text(e) + ")");
  }
  if (in.bad()) throw InputError(file.string() + ": read error");
  if (!out.rest.is_object()) return out;  // the caller names what it expected
  for (std::size_t r = 0; r < readers.size(); ++r) {
    auto it = out.rest.find(readers[r].key);
    if (it != out.rest.end() && !out.present[r])
      throw InputError(file.string() + ": top level: '" + readers[r].key + "' is not an array (it is " +
                       json_type_name(*it) + ")");
  }
  return out;
}

}  // namespace satcap::detail
