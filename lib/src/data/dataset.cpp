#include "satcap/data/dataset.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "satcap/model/vocab.h"
#include "satcap/runtime/error.h"
#include "data/json_stream.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace satcap {

bool is_valid_utf8(const std::string& text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  std::size_t n = text.size(), i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) { ++i; continue; }
    int len;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return false;
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;
    i += len;
  }
  return true;
}

std::vector<std::string> Caption::tokens() const { return tokenize_caption(raw); }

std::vector<const ImageEntry*> Dataset::split(const std::string& name) const {
  std::vector<const ImageEntry*> out;
  for (const auto& image : images) {
    if (name.empty() || name == "all" || image.split == name) out.push_back(&image);
  }
  return out;
}

const ImageEntry* Dataset::find(std::int64_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &images[it->second];
}

std::map<std::int64_t, std::vector<std::string>> Dataset::references(const std::string& split_name) const {
  std::map<std::int64_t, std::vector<std::string>> out;
  for (const ImageEntry* image : split(split_name)) {
    auto& refs = out[image->id];
    for (const auto& c : image->captions) refs.push_back(c.raw);
  }
  return out;
}

std::size_t Dataset::caption_count(const std::string& split_name) const {
  std::size_t n = 0;
  for (const ImageEntry* image : split(split_name)) n += image->captions.size();
  return n;
}

void Dataset::reindex() {
  by_id_.clear();
  for (std::size_t i = 0; i < images.size(); ++i) by_id_[images[i].id] = i;
}

namespace {

std::string read_file(const fs::path& path) {
  std::ifstream in = detail::open_regular_file(path);
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) throw InputError(path.string() + ": read error");
  return s.str();
}

// Names entries in messages: "captions.json: annotations[17]".
struct Where {
  std::string file;
  std::string entry;
  std::string str() const { return file + ": " + entry; }
};

using detail::json_type_name;

const json& need(const json& obj, const char* key, const Where& w) {
  if (!obj.is_object()) throw InputError(w.str() + ": is " + json_type_name(obj) + ", expected an object");
  auto it = obj.find(key);
  if (it == obj.end()) throw InputError(w.str() + ": '" + key + "' is missing");
  return *it;
}

const json& need_array(const json& obj, const char* key, const Where& w) {
  const json& v = need(obj, key, w);
  if (!v.is_array()) throw InputError(w.str() + ": '" + key + "' is not an array (it is " + json_type_name(v) + ")");
  return v;
}

std::string need_string(const json& obj, const char* key, const Where& w) {
  const json& v = need(obj, key, w);
  if (!v.is_string()) throw InputError(w.str() + ": '" + key + "' is not a string (it is " + json_type_name(v) + ")");
  return v.get<std::string>();
}

std::int64_t need_int(const json& obj, const char* key, const Where& w) {
  const json& v = need(obj, key, w);
  if (v.is_number_unsigned()) {
    if (v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) throw InputError(w.str() + ": '" + key + "' is out of range");
    return static_cast<std::int64_t>(v.get<std::uint64_t>());
  }
  if (!v.is_number_integer()) throw InputError(w.str() + ": '" + key + "' is not an integer (it is " + json_type_name(v) + ")");
  return v.get<std::int64_t>();
}

int optional_dimension(const json& obj, const char* key, const Where& w) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return 0;
  if (!it->is_number_integer() || it->get<std::int64_t>() < 0 || it->get<std::int64_t>() > 1'000'000) {
    throw InputError(w.str() + ": '" + key + "' is not a non-negative integer");
  }
  return static_cast<int>(it->get<std::int64_t>());
}

bool is_inside(const fs::path& root_canonical, const fs::path& p) {
  auto r = root_canonical.begin(), re = root_canonical.end();
  auto q = p.begin(), qe = p.end();
  for (; r != re; ++r, ++q) {
    if (r->empty()) continue;  // trailing separator
    if (q == qe || *q != *r) return false;
  }
  return true;
}

// Checks that `relative` (from a dataset file) stays inside the image root and returns the key
// (normalised relative path). Throws InputError naming the file and the entry.
class PathGuard {
 public:
  explicit PathGuard(const fs::path& root) : root_(root) {
    std::error_code ec;
    canonical_ = fs::weakly_canonical(fs::absolute(root, ec), ec);
    if (ec) canonical_ = fs::absolute(root).lexically_normal();
  }

  std::string key(const std::string& relative, const Where& w) const {
    if (relative.empty()) throw InputError(w.str() + ": empty image path");
    if (relative.find('\0') != std::string::npos) throw InputError(w.str() + ": image path contains a NUL byte");
    fs::path p(relative);
    if (p.is_absolute() || p.has_root_name() || p.has_root_directory()) {
      throw InputError(w.str() + ": image path '" + relative + "' is absolute; dataset paths must be relative to the image root " + root_.string());
    }
    fs::path normal = p.lexically_normal();
    if (normal.empty() || *normal.begin() == "..") {
      throw InputError(w.str() + ": image path '" + relative + "' leaves the image root " + root_.string());
    }
    std::error_code ec;
    fs::path resolved = fs::weakly_canonical(canonical_ / normal, ec);
    if (ec || !is_inside(canonical_, resolved)) {
      throw InputError(w.str() + ": image path '" + relative + "' resolves to " + resolved.string() +
                       ", outside the image root " + root_.string() + " (through a symbolic link?)");
    }
    return normal.generic_string();
  }

  const fs::path& root() const { return root_; }

 private:
  fs::path root_;
  fs::path canonical_;
};

// Picks the image root: the user's, or the first candidate in which `probe` exists.
fs::path choose_root(const DatasetOptions& options, const std::vector<fs::path>& candidates, const std::string& probe) {
  if (!options.image_root.empty()) {
    std::error_code ec;
    if (!fs::is_directory(options.image_root, ec)) throw InputError(options.image_root + ": image root is not a folder");
    return options.image_root;
  }
  std::error_code ec;
  if (!probe.empty() && !fs::path(probe).is_absolute()) {
    for (const auto& c : candidates) {
      if (fs::exists(c / probe, ec)) return c;
    }
  }
  return candidates.empty() ? fs::path(".") : candidates.front();
}

fs::path folder_of(const fs::path& file) {
  fs::path dir = file.parent_path();
  return dir.empty() ? fs::path(".") : dir;
}

std::vector<fs::path> standard_candidates(const fs::path& file) {
  fs::path dir = folder_of(file);
  std::vector<fs::path> c{dir};
  if (dir.filename() == "annotations") c.push_back(folder_of(dir));
  c.push_back(dir / "images");
  return c;
}

// Adds a caption to `image` (or a warning when it is empty or not valid UTF-8).
void add_caption(ImageEntry& image, const std::string& raw, const Where& w, std::vector<std::string>& warnings) {
  if (!is_valid_utf8(raw)) {
    warnings.push_back(w.str() + ": caption is not valid UTF-8; skipped");
    return;
  }
  Caption c{raw};
  if (c.tokens().empty()) {
    warnings.push_back(w.str() + ": empty caption; skipped");
    return;
  }
  image.captions.push_back(std::move(c));
}

// Removes images whose file is missing (warning), or throws when strict.
void check_files(Dataset& d, const DatasetOptions& options) {
  if (!options.check_images) return;
  std::vector<ImageEntry> kept;
  kept.reserve(d.images.size());
  for (auto& image : d.images) {
    std::error_code ec;
    if (fs::is_regular_file(image.path, ec)) {
      kept.push_back(std::move(image));
      continue;
    }
    std::string msg = d.source + ": image " + std::to_string(image.id) + ": " + image.path.string() + ": no such image file";
    if (options.strict) throw InputError(msg);
    d.warnings.push_back(msg + "; skipped");
  }
  d.images = std::move(kept);
}

std::string split_from_name(const fs::path& file) {
  std::string stem = file.stem().string();
  for (const char* s : {"train", "val", "test"}) {
    if (stem.find(s) != std::string::npos) return s;
  }
  return "train";
}

// ---- Karpathy split files ---------------------------------------------------------------------

// The top level of a streamed dataset file must be an object with an array under `key`.
void require_array(const detail::StreamedJson& streamed, std::size_t reader, const std::string& key, const std::string& name) {
  if (!streamed.rest.is_object())
    throw InputError(name + ": top level: is " + json_type_name(streamed.rest) + ", expected an object");
  if (!streamed.present[reader]) throw InputError(name + ": top level: '" + key + "' is missing");
}

Dataset load_karpathy(const fs::path& file, const DatasetOptions& options) {
  const std::string name = file.string();
  Dataset d;
  d.format = DatasetFormat::karpathy;
  auto candidates = standard_candidates(file);
  for (const char* f : {"Flicker8k_Dataset", "Flickr8k_Dataset", "flickr30k-images"}) candidates.push_back(folder_of(file) / f);
  std::optional<PathGuard> guard;  // chosen at the first image (its file is the probe)
  auto choose = [&](const std::string& probe) {
    d.image_root = choose_root(options, candidates, probe);
    guard.emplace(d.image_root);
  };
  std::unordered_set<std::int64_t> ids;
  auto on_image = [&](std::size_t i, const json& e) {
    Where w{name, "images[" + std::to_string(i) + "]"};
    if (!guard) {
      std::string probe;
      if (e.is_object()) {
        auto fp = e.find("filepath");
        auto fn = e.find("filename");
        if (fn != e.end() && fn->is_string()) {
          probe = (fp != e.end() && fp->is_string()) ? (fs::path(fp->get<std::string>()) / fn->get<std::string>()).string()
                                                     : fn->get<std::string>();
        }
      }
      choose(probe);
    }
    if (!e.is_object()) throw InputError(w.str() + ": is " + json_type_name(e) + ", expected an object");
    ImageEntry image;
    image.id = e.contains("cocoid") ? need_int(e, "cocoid", w) : need_int(e, "imgid", w);
    if (!ids.insert(image.id).second) throw InputError(w.str() + ": duplicate image id " + std::to_string(image.id));
    std::string filename = need_string(e, "filename", w);
    std::string rel = filename;
    if (e.contains("filepath") && !e["filepath"].is_null()) rel = (fs::path(need_string(e, "filepath", w)) / filename).string();
    image.key = guard->key(rel, w);
    image.path = d.image_root / image.key;
    image.split = need_string(e, "split", w);
    if (image.split == "restval" && options.merge_restval) image.split = "train";
    image.width = optional_dimension(e, "width", w);
    image.height = optional_dimension(e, "height", w);
    const json& sentences = need_array(e, "sentences", w);
    for (std::size_t k = 0; k < sentences.size(); ++k) {
      Where ws{name, w.entry + ".sentences[" + std::to_string(k) + "]"};
      const json& s = sentences[k];
      std::string raw;
      if (s.is_object() && s.contains("raw")) {
        raw = need_string(s, "raw", ws);
      } else {
        const json& tokens = need_array(s, "tokens", ws);
        for (std::size_t t = 0; t < tokens.size(); ++t) {
          if (!tokens[t].is_string()) throw InputError(ws.str() + ": tokens[" + std::to_string(t) + "] is not a string");
          raw += (t ? " " : "") + tokens[t].get<std::string>();
        }
      }
      add_caption(image, raw, ws, d.warnings);
    }
    d.images.push_back(std::move(image));
  };
  const auto streamed = detail::stream_json_arrays(file, {{"images", on_image}});
  require_array(streamed, 0, "images", name);
  if (!guard) choose("");
  return d;
}

// ---- COCO caption annotations -----------------------------------------------------------------

Dataset load_coco(const fs::path& file, const DatasetOptions& options, const fs::path* root_hint = nullptr) {
  const std::string name = file.string();
  Dataset d;
  d.format = DatasetFormat::coco;
  std::optional<PathGuard> guard;  // chosen at the first image (its file is the probe)
  auto choose = [&](const std::string& probe) {
    if (root_hint) {
      d.image_root = *root_hint;
    } else {
      auto candidates = standard_candidates(file);
      std::string stem = file.stem().string();
      if (stem.rfind("captions_", 0) == 0) {
        fs::path base = folder_of(file).filename() == "annotations" ? folder_of(folder_of(file)) : folder_of(file);
        candidates.push_back(base / stem.substr(9));
      }
      d.image_root = choose_root(options, candidates, probe);
    }
    guard.emplace(d.image_root);
  };
  const std::string split = options.split.empty() ? split_from_name(file) : options.split;
  std::unordered_map<std::int64_t, std::size_t> index;
  auto on_image = [&](std::size_t i, const json& e) {
    Where w{name, "images[" + std::to_string(i) + "]"};
    if (!guard) {
      const bool named = e.is_object() && e.contains("file_name") && e["file_name"].is_string();
      choose(named ? e["file_name"].get<std::string>() : std::string());
    }
    ImageEntry image;
    image.id = need_int(e, "id", w);
    if (index.count(image.id)) throw InputError(w.str() + ": duplicate image id " + std::to_string(image.id));
    image.key = guard->key(need_string(e, "file_name", w), w);
    image.path = d.image_root / image.key;
    image.split = split;
    image.width = optional_dimension(e, "width", w);
    image.height = optional_dimension(e, "height", w);
    index[image.id] = d.images.size();
    d.images.push_back(std::move(image));
  };
  // An annotation is checked when it is read; it is attached to its image then, or at the end
  // when the file lists its annotations before its images.
  struct Pending {
    std::size_t i;
    std::int64_t image_id;
    std::string caption;
  };
  std::vector<Pending> pending;
  std::unordered_set<std::int64_t> annotation_ids;
  auto attach = [&](std::size_t i, std::int64_t image_id, const std::string& caption) {
    Where w{name, "annotations[" + std::to_string(i) + "]"};
    auto it = index.find(image_id);
    if (it == index.end()) {
      d.warnings.push_back(w.str() + ": image_id " + std::to_string(image_id) + " is not in 'images'; skipped");
      return;
    }
    add_caption(d.images[it->second], caption, w, d.warnings);
  };
  auto on_annotation = [&](std::size_t i, const json& a) {
    Where w{name, "annotations[" + std::to_string(i) + "]"};
    std::int64_t image_id = need_int(a, "image_id", w);
    std::string caption = need_string(a, "caption", w);
    if (a.contains("id")) {
      std::int64_t id = need_int(a, "id", w);
      if (!annotation_ids.insert(id).second) {
        d.warnings.push_back(w.str() + ": duplicate annotation id " + std::to_string(id) + "; skipped");
        return;
      }
    }
    if (guard) attach(i, image_id, caption);  // the images came first (as in COCO's own files)
    else pending.push_back({i, image_id, std::move(caption)});
  };
  const auto streamed = detail::stream_json_arrays(file, {{"images", on_image}, {"annotations", on_annotation}});
  require_array(streamed, 0, "images", name);
  require_array(streamed, 1, "annotations", name);
  if (!guard) choose("");
  for (const auto& p : pending) attach(p.i, p.image_id, p.caption);
  return d;
}

// Gives COCO images their Karpathy split (by cocoid); images absent from the split file are dropped.
void apply_split_file(Dataset& d, const std::string& split_file, const DatasetOptions& options) {
  DatasetOptions o = options;
  o.check_images = false;
  o.image_root = d.image_root.string();
  Dataset splits = load_karpathy(split_file, o);
  std::unordered_map<std::int64_t, std::string> split_of;
  for (const auto& image : splits.images) split_of[image.id] = image.split;
  std::vector<ImageEntry> kept;
  std::size_t dropped = 0;
  for (auto& image : d.images) {
    auto it = split_of.find(image.id);
    if (it == split_of.end()) { ++dropped; continue; }
    image.split = it->second;
    kept.push_back(std::move(image));
  }
  if (dropped) d.warnings.push_back(split_file + ": " + std::to_string(dropped) + " images of " + d.source + " are in no split; left out");
  d.images = std::move(kept);
}

// ---- Flickr8k token file ----------------------------------------------------------------------

std::vector<std::string> read_lines(const fs::path& path) {
  std::istringstream in(read_file(path));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

Dataset load_flickr8k(const fs::path& file, const DatasetOptions& options) {
  const std::string name = file.string();
  std::vector<std::string> lines = read_lines(file);
  Dataset d;
  d.format = DatasetFormat::flickr8k;
  struct Row { std::string image; std::string caption; std::size_t line; };
  std::vector<Row> rows;
  std::set<std::string> seen_ids;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    Where w{name, "line " + std::to_string(i + 1)};
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    auto tab = line.find('\t');
    if (tab == std::string::npos) throw InputError(w.str() + ": expected 'IMAGE.jpg#K<TAB>caption'");
    std::string id = line.substr(0, tab);
    auto hash = id.rfind('#');
    if (hash == std::string::npos || hash == 0) throw InputError(w.str() + ": expected 'IMAGE.jpg#K' before the tab (got '" + id + "')");
    if (!seen_ids.insert(id).second) {
      d.warnings.push_back(w.str() + ": duplicate caption id '" + id + "'; skipped");
      continue;
    }
    rows.push_back({id.substr(0, hash), line.substr(tab + 1), i + 1});
  }
  fs::path dir = folder_of(file);
  auto candidates = standard_candidates(file);
  for (const char* f : {"Flicker8k_Dataset", "Flickr8k_Dataset"}) {
    candidates.push_back(dir / f);
    candidates.push_back(folder_of(dir) / f);
  }
  d.image_root = choose_root(options, candidates, rows.empty() ? "" : rows.front().image);
  PathGuard guard(d.image_root);
  // Split lists beside the token file (Flickr_8k.trainImages.txt, .devImages.txt, .testImages.txt).
  std::unordered_map<std::string, std::string> split_of;
  bool have_lists = false;
  for (auto [list, split] : {std::pair{"Flickr_8k.trainImages.txt", "train"}, {"Flickr_8k.devImages.txt", "val"}, {"Flickr_8k.testImages.txt", "test"}}) {
    fs::path p = dir / list;
    std::error_code ec;
    if (!fs::exists(p, ec)) continue;
    have_lists = true;
    for (std::string l : read_lines(p)) {
      while (!l.empty() && (l.back() == ' ' || l.back() == '\t')) l.pop_back();
      if (!l.empty()) split_of[l] = split;
    }
  }
  const std::string default_split = options.split.empty() ? "train" : options.split;
  std::unordered_map<std::string, std::size_t> index;
  std::size_t unlisted = 0;
  for (const auto& row : rows) {
    Where w{name, "line " + std::to_string(row.line)};
    auto it = index.find(row.image);
    if (it == index.end()) {
      ImageEntry image;
      image.id = static_cast<std::int64_t>(d.images.size());
      image.key = guard.key(row.image, w);
      image.path = d.image_root / image.key;
      if (have_lists) {
        auto s = split_of.find(row.image);
        if (s == split_of.end()) ++unlisted;
        image.split = s == split_of.end() ? "none" : s->second;
      } else {
        image.split = default_split;
      }
      it = index.emplace(row.image, d.images.size()).first;
      d.images.push_back(std::move(image));
    }
    add_caption(d.images[it->second], row.caption, w, d.warnings);
  }
  if (unlisted) d.warnings.push_back(name + ": " + std::to_string(unlisted) + " images are in none of the split lists; their split is 'none'");
  return d;
}

// ---- detection --------------------------------------------------------------------------------

DatasetFormat detect_file_format(const fs::path& file) {
  if (file.extension() == ".txt") return DatasetFormat::flickr8k;
  // Read until the first entry that tells (thrown out of the parse), not through the whole file.
  struct Detected { DatasetFormat format; };
  auto on_image = [](std::size_t, const json& e) {
    if (e.is_object() && e.contains("sentences")) throw Detected{DatasetFormat::karpathy};
    if (e.is_object() && e.contains("file_name")) throw Detected{DatasetFormat::coco};
  };
  auto on_annotation = [](std::size_t, const json&) { throw Detected{DatasetFormat::coco}; };
  try {
    const auto streamed = detail::stream_json_arrays(file, {{"images", on_image}, {"annotations", on_annotation}});
    if (streamed.rest.is_object() && streamed.rest.contains("annotations")) return DatasetFormat::coco;
  } catch (const Detected& d) {
    return d.format;
  }
  throw InputError(file.string() + ": not a dataset this satcap reads (expected COCO captions with 'images' and "
                   "'annotations', a Karpathy split file with 'images[].sentences', or a Flickr8k .token.txt)");
}

}  // namespace

Dataset load_dataset(const std::string& path_string, const DatasetOptions& options) {
  fs::path path(path_string);
  std::error_code ec;
  if (!fs::exists(path, ec)) throw InputError(path_string + ": no such file or folder");
  std::vector<fs::path> files;
  DatasetFormat format = options.format;
  if (fs::is_directory(path, ec)) {
    auto first = [&](const std::vector<fs::path>& names) -> fs::path {
      for (const auto& n : names) if (fs::is_regular_file(path / n, ec)) return path / n;
      return {};
    };
    auto glob = [&](const fs::path& dir, const std::string& prefix, const std::string& suffix) {
      std::vector<fs::path> found;
      if (!fs::is_directory(dir, ec)) return found;
      for (const auto& e : fs::directory_iterator(dir, ec)) {
        std::string n = e.path().filename().string();
        if (n.size() >= prefix.size() + suffix.size() && n.rfind(prefix, 0) == 0 &&
            n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0 && e.is_regular_file(ec)) {
          found.push_back(e.path());
        }
      }
      std::sort(found.begin(), found.end());
      return found;
    };
    auto may_be = [&](DatasetFormat f) { return format == DatasetFormat::detect || format == f; };
    fs::path f;
    if (may_be(DatasetFormat::karpathy) && !(f = first({"dataset.json"})).empty()) {
      files = {f}; format = DatasetFormat::karpathy;
    } else if (may_be(DatasetFormat::karpathy) && !glob(path, "dataset_", ".json").empty()) {
      files = {glob(path, "dataset_", ".json").front()}; format = DatasetFormat::karpathy;
    } else if (may_be(DatasetFormat::coco) && !(f = first({"captions.json"})).empty()) {
      files = {f}; format = DatasetFormat::coco;
    } else if (may_be(DatasetFormat::coco) && !glob(path / "annotations", "captions_", ".json").empty()) {
      files = glob(path / "annotations", "captions_", ".json"); format = DatasetFormat::coco;
    } else if (may_be(DatasetFormat::flickr8k) && !glob(path, "", ".token.txt").empty()) {
      files = {glob(path, "", ".token.txt").front()}; format = DatasetFormat::flickr8k;
    } else {
      throw InputError(path_string + ": no dataset found in this folder (looked for dataset.json, dataset_*.json, captions.json, "
                       "annotations/captions_*.json, *.token.txt)");
    }
  } else {
    files = {path};
    if (format == DatasetFormat::detect) format = detect_file_format(path);
  }

  Dataset d;
  if (format == DatasetFormat::karpathy) {
    d = load_karpathy(files.front(), options);
  } else if (format == DatasetFormat::flickr8k) {
    d = load_flickr8k(files.front(), options);
  } else {
    // Several COCO caption files (train2014 + val2014) are merged; each keeps its own image root
    // unless the user gave one, and image ids must be unique across them.
    d = load_coco(files.front(), options);
    for (std::size_t i = 1; i < files.size(); ++i) {
      Dataset more = load_coco(files[i], options);
      d.warnings.insert(d.warnings.end(), more.warnings.begin(), more.warnings.end());
      std::set<std::int64_t> ids;
      for (const auto& image : d.images) ids.insert(image.id);
      for (auto& image : more.images) {
        if (ids.count(image.id)) throw InputError(files[i].string() + ": image id " + std::to_string(image.id) + " also in " + files.front().string());
        // Keys are relative to each file's root; make them relative to the first file's root when possible.
        fs::path rel = fs::relative(image.path, d.image_root, ec);
        if (!ec && !rel.empty() && *rel.begin() != "..") image.key = rel.generic_string();
        d.images.push_back(std::move(image));
      }
    }
  }
  d.source = path_string;
  d.format = format;
  if (!options.split_file.empty()) apply_split_file(d, options.split_file, options);
  check_files(d, options);
  d.reindex();
  return d;
}

}  // namespace satcap
