// Does the model look at what it names? "Pointing": for every generated word that names an object
// class present in the image, whether the most attended region of that word's alpha_t falls inside
// a box of that class (the pointing game of Zhang et al. 2016 applied to caption attention, as the
// "attention correctness" studies of Liu et al. 2017 do with COCO boxes). Also the attention mass
// inside the boxes, the hit rate a uniformly random cell would get (chance), and the attention
// entropy H(alpha_t). No torch here.
//
// Geometry. The encoder resizes the whole image to its input size by stretching (no crop; see
// Encoder::preprocess), so the grid of regions covers the whole image: cell (r, c) of a rows x cols
// grid covers [c*W/cols, (c+1)*W/cols) x [r*H/rows, (r+1)*H/rows) of a W x H image, whatever W:H is.
// A cell is represented by its centre point ((c + 0.5) * W / cols, (r + 0.5) * H / rows); it is
// inside a COCO box [x, y, w, h] when x <= px <= x + w and y <= py <= y + h (edges included). The
// argmax of alpha_t is the lowest row-major index among equal maxima.
//
//   Instances inst = load_instances("data/instances.json");
//   ClassLexicon lex(inst.categories);                      // + synonyms, plurals
//   ImagePointing p = point_caption(inst.images.at(id), words, alpha, 14, 14, lex);
//   PointingTally tally;  tally.add(p);  tally.pointing();
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace satcap {

// One object's box in the coordinates of the annotated image (COCO "bbox": x, y, width, height in
// pixels, origin at the top-left corner).
struct ObjectBox {
  std::string category;  // class name as in the instances file ("traffic light", "circle")
  double x = 0, y = 0, width = 0, height = 0;
};

// The annotated objects of one image.
struct ImageObjects {
  int width = 0;   // size of the image the boxes refer to, in pixels (0 = unknown)
  int height = 0;
  std::vector<ObjectBox> boxes;
};

// Object boxes per image, read from a COCO instances file.
struct Instances {
  std::string source;                           // the file read
  std::vector<std::string> categories;          // category names, in the file's order
  std::map<std::int64_t, ImageObjects> images;  // by image id; an image without objects has no boxes
  std::vector<std::string> warnings;            // skipped annotations, "file: annotations[i]: reason"
};

// Reads COCO instances JSON: {"images": [{"id", "width", "height"}], "annotations": [{"image_id",
// "category_id", "bbox": [x, y, w, h]}], "categories": [{"id", "name"}]} (the scenes generator's
// instances.json has this form). Throws InputError naming the file and the entry for a missing or
// unreadable file, invalid JSON, a missing key or a wrong type, a duplicate image or category id, an
// annotation naming an unknown category. Skipped with a warning: an annotation for an image not
// listed, a box with a non-positive or non-finite size.
Instances load_instances(const std::filesystem::path& path);

// Which generated words name which class. Words are compared after the training tokenisation
// (lower case, no punctuation: vocab.h), so the lexicon's words are lower-cased, punctuation-free.
// A word is looked up in four tiers; the first tier that knows it decides:
//   1. the synonyms table given to the constructor (class name -> words);
//   2. with builtin_synonyms, satcap's table for the COCO categories (coco_synonyms(); used only
//      for classes among `categories`: "person" -> man, woman, people, ...);
//   3. names: each single-word class name ("dog") and a multi-word name written as one token
//      ("hot dog" -> "hotdog");
//   4. heads: the last word of a multi-word name ("traffic light" -> "light").
// Every word of every tier also brings its plural forms (plural_forms(): dogs, buses, men).
// A word that two classes claim within one tier is ambiguous and names no class at that tier (a
// later tier may still claim it); in the constructor's synonyms table it is an error.
class ClassLexicon {
 public:
  ClassLexicon() = default;
  // `synonyms`: class name -> extra words. Throws UsageError when the table names a class not in
  // `categories` or gives one word to two classes.
  explicit ClassLexicon(const std::vector<std::string>& categories,
                        const std::map<std::string, std::vector<std::string>>& synonyms = {},
                        bool builtin_synonyms = true);

  // The class a word names, or nullopt.
  std::optional<std::string> class_of(const std::string& word) const;
  const std::vector<std::string>& categories() const { return categories_; }
  // Every word -> class entry (for --help-like listings and tests).
  const std::map<std::string, std::string>& words() const { return words_; }

 private:
  std::vector<std::string> categories_;
  std::map<std::string, std::string> words_;
};

// Reads a synonyms table: a JSON object {"class name": ["word", ...], ...}, optionally wrapped as
// {"format_version": 1, "synonyms": {...}}. Throws InputError naming the file and the key.
std::map<std::string, std::vector<std::string>> load_synonyms(const std::filesystem::path& path);

// satcap's built-in synonyms for the 80 COCO categories (class name -> words, plurals included).
const std::map<std::string, std::vector<std::string>>& coco_synonyms();

// English plural(s) of a lower-case noun: "dog" -> dogs, "box" -> boxes, "city" -> cities,
// "knife" -> knives, irregulars from a short list ("person" -> people, "man" -> men, "sheep" -> sheep).
std::vector<std::string> plural_forms(const std::string& noun);

// The entropy H(alpha) = -sum_i alpha_i ln alpha_i in nats, of the weights normalised to sum 1
// (negative or non-finite weights count as 0; 0 ln 0 = 0). An all-zero row gives 0. A uniform row
// over n regions gives ln n (5.278 for 196).
double attention_entropy(const std::vector<float>& alpha);

// The pointing result of one generated word that names a class.
struct WordPointing {
  std::size_t position = 0;  // index of the word in the caption, from 0
  std::string word;
  std::string category;      // the class it names
  bool present = false;      // the image has at least one box of that class (otherwise not counted)
  bool hit = false;          // the argmax cell's centre lies inside a box of the class
  int cell = 0;              // argmax of alpha_t, row-major
  int row = 0, col = 0;      // the argmax cell
  double x = 0, y = 0;       // its centre in image pixels
  double peak = 0;           // alpha_t at the argmax
  double mass = 0;           // sum of alpha_t over the cells whose centre lies in a box of the class
  double chance = 0;         // fraction of the cells whose centre lies in a box of the class
  double entropy = 0;        // H(alpha_t), nats
};

// One caption's pointing.
struct ImagePointing {
  std::vector<WordPointing> words;  // every word that names a class, in caption order
  int counted = 0;                  // words whose class is present in the image
  int hits = 0;                     // of those, hits
  double entropy_sum = 0;           // sum of H(alpha_t) over every generated word
  int entropy_words = 0;            // words with an alpha row
};

// Points every word of a caption. `alpha`: one row of rows*cols weights per word (row-major over the
// grid). `objects.width/height` must be positive: the boxes' coordinate frame. Throws
// std::invalid_argument (a bug in the caller) when the pieces disagree: alpha rows not one per word
// or not rows*cols long, a grid or image size not positive.
ImagePointing point_caption(const ImageObjects& objects, const std::vector<std::string>& words,
                            const std::vector<std::vector<float>>& alpha, int rows, int cols,
                            const ClassLexicon& lexicon);

// Only the entropy part (for images without boxes).
ImagePointing attention_statistics(const std::vector<std::vector<float>>& alpha);

// Totals over a data set: micro averages over words.
class PointingTally {
 public:
  void add(const ImagePointing& image);

  int images() const { return images_; }
  int counted() const { return counted_; }  // class words whose class is present
  int hits() const { return hits_; }
  // hits / counted; nullopt when no word was counted.
  std::optional<double> pointing() const;
  // Mean over counted words of WordPointing::mass and ::chance; nullopt when none.
  std::optional<double> mass() const;
  std::optional<double> chance() const;
  // Mean H(alpha_t) over every generated word; nullopt when none.
  std::optional<double> entropy() const;
  // Per class: {counted, hits}.
  const std::map<std::string, std::pair<int, int>>& per_class() const { return per_class_; }
  // Class words whose class was absent from the image (not counted).
  int absent() const { return absent_; }

 private:
  int images_ = 0, counted_ = 0, hits_ = 0, absent_ = 0, entropy_words_ = 0;
  double mass_sum_ = 0, chance_sum_ = 0, entropy_sum_ = 0;
  std::map<std::string, std::pair<int, int>> per_class_;
};

// One word's pointing as JSON (the lines of --per-word's pointing.jsonl, with image_id added by
// the caller): position, word, class, present, hit, cell, row, col, x, y, peak, mass, chance, entropy.
nlohmann::json to_json(const WordPointing& word);

}  // namespace satcap
