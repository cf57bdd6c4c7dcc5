// Reading large JSON dataset files one array element at a time (internal to dataset.cpp).
//
// A COCO caption file or a Karpathy split file is one object whose few top-level arrays hold all
// the entries. Parsed as a whole, nlohmann's DOM costs several times the file's size (a 31 MB
// dataset.json of 20,000 scenes took about 215 MiB), and that peak stays resident afterwards. Here
// each element of the named arrays is handed over as soon as it is parsed and then dropped, so
// memory holds one element at a time.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace satcap::detail {

struct ArrayReader {
  std::string key;  // a top-level key whose value is an array
  // Called for each element, in file order: index in the array and the parsed element.
  std::function<void(std::size_t index, const nlohmann::json& element)> on_element;
};

// What was read besides the streamed arrays.
struct StreamedJson {
  nlohmann::json rest;                // the top-level value, each streamed array left empty
  std::vector<bool> present;          // per reader: its key was there with an array value
};

// Parses `file`. Throws InputError naming the file: "FILE: malformed JSON at byte B of N (...)" for
// a syntax error and "FILE: top level: 'KEY' is not an array (it is an object)". A key that is
// absent is reported in `present`, and a top level that is not an object comes back whole in
// `rest`: the caller says what it expected. Exceptions from on_element propagate.
StreamedJson stream_json_arrays(const std::filesystem::path& file, const std::vector<ArrayReader>& readers);

// Opens a dataset file for reading. Throws InputError naming it when it is missing, a folder, not a
// regular file (a FIFO or device would block or never end) or unreadable.
std::ifstream open_regular_file(const std::filesystem::path& file);

// "a string", "an array", "null".
std::string json_type_name(const nlohmann::json& j);

}  // namespace satcap::detail
