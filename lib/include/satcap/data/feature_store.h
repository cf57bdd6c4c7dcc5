// An on-disk store of encoder region features, one row [n, D] per image, so training reads
// features instead of running the CNN. The data file is memory-mapped: opening a store reads
// only its meta file, and gather() touches only the rows asked for.
//
// Layout of a store folder (format_version 1):
//   meta.json     format, format_version, encoder identity and describe(), regions n, dim D,
//                 dtype (float32|float16), byte_order, capacity, keys (row order), complete
//   features.bin  capacity rows of n*D values, row r at byte r * n * D * sizeof(dtype)
//   status.bin    one byte per row: 0 = not written, 1 = written, 2 = failed (unreadable image)
// Crash safety: rows are written to features.bin, then commit() fdatasyncs it and only then marks
// their status bytes (and fdatasyncs status.bin), so a row marked written is on disk. A store
// interrupted mid-write reopens with create_or_resume() and continues with the rows not written.
// "complete" is set in meta.json (written atomically: tmp, fsync, rename) only by finalize(),
// after every row is written or failed; open() refuses an incomplete store unless asked not to.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace satcap {

enum class FeatureDtype { float32, float16 };

enum class RowState : std::uint8_t { empty = 0, written = 1, failed = 2 };

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
  static constexpr int format_version = 1;

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
  std::size_t count(RowState s) const;
  bool complete() const;

  // Writes one row from n*D float32 values (converted to the store's dtype); not durable until commit().
  void write(std::size_t row, const float* values);
  // [n, D] or [1, n, D] float tensor on any device.
  void write(std::size_t row, const at::Tensor& features);
  void mark_failed(std::size_t row);
  // Makes the rows written since the last commit durable (fdatasync data, then mark, fdatasync status).
  void commit();
  // commit(), then sets "complete" (InputError if a row is still empty).
  void finalize();

  // Rows -> [B, n, D] float32 on CPU. InputError for a row out of range or not written.
  at::Tensor gather(const std::vector<std::int64_t>& rows) const;
  // Bytes of one row on disk.
  std::size_t row_bytes() const;

 private:
  struct Impl;
  explicit FeatureStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

std::string to_string(FeatureDtype dtype);

}  // namespace satcap
