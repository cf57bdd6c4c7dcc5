#include "satcap/model/vocab.h"

#include "satcap/runtime/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "satcap/data/dataset.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"
#include "satcap/runtime/json_value.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace satcap {

std::vector<std::string> tokenize_caption(const std::string& raw) {
  std::vector<std::string> tokens;
  std::string current;
  for (char ch : raw) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x80 && std::isspace(c)) {
      if (!current.empty()) tokens.push_back(std::move(current));
      current.clear();
    } else if (c < 0x80 && std::ispunct(c)) {
      continue;  // deleted, as Karpathy's preprocessing does
    } else if (c < 0x80 && std::iscntrl(c)) {
      continue;
    } else {
      current.push_back(c < 0x80 ? static_cast<char>(std::tolower(c)) : ch);
    }
  }
  if (!current.empty()) tokens.push_back(std::move(current));
  return tokens;
}

void validate(const VocabOptions& options) {
  if (options.min_count < 1) throw UsageError("--min-count must be at least 1 (got " + std::to_string(options.min_count) + ")");
  if (options.max_length < 1) throw UsageError("--max-length must be at least 1 (got " + std::to_string(options.max_length) + ")");
  if (options.max_size < 0 || (options.max_size > 0 && options.max_size <= 4)) {
    throw UsageError("--max-vocab must be 0 (no limit) or more than 4 (got " + std::to_string(options.max_size) + ")");
  }
}

Vocabulary::Vocabulary() {
  for (const char* s : {"<pad>", "<start>", "<end>", "<unk>"}) add(s, 0);
}

void Vocabulary::add(const std::string& word, std::int64_t count) {
  index_.emplace(word, static_cast<std::int64_t>(words_.size()));
  words_.push_back(word);
  counts_.push_back(count);
}

Vocabulary Vocabulary::build(const std::vector<std::vector<std::string>>& captions, const VocabOptions& options) {
  validate(options);
  std::map<std::string, std::int64_t> counts;
  for (const auto& tokens : captions)
    for (const auto& t : tokens) ++counts[t];
  return from_counts(counts, options);
}

Vocabulary Vocabulary::from_counts(const std::map<std::string, std::int64_t>& counts, const VocabOptions& options) {
  std::vector<std::pair<std::string, std::int64_t>> kept;
  for (const auto& [w, c] : counts) {
    if (c >= options.min_count && w.front() != '<') kept.emplace_back(w, c);  // "<" cannot survive tokenisation anyway
  }
  std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
  if (options.max_size > 0 && kept.size() > static_cast<std::size_t>(options.max_size - 4)) kept.resize(options.max_size - 4);
  Vocabulary v;
  v.max_length_ = options.max_length;
  v.min_count_ = options.min_count;
  for (const auto& [w, c] : kept) v.add(w, c);
  return v;
}

Vocabulary Vocabulary::build(const Dataset& dataset, const VocabOptions& options, const std::string& split) {
  validate(options);
  std::map<std::string, std::int64_t> counts;
  std::size_t captions = 0;
  for (const ImageEntry* image : dataset.split(split)) {
    for (const auto& c : image->captions) {
      for (const auto& t : c.tokens()) ++counts[t];
      ++captions;
    }
  }
  if (captions == 0) throw InputError(dataset.source + ": no captions in split '" + split + "' to build a vocabulary from");
  return from_counts(counts, options);
}

std::int64_t Vocabulary::id(const std::string& word) const {
  auto it = index_.find(word);
  return it == index_.end() ? unk_id : it->second;
}

const std::string& Vocabulary::word(std::int64_t id) const {
  if (id < 0 || id >= static_cast<std::int64_t>(words_.size())) {
    throw InputError("word id " + std::to_string(id) + " is outside the vocabulary (size " + std::to_string(words_.size()) + ")");
  }
  return words_[static_cast<std::size_t>(id)];
}

std::vector<std::int64_t> Vocabulary::encode(const std::vector<std::string>& tokens) const {
  std::size_t k = std::min(tokens.size(), static_cast<std::size_t>(max_length_));
  std::vector<std::int64_t> ids;
  ids.reserve(k + 2);
  ids.push_back(start_id);
  for (std::size_t i = 0; i < k; ++i) ids.push_back(id(tokens[i]));
  ids.push_back(end_id);
  return ids;
}

std::vector<std::string> Vocabulary::decode_tokens(const std::vector<std::int64_t>& ids) const {
  std::vector<std::string> out;
  for (std::int64_t i : ids) {
    if (i == end_id) break;
    if (i == start_id || i == pad_id) continue;
    out.push_back(word(i));
  }
  return out;
}

std::string Vocabulary::decode(const std::vector<std::int64_t>& ids) const {
  std::string s;
  for (const auto& w : decode_tokens(ids)) s += (s.empty() ? "" : " ") + w;
  return s;
}

json Vocabulary::to_json() const {
  return json{{"format", "satcap-vocabulary"},
              {"format_version", format_version},
              {"min_count", min_count_},
              {"max_length", max_length_},
              {"specials", {{"pad", pad_id}, {"start", start_id}, {"end", end_id}, {"unk", unk_id}}},
              {"words", words_},
              {"counts", counts_}};
}

Vocabulary Vocabulary::from_json(const json& j, const std::string& where) {
  auto bad = [&](const std::string& why) { return ModelError(where + ": " + why); };
  if (!j.is_object()) throw bad("not a vocabulary (expected a JSON object)");
  const int version = json_field<int>(j, "format_version", where, ExitCode::model);
  if (version > format_version) {
    throw bad("format_version " + std::to_string(version) + " is newer than this satcap reads (" +
              std::to_string(format_version) + "); update satcap or rebuild the vocabulary with this version");
  }
  if (version < 1) throw bad("format_version " + std::to_string(version) + " is not valid");
  auto words = j.find("words");
  if (words == j.end() || !words->is_array()) throw bad("'words' is missing or not an array");
  static const char* specials[] = {"<pad>", "<start>", "<end>", "<unk>"};
  if (words->size() < 4) throw bad("fewer than the 4 special tokens");
  auto counts = j.find("counts");
  bool have_counts = counts != j.end() && counts->is_array() && counts->size() == words->size();
  Vocabulary v;
  for (std::size_t i = 0; i < words->size(); ++i) {
    const json& w = (*words)[i];
    if (!w.is_string()) throw bad("words[" + std::to_string(i) + "] is not a string");
    std::string s = w.get<std::string>();
    if (i < 4) {
      if (s != specials[i]) throw bad("words[" + std::to_string(i) + "] must be " + specials[i] + " (got '" + s + "')");
      continue;
    }
    if (v.index_.count(s)) throw bad("word '" + s + "' appears twice");
    const std::int64_t c = have_counts ? json_as<std::int64_t>((*counts)[i], "counts", where, ExitCode::model) : 0;
    v.add(s, c);
  }
  v.max_length_ = json_field_or<int>(j, "max_length", v.max_length_, where, ExitCode::model);
  if (v.max_length_ < 1) throw bad("'max_length' must be a positive integer");
  v.min_count_ = json_field_or<int>(j, "min_count", v.min_count_, where, ExitCode::model);
  return v;
}

void Vocabulary::save(const fs::path& path) const {
  write_file_atomic(path, to_json().dump(1) + "\n", ParentDirs::must_exist);
}

Vocabulary Vocabulary::load(const fs::path& path) {
  // A folder reads as nothing, a FIFO would block: InputFile refuses both by name.
  return from_json(read_json_file(path, ExitCode::model), path.string());
}

}  // namespace satcap
