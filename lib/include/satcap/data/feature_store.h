// An on-disk store of encoder region features, one row [n, D] per image, so training reads
// features instead of running the CNN. The data file is memory-mapped: opening a store reads
// only its meta file, and gather() touches only the rows asked for.
//
// Layout of a store folder (format_version 2):
//   meta.json     format, format_version, encoder identity and describe(), regions n, dim D,
//                 dtype (float32|float16), byte_order, capacity, keys (row order), complete
//   features.bin  capacity rows of n*D values, row r at byte r * n * D * sizeof(dtype)
//   status.bin    one byte per row: 0 = not written, 1 = written, 2 = failed (unreadable image)
//   sources.bin   per row 48 bytes, the image file its features were computed from: its size
//                 (uint64), modification time (int64 ns) and SHA-256 (32 bytes), little-endian;
//                 all zero = not recorded. Format 1 (satcap before it) has no sources.bin.
// A store is matched to a dataset by content, not by file name: an image whose content differs
// from the SHA-256 recorded for its row (another data set under the same names, an image edited
// or regenerated since) does not get those features (find_changed_sources; prepare re-encodes it,
// train and eval refuse). Size and time equal to the record count as unchanged without reading.
// Crash safety: rows are written to features.bin, then commit() fdatasyncs it and only then marks
// their status bytes (and fdatasyncs status.bin), so a row marked written is on disk. A store
// interrupted mid-write reopens with create_or_resume() and continues with the rows not written.
// "complete" is set in meta.json (written atomically: tmp, fsync, rename) only by finalize(),
// after every row is written or failed; open() refuses an incomplete store unless asked not to.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace satcap {

enum class FeatureDtype { float32, float16 };

enum class RowState : std::uint8_t { empty = 0, written = 1, failed = 2 };

// What an image file was when its features were computed.
struct FileStamp {
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::array<std::uint8_t, 32> sha256{};
  bool recorded() const;  // not all zero
};

// The stamp of `path` now (stat, then the whole file hashed). InputError naming it when it cannot
// be read.
FileStamp stamp_file(const std::filesystem::path& path);

// Whether `path` still holds what `recorded` describes.
enum class SourceState {
  same,       // the same size and time, or the same content (SHA-256)
  changed,    // other content: the features are not this file's
  missing,    // the file is gone (features of files deleted after prepare stay usable)
  unrecorded  // no stamp (a store of format 1): cannot tell
};
SourceState check_source(const std::filesystem::path& path, const FileStamp& recorded);

// What a new store holds; an existing store must match it to be resumed.
struct FeatureStoreSpec {
  std::string encoder_identity;        // Encoder::identity()
  nlohmann::json encoder_description;  // Encoder::describe()
  int regions = 0;                     // n
  int dim = 0;                         // D
  FeatureDtype dtype = FeatureDtype::float32;
  std::vector<std::string> keys;       // one per row, unique (ImageEntry::key)
};

class FeatureStore {
 public:
  static constexpr int format_version = 2;

  // Creates the store in `dir` (made if missing; it must be empty or a store), or reopens an
  // incomplete store with the same spec to continue it. Throws ModelError when the store holds
  // another encoder's features, InputError when its shape, dtype or keys differ or it is corrupt,
  // OutputError when it cannot be written.
  static FeatureStore create_or_resume(const std::filesystem::path& dir, const FeatureStoreSpec& spec);
  // Opens for reading. `expected_identity` ("" = any) must equal the stored encoder identity
  // (ModelError otherwise). An incomplete store is refused (InputError) unless allow_incomplete.
  static FeatureStore open(const std::filesystem::path& dir, const std::string& expected_identity = "",
                           bool allow_incomplete = false);

  FeatureStore(FeatureStore&&) noexcept;
  FeatureStore& operator=(FeatureStore&&) noexcept;
  ~FeatureStore();

  const std::filesystem::path& dir() const;
  std::size_t size() const;  // rows (capacity)
  int regions() const;       // n
  int dim() const;           // D
  FeatureDtype dtype() const;
  const std::string& encoder_identity() const;
  const nlohmann::json& encoder_description() const;
  const std::vector<std::string>& keys() const;
  // Row of a key, if stored.
  std::optional<std::size_t> row_of(const std::string& key) const;
  RowState state(std::size_t row) const;
  // The image a written row was computed from (FileStamp::recorded() false when not recorded).
  FileStamp source(std::size_t row) const;
  // Whether rows record their images (format 2 and later).
  bool records_sources() const;
  std::size_t count(RowState s) const;
  bool complete() const;

  // Writes one row from n*D float32 values (converted to the store's dtype) and the stamp of the
  // image they were computed from; not durable until commit().
  void write(std::size_t row, const float* values, const FileStamp& source = {});
  // [n, D] or [1, n, D] float tensor on any device.
  void write(std::size_t row, const at::Tensor& features, const FileStamp& source = {});
  // Records a new stamp for a written row whose image kept its content (a copy with new times).
  void restamp(std::size_t row, const FileStamp& source);
  // Marks rows as not written, durably, before they are written again (an interrupted rewrite
  // then leaves them to do, never old features under a new stamp).
  void reset(const std::vector<std::size_t>& rows);
  void mark_failed(std::size_t row);
  // Makes the rows written since the last commit durable (fdatasync data, then mark, fdatasync status).
  void commit();
  // commit(), then sets "complete" (InputError if a row is still empty).
  void finalize();

  // Rows -> [B, n, D] float32 on CPU. InputError for a row out of range or not written, or whose
  // stored values are not finite (a corrupted features.bin), naming the file and the image.
  at::Tensor gather(const std::vector<std::int64_t>& rows) const;
  // Bytes of one row on disk.
  std::size_t row_bytes() const;

 private:
  struct Impl;
  explicit FeatureStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

std::string to_string(FeatureDtype dtype);

// The rows, of `rows` (row, image file), whose image changed since the row was written (see
// check_source); `unrecorded` counts the rows without a stamp (a store of format 1).
struct ChangedSources {
  std::vector<std::size_t> changed;       // indices into `rows`
  std::vector<std::size_t> same_content;  // same content, other size/time record (prepare re-stamps them)
  std::size_t unrecorded = 0;
};
ChangedSources find_changed_sources(const FeatureStore& store,
                                    const std::vector<std::pair<std::size_t, std::filesystem::path>>& rows);

// For train and eval: InputError when images changed since their features were prepared, naming
// the store, how many and the first few, and saying to run prepare again; a warning on `warn`
// (may be empty) when the store records no images (format 1).
void require_current_sources(const FeatureStore& store,
                             const std::vector<std::pair<std::size_t, std::filesystem::path>>& rows,
                             const std::function<void(const std::string&)>& warn);

}  // namespace satcap
