#include "satcap/eval/coco_results.h"

#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"

namespace satcap {
namespace {

// A folder, a FIFO or a device is refused by name, malformed or too deeply nested JSON too
// (satcap/runtime/input_file.h).
nlohmann::json read_json(const std::string& path) { return read_json_file(path, ExitCode::input); }

// An image id as a string: COCO uses integers; strings are accepted too.
std::string image_id(const nlohmann::json& entry, const std::string& where) {
  if (!entry.is_object() || !entry.contains("image_id")) throw InputError(where + ": no \"image_id\"");
  const auto& v = entry["image_id"];
  if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
  if (v.is_string() && !v.get<std::string>().empty()) return v.get<std::string>();
  throw InputError(where + ": \"image_id\" must be an integer or a non-empty string (got " + v.dump() + ")");
}

std::string caption(const nlohmann::json& entry, const std::string& where) {
  if (!entry.contains("caption") || !entry["caption"].is_string())
    throw InputError(where + ": \"caption\" must be a string");
  return entry["caption"].get<std::string>();
}

}  // namespace

std::string first_ids(const std::vector<std::string>& ids, std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < ids.size() && i < n; ++i) s += (i ? ", " : "") + ids[i];
  if (ids.size() > n) s += ", ...";
  return s;
}

std::map<std::string, std::vector<std::string>> load_coco_references(const std::string& path) {
  const nlohmann::json ann = read_json(path);
  if (!ann.is_object() || !ann.contains("annotations") || !ann["annotations"].is_array())
    throw InputError(path + ": not COCO caption annotations (no \"annotations\" list)");
  std::map<std::string, std::vector<std::string>> references;
  const auto& anns = ann["annotations"];
  for (std::size_t i = 0; i < anns.size(); ++i) {
    const std::string where = path + ": annotations[" + std::to_string(i) + "]";
    references[image_id(anns[i], where)].push_back(caption(anns[i], where));
  }
  return references;
}

CocoResults load_coco_results(const std::string& path, const std::map<std::string, std::vector<std::string>>& references,
                              const std::string& references_name) {
  // One caption per image, as the official evaluation requires.
  const nlohmann::json res = read_json(path);
  if (!res.is_array()) throw InputError(path + ": not a COCO results list ([{\"image_id\", \"caption\"}])");
  CocoResults out;
  std::map<std::string, std::size_t> entry_of;
  for (std::size_t i = 0; i < res.size(); ++i) {
    const std::string where = path + ": entry " + std::to_string(i);
    const std::string id = image_id(res[i], where);
    const std::string cap = caption(res[i], where);
    if (auto it = entry_of.find(id); it != entry_of.end())
      throw InputError(where + ": image_id " + id + " already has a caption (entry " + std::to_string(it->second) +
                       "); the official evaluation takes exactly one caption per image");
    entry_of[id] = i;
    out.captions[id] = cap;
    out.image_ids[id] = res[i]["image_id"];
  }
  std::vector<std::string> unknown;
  for (const auto& kv : out.captions)
    if (!references.count(kv.first)) unknown.push_back(kv.first);
  if (!unknown.empty())
    throw InputError(path + ": " + std::to_string(unknown.size()) + " image_id(s) have no captions in " +
                     references_name + " (" + first_ids(unknown) + "); wrong annotations file?");
  if (out.captions.empty()) throw InputError(path + ": no results");
  return out;
}

}  // namespace satcap
