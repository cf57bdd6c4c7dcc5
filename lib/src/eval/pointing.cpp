#include "satcap/eval/pointing.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>

#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"
#include "data/json_stream.h"

namespace satcap {
namespace {

using nlohmann::json;

// As the training tokenisation (vocab.h): ASCII letters lowered, ASCII punctuation deleted.
std::string normalise_word(const std::string& word) {
  std::string out;
  out.reserve(word.size());
  for (unsigned char ch : word) {
    if (ch < 0x80 && std::ispunct(ch)) continue;
    if (ch < 0x80 && std::isspace(ch)) continue;
    out.push_back(static_cast<char>(ch < 0x80 ? std::tolower(ch) : ch));
  }
  return out;
}

// A class name's words, each normalised ("Traffic light" -> traffic, light).
std::vector<std::string> name_words(const std::string& name) {
  std::vector<std::string> words;
  std::istringstream in(name);
  std::string w;
  while (in >> w) {
    w = normalise_word(w);
    if (!w.empty()) words.push_back(w);
  }
  return words;
}

bool is_vowel(char c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'; }

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// One tier of the lexicon: word -> the classes claiming it.
using Tier = std::map<std::string, std::set<std::string>>;

void claim(Tier& tier, const std::string& word, const std::string& cls, bool with_plurals) {
  const std::string w = normalise_word(word);
  if (w.empty()) return;
  tier[w].insert(cls);
  if (with_plurals) {
    for (const auto& p : plural_forms(w)) tier[p].insert(cls);
  }
}

std::string where_entry(const std::string& file, const char* list, std::size_t i) {
  return file + ": " + list + "[" + std::to_string(i) + "]";
}

std::int64_t integer_field(const json& obj, const char* key, const std::string& where) {
  if (!obj.is_object() || !obj.contains(key)) throw InputError(where + ": no \"" + std::string(key) + "\"");
  const json& v = obj[key];
  if (v.is_number_integer() || v.is_number_unsigned()) return v.get<std::int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return static_cast<std::int64_t>(d);
  }
  throw InputError(where + ": \"" + std::string(key) + "\" must be an integer (got " + v.dump() + ")");
}

}  // namespace

// --- Instances ------------------------------------------------------------------------------------

Instances load_instances(const std::filesystem::path& path) {
  const std::string file = path.string();
  Instances out;
  out.source = file;

  // The images and annotations are streamed (COCO's train2014 instances file is 450 MB, a DOM of
  // several GB); the categories are few and stay in the parsed rest. COCO lists its categories
  // last, so each annotation is checked as it is read and resolved once they are known.
  auto on_image = [&](std::size_t i, const json& e) {
    const std::string where = where_entry(file, "images", i);
    const std::int64_t id = integer_field(e, "id", where);
    ImageObjects objects;
    for (const char* key : {"width", "height"}) {
      if (!e.contains(key) || e[key].is_null()) continue;
      const std::int64_t v = integer_field(e, key, where);
      if (v < 0 || v > std::numeric_limits<int>::max())
        throw InputError(where + ": \"" + std::string(key) + "\" out of range (" + std::to_string(v) + ")");
      (std::string(key) == "width" ? objects.width : objects.height) = static_cast<int>(v);
    }
    if (!out.images.emplace(id, std::move(objects)).second)
      throw InputError(where + ": image id " + std::to_string(id) + " appears twice");
  };
  struct Pending {
    std::size_t i;
    std::int64_t image_id, category_id;
    double x, y, width, height;
    std::string invalid;  // the bbox as written when it is empty or not finite, else ""
  };
  std::vector<Pending> pending;
  auto on_annotation = [&](std::size_t i, const json& a) {
    const std::string where = where_entry(file, "annotations", i);
    Pending p{i, integer_field(a, "image_id", where), integer_field(a, "category_id", where), 0, 0, 0, 0, {}};
    if (!a.contains("bbox")) throw InputError(where + ": no \"bbox\"");
    const json& b = a["bbox"];
    if (!b.is_array() || b.size() != 4 || !std::all_of(b.begin(), b.end(), [](const json& v) { return v.is_number(); }))
      throw InputError(where + ": \"bbox\" must be [x, y, width, height] (4 numbers; got " + b.dump() + ")");
    p.x = b[0].get<double>();
    p.y = b[1].get<double>();
    p.width = b[2].get<double>();
    p.height = b[3].get<double>();
    if (!(std::isfinite(p.x) && std::isfinite(p.y) && std::isfinite(p.width) && std::isfinite(p.height)) ||
        p.width <= 0 || p.height <= 0)
      p.invalid = b.dump();
    pending.push_back(std::move(p));
  };
  // A missing or malformed file is an InputError naming it (stream_json_arrays).
  const detail::StreamedJson streamed =
      detail::stream_json_arrays(path, {{"images", on_image}, {"annotations", on_annotation}});
  const json& j = streamed.rest;
  if (!j.is_object()) throw InputError(file + ": not COCO instances (the top level is not an object)");
  if (!streamed.present[0] || !streamed.present[1] || !j.contains("categories") || !j["categories"].is_array()) {
    const char* key = !streamed.present[0] ? "images" : !streamed.present[1] ? "annotations" : "categories";
    throw InputError(file + ": not COCO instances (no \"" + std::string(key) + "\" list)");
  }

  std::map<std::int64_t, std::string> category_name;
  const json& cats = j["categories"];
  for (std::size_t i = 0; i < cats.size(); ++i) {
    const std::string where = where_entry(file, "categories", i);
    const std::int64_t id = integer_field(cats[i], "id", where);
    if (!cats[i].contains("name") || !cats[i]["name"].is_string() || cats[i]["name"].get<std::string>().empty())
      throw InputError(where + ": \"name\" must be a non-empty string");
    const std::string name = cats[i]["name"].get<std::string>();
    if (!category_name.emplace(id, name).second)
      throw InputError(where + ": category id " + std::to_string(id) + " appears twice");
    if (std::find(out.categories.begin(), out.categories.end(), name) == out.categories.end())
      out.categories.push_back(name);
  }

  for (const Pending& p : pending) {
    const std::string where = where_entry(file, "annotations", p.i);
    auto cat = category_name.find(p.category_id);
    if (cat == category_name.end())
      throw InputError(where + ": category_id " + std::to_string(p.category_id) + " is not among the categories");
    auto img = out.images.find(p.image_id);
    if (img == out.images.end()) {
      out.warnings.push_back(where + ": image_id " + std::to_string(p.image_id) + " is not among the images; skipped");
      continue;
    }
    if (!p.invalid.empty()) {
      out.warnings.push_back(where + ": empty or invalid box " + p.invalid + "; skipped");
      continue;
    }
    img->second.boxes.push_back({cat->second, p.x, p.y, p.width, p.height});
  }
  return out;
}

// --- Words and classes ----------------------------------------------------------------------------

std::vector<std::string> plural_forms(const std::string& noun) {
  static const std::map<std::string, std::vector<std::string>> irregular = {
      {"man", {"men"}},          {"woman", {"women"}},   {"person", {"people", "persons"}},
      {"child", {"children"}},   {"mouse", {"mice"}},    {"foot", {"feet"}},
      {"tooth", {"teeth"}},      {"goose", {"geese"}},   {"ox", {"oxen"}},
      {"sheep", {"sheep"}},      {"fish", {"fish"}},     {"deer", {"deer"}},
      {"scissors", {"scissors"}}, {"skis", {"skis"}},    {"trousers", {"trousers"}},
      {"gentleman", {"gentlemen"}}, {"policeman", {"policemen"}}, {"fireman", {"firemen"}},
  };
  if (noun.empty()) return {};
  if (auto it = irregular.find(noun); it != irregular.end()) return it->second;
  const std::size_t n = noun.size();
  if (ends_with(noun, "s") || ends_with(noun, "x") || ends_with(noun, "z") || ends_with(noun, "ch") ||
      ends_with(noun, "sh"))
    return {noun + "es"};
  if (n >= 2 && noun[n - 1] == 'y' && !is_vowel(noun[n - 2])) return {noun.substr(0, n - 1) + "ies"};
  if (ends_with(noun, "fe")) return {noun.substr(0, n - 2) + "ves"};
  if (ends_with(noun, "lf") || ends_with(noun, "af")) return {noun.substr(0, n - 1) + "ves"};
  if (n >= 2 && noun[n - 1] == 'o' && !is_vowel(noun[n - 2])) return {noun + "s", noun + "es"};
  return {noun + "s"};
}

const std::map<std::string, std::vector<std::string>>& coco_synonyms() {
  // Plurals are added automatically (plural_forms). No word here is another COCO class's name.
  static const std::map<std::string, std::vector<std::string>> table = {
      {"person", {"person", "man", "woman", "people", "boy", "girl", "child", "kid", "guy", "lady", "baby",
                  "toddler", "adult", "player", "skier", "surfer", "skateboarder", "snowboarder", "rider",
                  "batter", "catcher", "pitcher", "biker", "gentleman", "policeman", "teenager"}},
      {"bicycle", {"bike", "cycle"}},
      {"car", {"taxi", "cab", "suv", "sedan"}},
      {"motorcycle", {"motorbike", "moped", "scooter"}},
      {"airplane", {"plane", "jet", "aircraft", "airliner", "aeroplane", "jetliner"}},
      {"bus", {"busses"}},
      {"train", {"locomotive"}},
      {"truck", {"pickup", "lorry"}},
      {"boat", {"ship", "sailboat", "kayak", "canoe", "yacht"}},
      {"traffic light", {"stoplight", "trafficlight"}},
      {"fire hydrant", {"hydrant"}},
      {"stop sign", {"stopsign"}},
      {"parking meter", {"meter"}},
      {"bird", {"pigeon", "seagull", "gull", "duck", "goose", "parrot"}},
      {"cat", {"kitten", "kitty"}},
      {"dog", {"puppy", "pup"}},
      {"horse", {"pony", "foal"}},
      {"sheep", {"lamb"}},
      {"cow", {"cattle", "bull", "calf", "ox"}},
      {"handbag", {"purse"}},
      {"tie", {"necktie"}},
      {"suitcase", {"luggage"}},
      {"skis", {"ski"}},
      {"sports ball", {"ball", "football", "soccerball"}},
      {"baseball bat", {"bat"}},
      {"baseball glove", {"glove", "mitt"}},
      {"tennis racket", {"racket", "racquet"}},
      {"wine glass", {"glass", "wineglass"}},
      {"cup", {"mug"}},
      {"hot dog", {"hotdog"}},
      {"donut", {"doughnut"}},
      {"couch", {"sofa"}},
      {"potted plant", {"plant", "houseplant"}},
      {"dining table", {"table"}},
      {"tv", {"television"}},
      {"laptop", {"notebook"}},
      {"cell phone", {"phone", "cellphone", "smartphone"}},
      {"refrigerator", {"fridge"}},
      {"teddy bear", {"teddy", "teddybear"}},
      {"hair drier", {"hairdryer", "dryer", "drier"}},
  };
  return table;
}

std::map<std::string, std::vector<std::string>> load_synonyms(const std::filesystem::path& path) {
  const std::string file = path.string();
  json j = read_json_file(path, ExitCode::input);
  if (j.is_object() && j.contains("synonyms")) {
    if (j.contains("format_version")) {
      if (!j["format_version"].is_number_integer())
        throw InputError(file + ": \"format_version\" must be an integer");
      if (j["format_version"].get<std::int64_t>() > 1)
        throw InputError(file + ": format_version " + j["format_version"].dump() +
                         " is newer than this satcap reads (1); use a newer satcap or rewrite the file");
    }
    j = j["synonyms"];
  }
  if (!j.is_object())
    throw InputError(file + ": a synonyms table must be a JSON object {\"class name\": [\"word\", ...]}");
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& [cls, words] : j.items()) {
    if (!words.is_array() || !std::all_of(words.begin(), words.end(), [](const json& w) { return w.is_string(); }))
      throw InputError(file + ": \"" + cls + "\" must be a list of words (strings)");
    auto& list = out[cls];
    for (const auto& w : words) list.push_back(w.get<std::string>());
  }
  return out;
}

ClassLexicon::ClassLexicon(const std::vector<std::string>& categories,
                           const std::map<std::string, std::vector<std::string>>& synonyms, bool builtin_synonyms)
    : categories_(categories) {
  const std::set<std::string> known(categories.begin(), categories.end());
  Tier user, builtin, names, heads;
  for (const auto& [cls, words] : synonyms) {
    if (!known.count(cls)) throw UsageError("synonyms: class \"" + cls + "\" is not among the image classes");
    for (const auto& w : words) claim(user, w, cls, true);
  }
  for (const auto& [word, classes] : user) {
    if (classes.size() > 1)
      throw UsageError("synonyms: the word \"" + word + "\" is given to two classes (\"" + *classes.begin() +
                       "\" and \"" + *std::next(classes.begin()) + "\")");
  }
  if (builtin_synonyms) {
    for (const auto& [cls, words] : coco_synonyms()) {
      if (!known.count(cls)) continue;
      for (const auto& w : words) claim(builtin, w, cls, true);
    }
  }
  for (const auto& cls : categories) {
    const std::vector<std::string> parts = name_words(cls);
    if (parts.empty()) continue;
    if (parts.size() == 1) {
      claim(names, parts[0], cls, true);
    } else {
      std::string joined;
      for (const auto& p : parts) joined += p;
      claim(names, joined, cls, true);
      claim(heads, parts.back(), cls, true);
    }
  }
  for (const Tier* tier : {&user, &builtin, &names, &heads}) {
    for (const auto& [word, classes] : *tier) {
      if (words_.count(word) || classes.size() != 1) continue;
      words_.emplace(word, *classes.begin());
    }
  }
}

std::optional<std::string> ClassLexicon::class_of(const std::string& word) const {
  auto it = words_.find(normalise_word(word));
  if (it == words_.end()) return std::nullopt;
  return it->second;
}

// --- Pointing -------------------------------------------------------------------------------------

double attention_entropy(const std::vector<float>& alpha) {
  double sum = 0;
  for (float a : alpha) {
    if (std::isfinite(a) && a > 0) sum += a;
  }
  if (!(sum > 0)) return 0.0;
  double h = 0;
  for (float a : alpha) {
    if (!(std::isfinite(a) && a > 0)) continue;
    const double p = a / sum;
    h -= p * std::log(p);
  }
  return h;
}

ImagePointing attention_statistics(const std::vector<std::vector<float>>& alpha) {
  ImagePointing out;
  for (const auto& row : alpha) {
    out.entropy_sum += attention_entropy(row);
    ++out.entropy_words;
  }
  return out;
}

ImagePointing point_caption(const ImageObjects& objects, const std::vector<std::string>& words,
                            const std::vector<std::vector<float>>& alpha, int rows, int cols,
                            const ClassLexicon& lexicon) {
  if (rows <= 0 || cols <= 0)
    throw std::invalid_argument("point_caption: grid " + std::to_string(rows) + "x" + std::to_string(cols) +
                                " is not positive");
  if (objects.width <= 0 || objects.height <= 0)
    throw std::invalid_argument("point_caption: image size " + std::to_string(objects.width) + "x" +
                                std::to_string(objects.height) + " is not positive");
  if (alpha.size() != words.size())
    throw std::invalid_argument("point_caption: " + std::to_string(alpha.size()) + " alpha rows for " +
                                std::to_string(words.size()) + " words");
  const std::size_t n = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
  for (std::size_t t = 0; t < alpha.size(); ++t) {
    if (alpha[t].size() != n)
      throw std::invalid_argument("point_caption: alpha row " + std::to_string(t) + " has " +
                                  std::to_string(alpha[t].size()) + " weights, the grid " + std::to_string(n));
  }
  const double W = objects.width, H = objects.height;
  // Centre of cell i in image pixels.
  auto centre = [&](std::size_t i, double& x, double& y) {
    const int r = static_cast<int>(i / static_cast<std::size_t>(cols));
    const int c = static_cast<int>(i % static_cast<std::size_t>(cols));
    x = (c + 0.5) * W / cols;
    y = (r + 0.5) * H / rows;
  };
  auto inside_any = [](const std::vector<const ObjectBox*>& boxes, double x, double y) {
    for (const ObjectBox* b : boxes) {
      if (x >= b->x && x <= b->x + b->width && y >= b->y && y <= b->y + b->height) return true;
    }
    return false;
  };

  ImagePointing out = attention_statistics(alpha);
  for (std::size_t t = 0; t < words.size(); ++t) {
    const std::optional<std::string> cls = lexicon.class_of(words[t]);
    if (!cls) continue;
    WordPointing wp;
    wp.position = t;
    wp.word = words[t];
    wp.category = *cls;
    wp.entropy = attention_entropy(alpha[t]);
    std::vector<const ObjectBox*> boxes;
    for (const auto& b : objects.boxes) {
      if (b.category == *cls) boxes.push_back(&b);
    }
    wp.present = !boxes.empty();
    // Argmax: the lowest index among equal maxima; non-finite weights never win.
    const std::vector<float>& a = alpha[t];
    std::size_t best = 0;
    float best_value = -std::numeric_limits<float>::infinity();
    double total = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (!std::isfinite(a[i])) continue;
      if (a[i] > best_value) {
        best_value = a[i];
        best = i;
      }
      if (a[i] > 0) total += a[i];
    }
    wp.cell = static_cast<int>(best);
    wp.row = static_cast<int>(best / static_cast<std::size_t>(cols));
    wp.col = static_cast<int>(best % static_cast<std::size_t>(cols));
    centre(best, wp.x, wp.y);
    wp.peak = std::isfinite(best_value) ? best_value : 0.0;
    if (wp.present) {
      wp.hit = inside_any(boxes, wp.x, wp.y);
      int cells_in = 0;
      double mass = 0;
      for (std::size_t i = 0; i < n; ++i) {
        double x, y;
        centre(i, x, y);
        if (!inside_any(boxes, x, y)) continue;
        ++cells_in;
        if (std::isfinite(a[i]) && a[i] > 0) mass += a[i];
      }
      wp.mass = total > 0 ? mass / total : 0.0;
      wp.chance = static_cast<double>(cells_in) / static_cast<double>(n);
      ++out.counted;
      if (wp.hit) ++out.hits;
    }
    out.words.push_back(std::move(wp));
  }
  return out;
}

void PointingTally::add(const ImagePointing& image) {
  ++images_;
  counted_ += image.counted;
  hits_ += image.hits;
  entropy_sum_ += image.entropy_sum;
  entropy_words_ += image.entropy_words;
  for (const auto& w : image.words) {
    if (!w.present) {
      ++absent_;
      continue;
    }
    mass_sum_ += w.mass;
    chance_sum_ += w.chance;
    auto& pc = per_class_[w.category];
    ++pc.first;
    if (w.hit) ++pc.second;
  }
}

std::optional<double> PointingTally::pointing() const {
  if (counted_ == 0) return std::nullopt;
  return static_cast<double>(hits_) / counted_;
}
std::optional<double> PointingTally::mass() const {
  if (counted_ == 0) return std::nullopt;
  return mass_sum_ / counted_;
}
std::optional<double> PointingTally::chance() const {
  if (counted_ == 0) return std::nullopt;
  return chance_sum_ / counted_;
}
std::optional<double> PointingTally::entropy() const {
  if (entropy_words_ == 0) return std::nullopt;
  return entropy_sum_ / entropy_words_;
}

nlohmann::json to_json(const WordPointing& w) {
  return json{{"position", w.position}, {"word", w.word},   {"class", w.category}, {"present", w.present},
              {"hit", w.hit},           {"cell", w.cell},   {"row", w.row},        {"col", w.col},
              {"x", w.x},               {"y", w.y},         {"peak", w.peak},      {"mass", w.mass},
              {"chance", w.chance},     {"entropy", w.entropy}};
}

}  // namespace satcap
