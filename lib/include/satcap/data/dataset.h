// Captioned image datasets: COCO caption annotations, Karpathy split files (COCO, Flickr8k,
// Flickr30k) and the Flickr8k token file, read into one `Dataset`. No torch here.
//
// Format detection (DatasetOptions::format = DatasetFormat::detect, "auto" on the command line):
//   - a folder: the first of dataset.json, dataset_*.json (Karpathy), captions.json,
//     annotations/captions_*.json (COCO; several are merged), *.token.txt (Flickr8k) found in it;
//   - a file: "*.txt" is a Flickr8k token file; a JSON file whose "images" entries carry
//     "sentences" is a Karpathy split file, one with a top-level "annotations" array is COCO.
// Image root (DatasetOptions::image_root = ""): the first candidate folder in which the first
// listed image exists: the annotation file's folder, its parent when that folder is named
// "annotations", then "<folder>/images", then (COCO "captions_NAME.json") "<parent>/NAME",
// then (Flickr8k) "<parent>/Flicker8k_Dataset" / "Flickr8k_Dataset"; when none has it, the first.
// Every image path from a file must stay inside the image root: absolute paths, ".." escapes and
// symlinks leading outside are refused with InputError naming the file and the entry.
//
// What is an error (InputError) and what is a reported skip (a line in Dataset::warnings):
//   error: the file missing, malformed or truncated JSON (with the byte position), a wrong type
//          or missing key, duplicate image ids, a path escaping the image root, a missing image
//          file when `strict`;
//   skip:  an empty caption, a caption that is not valid UTF-8 (token files; in JSON it is a
//          parse error), a caption for an unknown image id, a duplicate caption id, an image
//          listed but missing on disk (without `strict`).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "satcap/runtime/option_table.h"

namespace satcap {

// The file formats read: COCO captions, Karpathy split files, the Flickr8k token file; detect =
// find out from the path (see the rules above), for DatasetOptions only.
enum class DatasetFormat { detect, coco, karpathy, flickr8k };

template <>
struct EnumNames<DatasetFormat> {
  static const std::vector<std::pair<std::string, DatasetFormat>>& table() {
    static const std::vector<std::pair<std::string, DatasetFormat>> t{{"auto", DatasetFormat::detect},
                                                                      {"coco", DatasetFormat::coco},
                                                                      {"karpathy", DatasetFormat::karpathy},
                                                                      {"flickr8k", DatasetFormat::flickr8k}};
    return t;
  }
};

struct Caption {
  std::string raw;  // as written in the file (valid UTF-8, never without a word)
  // tokenize_caption(raw) (see vocab.h), computed when asked: a dataset of 600,000 captions keeps
  // only their text in memory.
  std::vector<std::string> tokens() const;
};

struct ImageEntry {
  std::int64_t id = 0;              // COCO image id, Karpathy cocoid/imgid, Flickr8k: line order
  std::string key;                  // path relative to the image root ("val2014/x.jpg"): the feature store key
  std::filesystem::path path;       // image_root / key
  std::string split;                // "train", "val", "test" (or what the user named)
  int width = 0;                    // 0 when the file does not say
  int height = 0;
  std::vector<Caption> captions;
};

struct DatasetOptions {
  // The format of the file or folder (see the rules at the top of this header).
  DatasetFormat format = DatasetFormat::detect;
  // Folder the image paths are relative to ("" = detected, see above).
  std::string image_root;
  // Split given to images of a COCO captions file or an unlisted Flickr8k token file
  // ("" = from the file name: captions_train2014.json -> "train", captions_val2014 -> "val").
  std::string split;
  // A Karpathy split file giving COCO images their split (by cocoid); images absent from it are dropped.
  std::string split_file;
  // Karpathy "restval" images join "train" (as in the paper's COCO split: 113,287 training images).
  bool merge_restval = true;
  // Check that every image file exists (missing ones are skipped with a warning, or an error when strict).
  bool check_images = true;
  // Missing image files are errors instead of warnings.
  bool strict = false;
};

class Dataset {
 public:
  std::string source;                   // the path given to load_dataset
  DatasetFormat format = DatasetFormat::coco;  // the format read (never detect)
  std::filesystem::path image_root;
  std::vector<ImageEntry> images;       // in file order
  std::vector<std::string> warnings;    // skipped entries, "file: entry: reason"

  // Images of one split ("all" or "" = every image), in file order.
  std::vector<const ImageEntry*> split(const std::string& name) const;
  // The image with this id, or nullptr.
  const ImageEntry* find(std::int64_t id) const;
  // Reference captions (raw text) per image id, for evaluation ("all" = every split).
  std::map<std::int64_t, std::vector<std::string>> references(const std::string& split_name = "all") const;
  // Number of captions over the images of a split.
  std::size_t caption_count(const std::string& split_name = "all") const;
  // Rebuilds the id index (after editing `images` by hand).
  void reindex();

 private:
  std::map<std::int64_t, std::size_t> by_id_;
};

// Reads a dataset from a file or folder (see above). Throws InputError (bad or missing input,
// naming the file and the entry).
Dataset load_dataset(const std::string& path, const DatasetOptions& options = {});

// True when `text` is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool is_valid_utf8(const std::string& text);

}  // namespace satcap
