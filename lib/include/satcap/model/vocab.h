// Tokenisation for training and the word vocabulary. No torch here.
//
// Tokenisation (as Karpathy's neuraltalk preprocessing, which produced the split files' tokens):
// ASCII letters lowercased, ASCII punctuation deleted ("man's" -> "mans", "t-shirt" -> "tshirt"),
// split on whitespace; bytes >= 0x80 (UTF-8 letters) are kept as they are.
//
// Vocabulary: built from the training split only. Ids 0..3 are the special tokens <pad>, <start>,
// <end>, <unk>; then words seen at least `min_count` times, by count (descending), ties by word
// (byte order): the same data always gives the same ids. Rarer words map to <unk>.
// Captions longer than `max_length` words are truncated by encode() (the first max_length words
// are kept); the trainer may instead skip them using fits().
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace satcap {

class Dataset;

std::vector<std::string> tokenize_caption(const std::string& raw);

struct VocabOptions {
  // Words seen fewer times than this in the training captions become <unk>.
  int min_count = 5;
  // Longest caption in words (without <start>/<end>); longer ones are truncated by encode().
  int max_length = 50;
  // Largest vocabulary including the 4 special tokens (0 = no limit; the most frequent words are kept).
  int max_size = 0;
};

// Throws UsageError for min_count < 1, max_length < 1, max_size in 1..4.
void validate(const VocabOptions& options);

class Vocabulary {
 public:
  static constexpr std::int64_t pad_id = 0;
  static constexpr std::int64_t start_id = 1;
  static constexpr std::int64_t end_id = 2;
  static constexpr std::int64_t unk_id = 3;
  static constexpr int format_version = 1;

  Vocabulary();  // only the special tokens

  // From tokenised training captions.
  static Vocabulary build(const std::vector<std::vector<std::string>>& captions, const VocabOptions& options = {});
  // From the captions of one split of a dataset (the training split: never build it from val/test).
  static Vocabulary build(const Dataset& dataset, const VocabOptions& options = {}, const std::string& split = "train");

  std::size_t size() const { return words_.size(); }
  int max_length() const { return max_length_; }
  int min_count() const { return min_count_; }
  // Id of a word (<unk> when absent).
  std::int64_t id(const std::string& word) const;
  // Word of an id; throws InputError for an id out of range.
  const std::string& word(std::int64_t id) const;
  bool contains(const std::string& word) const { return index_.count(word) > 0; }

  // [<start>, w_1 .. w_k, <end>] with k = min(tokens, max_length).
  std::vector<std::int64_t> encode(const std::vector<std::string>& tokens) const;
  // True when the caption has at most max_length words.
  bool fits(const std::vector<std::string>& tokens) const { return tokens.size() <= static_cast<std::size_t>(max_length_); }
  // Words up to the first <end>, without <start>/<pad>.
  std::vector<std::string> decode_tokens(const std::vector<std::int64_t>& ids) const;
  // decode_tokens joined with single spaces.
  std::string decode(const std::vector<std::int64_t>& ids) const;

  nlohmann::json to_json() const;
  // Throws ModelError for a malformed vocabulary or one with a newer format_version; `where` names it.
  static Vocabulary from_json(const nlohmann::json& j, const std::string& where = "vocabulary");
  // Written atomically (tmp + fsync + rename); OutputError when it cannot be written.
  void save(const std::filesystem::path& path) const;
  // ModelError when missing, malformed or newer.
  static Vocabulary load(const std::filesystem::path& path);

 private:
  std::vector<std::string> words_;
  std::vector<std::int64_t> counts_;  // training counts (0 for the special tokens)
  std::unordered_map<std::string, std::int64_t> index_;
  int max_length_ = 50;
  int min_count_ = 5;
  void add(const std::string& word, std::int64_t count);
  // The special tokens, then the words counted at least min_count times, most frequent first.
  static Vocabulary from_counts(const std::map<std::string, std::int64_t>& counts, const VocabOptions& options);
};

}  // namespace satcap
