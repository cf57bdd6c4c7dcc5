// The two files `satcap score` reads: COCO caption annotations (the references) and a COCO results
// file (one candidate caption per image). Moved here from the score command so that the reader
// is one library function that the fuzzer (fuzz/coco_results.cpp) and the tests can call. No torch.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace satcap {

// Image ids are compared as text: COCO writes integers, strings are accepted too ("123" and 123
// name the same image).
struct CocoResults {
  std::map<std::string, std::string> captions;     // image id -> the one result caption
  std::map<std::string, nlohmann::json> image_ids;  // image id -> its "image_id" as the file wrote it
};

// Reads a COCO captions file ({"annotations": [{"image_id", "caption"}, ...]}): image id -> its
// reference captions. Throws InputError naming the file (and the entry) when it is missing, not a
// regular file, not valid JSON, or has no "annotations" list or an entry without an image id or a
// string caption.
std::map<std::string, std::vector<std::string>> load_coco_references(const std::string& path);

// Reads a COCO results file ([{"image_id", "caption"}, ...]) scored against `references`. Throws
// InputError naming the file for the problems above, for an image with two captions (the official
// evaluation takes exactly one per image), an image id absent from the references, or no results.
CocoResults load_coco_results(const std::string& path, const std::map<std::string, std::vector<std::string>>& references,
                              const std::string& references_name);

// The first `n` ids joined by ", ", with ", ..." when there are more: for messages.
std::string first_ids(const std::vector<std::string>& ids, std::size_t n = 5);

}  // namespace satcap
