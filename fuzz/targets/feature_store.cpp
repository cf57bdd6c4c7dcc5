// A feature store's meta.json and status.bin (lib/src/data/feature_store.cpp: FeatureStore::open),
// then reading every row marked written. Input: meta.json NUL status.bin (the rest of the input: its
// bytes 0, 1 and 2 are row states); features.bin is made of the size meta.json asks for (up to
// 1 MiB), so that the fuzzer reaches the rows.
#include <nlohmann/json.hpp>

#include <algorithm>

#include "fuzz_target.h"
#include "satcap/data/feature_store.h"

SATCAP_FUZZ_TARGET(feature_store) {
  using namespace satcap;
  const auto parts = fuzz::sections(data, size, 2);
  fuzz::fresh_folder("store");
  fuzz::write_input("store/meta.json", parts[0]);
  fuzz::write_input("store/status.bin", parts[1]);
  std::string features;
  {
    // Read leniently here (no copies of its values: a deep one would overflow the stack in this
    // harness, before the reader is reached).
    const auto meta = nlohmann::json::parse(parts[0], nullptr, /*allow_exceptions=*/false);
    auto unsigned_at = [&](const char* key) {
      return meta.is_object() && meta.contains(key) && meta[key].is_number_unsigned() ? meta[key].get<std::uint64_t>() : 0;
    };
    const std::uint64_t keys = meta.is_object() && meta.contains("keys") && meta["keys"].is_array() ? meta["keys"].size() : 0;
    const bool half = meta.is_object() && meta.contains("dtype") && meta["dtype"] == "float16";
    const std::uint64_t bytes = unsigned_at("regions") * unsigned_at("dim") * keys * (half ? 2 : 4);
    features.assign(static_cast<std::size_t>(std::min<std::uint64_t>(bytes, 1 << 20)), '\x3f');
  }
  fuzz::write_input("store/features.bin", features);
  const FeatureStore store = FeatureStore::open(fuzz::scratch() / "store", "", /*allow_incomplete=*/true);
  std::vector<std::int64_t> rows;
  for (std::size_t r = 0; r < store.size() && rows.size() < 64; ++r)
    if (store.state(r) == RowState::written) rows.push_back(static_cast<std::int64_t>(r));
  (void)store.gather(rows);
  for (const auto& key : store.keys()) (void)store.row_of(key);
}
