#include "satcap/data/feature_store.h"

#include "satcap/runtime/atomic_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"
#include "satcap/runtime/json_value.h"
#include "satcap/runtime/sha256.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace satcap {

std::string to_string(FeatureDtype dtype) { return dtype == FeatureDtype::float16 ? "float16" : "float32"; }

namespace {

constexpr const char* kFormat = "satcap-feature-store";
constexpr std::int64_t kMaxSide = 1 << 20;

constexpr std::size_t kSourceBytes = 48;  // size, mtime_ns, SHA-256

std::size_t dtype_size(FeatureDtype d) { return d == FeatureDtype::float16 ? 2 : 4; }

void write_all(int fd, const void* data, std::size_t size, std::uint64_t offset, const fs::path& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t w = ::pwrite(fd, p, size, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw OutputError(path.string() + ": " + (w < 0 ? errno_text() : std::string("short write")));
    p += w;
    size -= static_cast<std::size_t>(w);
    offset += static_cast<std::uint64_t>(w);
  }
}

void sync_fd(int fd, const fs::path& path) {
  if (::fdatasync(fd) != 0) throw OutputError(path.string() + ": " + errno_text());
}

std::uint64_t file_size(int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_size);
}

}  // namespace

struct FeatureStore::Impl {
  fs::path dir;
  FeatureStoreSpec spec;
  std::size_t capacity = 0;
  std::size_t row_bytes = 0;
  bool writable = false;
  bool complete = false;
  int data_fd = -1;
  int status_fd = -1;
  int sources_fd = -1;  // format 2: sources.bin
  int version = FeatureStore::format_version;
  std::vector<FileStamp> sources;
  void* map = nullptr;
  std::size_t map_len = 0;
  std::vector<std::uint8_t> status;
  std::vector<std::pair<std::size_t, RowState>> pending;
  std::unordered_map<std::string, std::size_t> index;

  fs::path meta_path() const { return dir / "meta.json"; }
  fs::path data_path() const { return dir / "features.bin"; }
  fs::path status_path() const { return dir / "status.bin"; }
  fs::path sources_path() const { return dir / "sources.bin"; }

  ~Impl() {
    if (map && map != MAP_FAILED) ::munmap(map, map_len);
    if (data_fd >= 0) ::close(data_fd);
    if (status_fd >= 0) ::close(status_fd);
    if (sources_fd >= 0) ::close(sources_fd);
  }

  json meta_json() const {
    return json{{"format", kFormat},
                {"format_version", version},
                {"encoder_identity", spec.encoder_identity},
                {"encoder", spec.encoder_description},
                {"regions", spec.regions},
                {"dim", spec.dim},
                {"dtype", to_string(spec.dtype)},
                {"byte_order", "little"},
                {"capacity", capacity},
                {"complete", complete},
                {"keys", spec.keys}};
  }

  void write_meta() { write_file_atomic(meta_path(), meta_json().dump(1) + "\n", ParentDirs::must_exist); }

  void build_index(const std::string& where) {
    index.clear();
    index.reserve(spec.keys.size());
    for (std::size_t i = 0; i < spec.keys.size(); ++i) {
      if (!index.emplace(spec.keys[i], i).second) throw InputError(where + ": key '" + spec.keys[i] + "' appears twice");
    }
  }

  void compute_sizes(const std::string& where) {
    if (spec.regions < 1 || spec.dim < 1 || spec.regions > kMaxSide || spec.dim > kMaxSide) {
      throw InputError(where + ": regions and dim must be in 1.." + std::to_string(kMaxSide) + " (got " +
                       std::to_string(spec.regions) + ", " + std::to_string(spec.dim) + ")");
    }
    capacity = spec.keys.size();
    row_bytes = static_cast<std::size_t>(spec.regions) * static_cast<std::size_t>(spec.dim) * dtype_size(spec.dtype);
  }

  // Opens the files, checks their sizes, maps the data and reads the row states.
  void open_files() {
    int flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
    // O_NONBLOCK and a check of the type: a FIFO under a store's name must not block the open.
    auto open_file = [&](const fs::path& path) {
      int fd = ::open(path.c_str(), flags | O_NONBLOCK);
      if (fd < 0) throw InputError(path.string() + ": " + errno_text());
      struct stat st {};
      if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw InputError(path.string() + ": not a regular file");
      }
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      return fd;
    };
    data_fd = open_file(data_path());
    status_fd = open_file(status_path());
    if (version >= 2) sources_fd = open_file(sources_path());
    if (writable && ::flock(status_fd, LOCK_EX | LOCK_NB) != 0) {
      throw OutputError(dir.string() + ": feature store is being written by another process");
    }
    std::uint64_t expected = static_cast<std::uint64_t>(capacity) * row_bytes;
    if (file_size(data_fd) != expected) {
      throw InputError(data_path().string() + ": " + std::to_string(file_size(data_fd)) + " bytes, expected " +
                       std::to_string(expected) + " (truncated or not this store's data)");
    }
    if (file_size(status_fd) != capacity) {
      throw InputError(status_path().string() + ": " + std::to_string(file_size(status_fd)) + " bytes, expected " +
                       std::to_string(capacity));
    }
    status.assign(capacity, 0);
    std::size_t off = 0;
    while (off < capacity) {
      ssize_t r = ::pread(status_fd, status.data() + off, capacity - off, static_cast<off_t>(off));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) throw InputError(status_path().string() + ": read error");
      off += static_cast<std::size_t>(r);
    }
    for (std::size_t i = 0; i < capacity; ++i) {
      if (status[i] > 2) throw InputError(status_path().string() + ": row " + std::to_string(i) + " has an invalid state");
    }
    if (sources_fd >= 0) read_sources();
    if (expected > 0) {
      map_len = static_cast<std::size_t>(expected);
      map = ::mmap(nullptr, map_len, PROT_READ, MAP_SHARED, data_fd, 0);
      if (map == MAP_FAILED) {
        map = nullptr;
        throw InputError(data_path().string() + ": cannot map: " + errno_text());
      }
      // No MADV_RANDOM: a row spans many pages, and fault-around maps them in larger steps.
    }
  }

  // Reads meta.json into spec; `where` names the store in messages.
  void read_meta() {
    const std::string where = meta_path().string();
    std::error_code ec;
    if (!fs::exists(meta_path(), ec)) throw InputError(where + ": missing (not a feature store? run `satcap prepare` first)");
    const json j = read_json_file(meta_path(), ExitCode::input);
    auto bad = [&](const std::string& why) { return InputError(where + ": " + why); };
    if (!j.is_object() || !j.contains("format") || j["format"] != kFormat) throw bad("not a satcap feature store");
    version = json_field<int>(j, "format_version", where, ExitCode::input);
    if (version > FeatureStore::format_version) {
      throw bad("format_version " + std::to_string(version) + " is newer than this satcap reads (" +
                std::to_string(FeatureStore::format_version) + "); update satcap or prepare the features again");
    }
    if (version < 1) throw bad("format_version " + std::to_string(version) + " is not valid");
    spec.encoder_identity = json_field<std::string>(j, "encoder_identity", where, ExitCode::input);
    spec.encoder_description = j.value("encoder", json::object());
    spec.regions = json_field<int>(j, "regions", where, ExitCode::input);
    spec.dim = json_field<int>(j, "dim", where, ExitCode::input);
    const auto dt = json_field<std::string>(j, "dtype", where, ExitCode::input);
    if (dt != "float32" && dt != "float16") throw bad("dtype '" + dt + "' is not float32 or float16");
    spec.dtype = dt == "float16" ? FeatureDtype::float16 : FeatureDtype::float32;
    if (json_field_or<std::string>(j, "byte_order", "little", where, ExitCode::input) != "little")
      throw bad("byte order is not little-endian");
    spec.keys = json_field<std::vector<std::string>>(j, "keys", where, ExitCode::input);
    complete = json_field<bool>(j, "complete", where, ExitCode::input);
    if (json_field<std::uint64_t>(j, "capacity", where, ExitCode::input) != spec.keys.size())
      throw bad("'capacity' differs from the number of keys");
    compute_sizes(where);
    build_index(where);
  }

  void read_sources() {
    if (file_size(sources_fd) != static_cast<std::uint64_t>(capacity) * kSourceBytes)
      throw InputError(sources_path().string() + ": " + std::to_string(file_size(sources_fd)) + " bytes, expected " +
                       std::to_string(static_cast<std::uint64_t>(capacity) * kSourceBytes));
    std::vector<std::uint8_t> bytes(capacity * kSourceBytes);
    std::size_t off = 0;
    while (off < bytes.size()) {
      ssize_t r = ::pread(sources_fd, bytes.data() + off, bytes.size() - off, static_cast<off_t>(off));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) throw InputError(sources_path().string() + ": read error");
      off += static_cast<std::size_t>(r);
    }
    sources.assign(capacity, FileStamp{});
    for (std::size_t i = 0; i < capacity; ++i) {
      const std::uint8_t* p = bytes.data() + i * kSourceBytes;
      std::uint64_t size = 0, mtime = 0;
      for (int k = 7; k >= 0; --k) size = size << 8 | p[k];
      for (int k = 15; k >= 8; --k) mtime = mtime << 8 | p[k];
      sources[i].size = size;
      sources[i].mtime_ns = static_cast<std::int64_t>(mtime);
      std::memcpy(sources[i].sha256.data(), p + 16, 32);
    }
  }

  void write_source(std::size_t row, const FileStamp& stamp) {
    if (sources_fd < 0) return;
    std::uint8_t p[kSourceBytes];
    const auto mtime = static_cast<std::uint64_t>(stamp.mtime_ns);
    for (int k = 0; k < 8; ++k) {
      p[k] = static_cast<std::uint8_t>(stamp.size >> (8 * k));
      p[8 + k] = static_cast<std::uint8_t>(mtime >> (8 * k));
    }
    std::memcpy(p + 16, stamp.sha256.data(), 32);
    write_all(sources_fd, p, kSourceBytes, static_cast<std::uint64_t>(row) * kSourceBytes, sources_path());
    sources[row] = stamp;
  }

  const char* row_ptr(std::size_t row) const { return static_cast<const char*>(map) + row * row_bytes; }

  void check_row(std::size_t row) const {
    if (row >= capacity) {
      throw InputError(dir.string() + ": row " + std::to_string(row) + " out of range (" + std::to_string(capacity) + " rows)");
    }
  }
};

FeatureStore::FeatureStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FeatureStore::FeatureStore(FeatureStore&&) noexcept = default;
FeatureStore& FeatureStore::operator=(FeatureStore&&) noexcept = default;
FeatureStore::~FeatureStore() = default;

FeatureStore FeatureStore::create_or_resume(const fs::path& dir, const FeatureStoreSpec& spec) {
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->writable = true;
  std::error_code ec;
  if (fs::exists(dir / "meta.json", ec)) {
    impl->read_meta();
    const auto& have = impl->spec;
    if (have.encoder_identity != spec.encoder_identity) {
      throw ModelError(dir.string() + ": holds features of encoder '" + have.encoder_identity + "', asked for '" +
                       spec.encoder_identity + "'; use another --out folder");
    }
    if (have.regions != spec.regions || have.dim != spec.dim) {
      throw InputError(dir.string() + ": holds features [" + std::to_string(have.regions) + ", " + std::to_string(have.dim) +
                       "], asked for [" + std::to_string(spec.regions) + ", " + std::to_string(spec.dim) + "]");
    }
    if (have.dtype != spec.dtype) {
      throw InputError(dir.string() + ": holds " + to_string(have.dtype) + " features, asked for " + to_string(spec.dtype) +
                       "; use the same --fp16 setting or another --out folder");
    }
    if (have.keys != spec.keys) {
      throw InputError(dir.string() + ": was started for another list of images (" + std::to_string(have.keys.size()) +
                       " images; now " + std::to_string(spec.keys.size()) +
                       "); use the same dataset and --split to resume, or another --out folder");
    }
    if (impl->version < 2) {
      throw InputError(dir.string() + ": prepared by an older satcap, which did not record the images its features "
                       "come from, so stale rows cannot be found; prepare into a new --out folder (train and eval "
                       "still read this one, without that check)");
    }
    impl->open_files();
    return FeatureStore(std::move(impl));
  }
  // A new store: the folder must be empty, or hold only the leftovers of an interrupted creation.
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) throw OutputError(dir.string() + ": exists and is not a folder");
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      std::string n = e.path().filename().string();
      if (n != "features.bin" && n != "status.bin" && n != "sources.bin" && n.rfind("meta.json.tmp-", 0) != 0) {
        throw OutputError(dir.string() + ": folder is not empty and is not a feature store (found " + n + ")");
      }
    }
  } else if (!fs::create_directories(dir, ec) || ec) {
    throw OutputError(dir.string() + ": cannot create folder: " + ec.message());
  }
  impl->spec = spec;
  impl->compute_sizes(dir.string());
  impl->build_index(dir.string());
  for (const fs::path& p : {impl->data_path(), impl->status_path(), impl->sources_path()}) {
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw OutputError(p.string() + ": " + errno_text());
    const std::uint64_t rows = impl->capacity;
    std::uint64_t size = p == impl->data_path() ? rows * impl->row_bytes : p == impl->status_path() ? rows : rows * kSourceBytes;
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0 || ::fsync(fd) != 0) {
      std::string e = errno_text();
      ::close(fd);
      throw OutputError(p.string() + ": " + e);
    }
    ::close(fd);
  }
  impl->complete = false;
  impl->write_meta();  // last: a folder without meta.json is not a store yet
  impl->open_files();
  return FeatureStore(std::move(impl));
}

FeatureStore FeatureStore::open(const fs::path& dir, const std::string& expected_identity, bool allow_incomplete) {
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw InputError(dir.string() + ": no such feature store folder");
  impl->read_meta();
  if (!expected_identity.empty() && impl->spec.encoder_identity != expected_identity) {
    throw ModelError(dir.string() + ": holds features of encoder '" + impl->spec.encoder_identity + "', but '" +
                     expected_identity + "' was asked for; prepare features with that encoder");
  }
  if (!impl->complete && !allow_incomplete) {
    throw InputError(dir.string() + ": feature store is incomplete (interrupted `satcap prepare`?); run prepare again to finish it");
  }
  impl->open_files();
  return FeatureStore(std::move(impl));
}

const fs::path& FeatureStore::dir() const { return impl_->dir; }
std::size_t FeatureStore::size() const { return impl_->capacity; }
int FeatureStore::regions() const { return impl_->spec.regions; }
int FeatureStore::dim() const { return impl_->spec.dim; }
FeatureDtype FeatureStore::dtype() const { return impl_->spec.dtype; }
const std::string& FeatureStore::encoder_identity() const { return impl_->spec.encoder_identity; }
const json& FeatureStore::encoder_description() const { return impl_->spec.encoder_description; }
const std::vector<std::string>& FeatureStore::keys() const { return impl_->spec.keys; }
bool FeatureStore::complete() const { return impl_->complete; }
std::size_t FeatureStore::row_bytes() const { return impl_->row_bytes; }

std::optional<std::size_t> FeatureStore::row_of(const std::string& key) const {
  auto it = impl_->index.find(key);
  if (it == impl_->index.end()) return std::nullopt;
  return it->second;
}

RowState FeatureStore::state(std::size_t row) const {
  impl_->check_row(row);
  return static_cast<RowState>(impl_->status[row]);
}

bool FeatureStore::records_sources() const { return impl_->version >= 2; }

FileStamp FeatureStore::source(std::size_t row) const {
  impl_->check_row(row);
  return impl_->sources.empty() ? FileStamp{} : impl_->sources[row];
}

std::size_t FeatureStore::count(RowState s) const {
  return static_cast<std::size_t>(std::count(impl_->status.begin(), impl_->status.end(), static_cast<std::uint8_t>(s)));
}

void FeatureStore::write(std::size_t row, const float* values, const FileStamp& source) {
  Impl& m = *impl_;
  if (!m.writable) throw OutputError(m.dir.string() + ": feature store opened read-only");
  m.check_row(row);
  const std::size_t count = static_cast<std::size_t>(m.spec.regions) * static_cast<std::size_t>(m.spec.dim);
  const std::uint64_t offset = static_cast<std::uint64_t>(row) * m.row_bytes;
  if (m.spec.dtype == FeatureDtype::float32) {
    write_all(m.data_fd, values, m.row_bytes, offset, m.data_path());
  } else {
    std::vector<c10::Half> half(count);
    for (std::size_t i = 0; i < count; ++i) half[i] = c10::Half(values[i]);
    write_all(m.data_fd, half.data(), m.row_bytes, offset, m.data_path());
  }
  m.write_source(row, source);
  m.pending.emplace_back(row, RowState::written);
}

void FeatureStore::restamp(std::size_t row, const FileStamp& source) {
  Impl& m = *impl_;
  if (!m.writable) throw OutputError(m.dir.string() + ": feature store opened read-only");
  m.check_row(row);
  m.write_source(row, source);
  m.pending.emplace_back(row, static_cast<RowState>(m.status[row]));
}

void FeatureStore::reset(const std::vector<std::size_t>& rows) {
  Impl& m = *impl_;
  if (!m.writable) throw OutputError(m.dir.string() + ": feature store opened read-only");
  commit();
  for (std::size_t row : rows) {
    m.check_row(row);
    const std::uint8_t empty = 0;
    write_all(m.status_fd, &empty, 1, row, m.status_path());
    m.status[row] = empty;
  }
  if (!rows.empty()) sync_fd(m.status_fd, m.status_path());
}

void FeatureStore::write(std::size_t row, const at::Tensor& features, const FileStamp& source) {
  at::Tensor t = features;
  if (t.dim() == 3 && t.size(0) == 1) t = t[0];
  if (t.dim() != 2 || t.size(0) != regions() || t.size(1) != dim()) {
    throw ModelError(impl_->dir.string() + ": features for row " + std::to_string(row) + " have shape " +
                     c10::str(t.sizes()) + ", expected [" + std::to_string(regions()) + ", " + std::to_string(dim()) + "]");
  }
  t = t.to(at::kCPU, at::kFloat).contiguous();
  write(row, t.data_ptr<float>(), source);
}

void FeatureStore::mark_failed(std::size_t row) {
  Impl& m = *impl_;
  if (!m.writable) throw OutputError(m.dir.string() + ": feature store opened read-only");
  m.check_row(row);
  m.pending.emplace_back(row, RowState::failed);
}

void FeatureStore::commit() {
  Impl& m = *impl_;
  if (!m.writable || m.pending.empty()) return;
  sync_fd(m.data_fd, m.data_path());  // the data and the images' stamps first ...
  if (m.sources_fd >= 0) sync_fd(m.sources_fd, m.sources_path());
  fault_point("store-commit");
  for (const auto& [row, s] : m.pending) {
    auto byte = static_cast<std::uint8_t>(s);
    write_all(m.status_fd, &byte, 1, row, m.status_path());  // ... then the marks
    m.status[row] = byte;
  }
  sync_fd(m.status_fd, m.status_path());
  m.pending.clear();
}

void FeatureStore::finalize() {
  Impl& m = *impl_;
  if (!m.writable) throw OutputError(m.dir.string() + ": feature store opened read-only");
  commit();
  std::size_t empty = count(RowState::empty);
  if (empty > 0) {
    throw InputError(m.dir.string() + ": cannot finalize: " + std::to_string(empty) + " rows are not written yet");
  }
  m.complete = true;
  m.write_meta();
}

namespace {

// Drops the mapped pages of [p, p + bytes) from this process: the kernel's page cache keeps them,
// so a later read faults them back in cheaply, but they no longer count in the process's resident
// memory. Without this, an epoch over a 20,000-image store would leave every row it read resident
// (9 GB of float32 features), and training's peak memory would grow with the dataset instead of
// staying flat. The range is rounded out to the kernel's fault-around window (64 KiB aligned; a
// read fault maps the whole window), within the mapping [map, map + map_bytes): rounding only to
// pages left up to 60 KiB of the next rows mapped per row read (measured: training's peak RSS
// 438 MiB for 2,000 scenes, 963 MiB for 20,000). Dropping a neighbour's pages costs it a fault.
void release_pages(const char* p, std::size_t bytes, const void* map, std::size_t map_bytes) {
  constexpr std::uintptr_t kWindow = 64 * 1024;
  const auto lo = reinterpret_cast<std::uintptr_t>(map), hi = lo + map_bytes;
  const auto begin = std::max(lo, reinterpret_cast<std::uintptr_t>(p) & ~(kWindow - 1));
  const auto end = std::min(hi, (reinterpret_cast<std::uintptr_t>(p) + bytes + kWindow - 1) & ~(kWindow - 1));
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);  // advisory
}

}  // namespace

at::Tensor FeatureStore::gather(const std::vector<std::int64_t>& rows) const {
  const Impl& m = *impl_;
  const std::int64_t n = m.spec.regions, D = m.spec.dim;
  at::Tensor out = at::empty({static_cast<std::int64_t>(rows.size()), n, D}, at::kFloat);  // [B, n, D]
  for (std::size_t b = 0; b < rows.size(); ++b) {
    if (rows[b] < 0) throw InputError(m.dir.string() + ": row " + std::to_string(rows[b]) + " out of range");
    auto row = static_cast<std::size_t>(rows[b]);
    m.check_row(row);
    if (m.status[row] != static_cast<std::uint8_t>(RowState::written)) {
      throw InputError(m.dir.string() + ": no features for '" + m.spec.keys[row] + "' (row " + std::to_string(row) + "): " +
                       (m.status[row] == static_cast<std::uint8_t>(RowState::failed) ? "its image could not be read"
                                                                                     : "not prepared yet"));
    }
    const char* src = m.row_ptr(row);
    const auto dtype = m.spec.dtype == FeatureDtype::float32 ? at::kFloat : at::kHalf;
    out[static_cast<std::int64_t>(b)].copy_(at::from_blob(const_cast<char*>(src), {n, D}, at::TensorOptions().dtype(dtype)));
    release_pages(src, m.row_bytes, m.map, m.map_len);
  }
  // A damaged features.bin (a bit flip, a bad write by another program) would end training with a
  // NaN loss far from its cause: it is named here instead.
  if (rows.size() > 0 && !at::isfinite(out).all().item<bool>()) {
    const at::Tensor bad = at::isfinite(out).view({static_cast<std::int64_t>(rows.size()), -1}).all(1).logical_not();
    const auto b = static_cast<std::size_t>(bad.nonzero()[0][0].item<std::int64_t>());
    const auto row = static_cast<std::size_t>(rows[b]);
    throw InputError(m.data_path().string() + ": the features of '" + m.spec.keys[row] + "' (row " + std::to_string(row) +
                     ") hold NaN or infinite values: the store is damaged; prepare the features again into a new folder");
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The images behind the rows

bool FileStamp::recorded() const {
  if (size != 0 || mtime_ns != 0) return true;
  for (auto b : sha256)
    if (b != 0) return true;
  return false;
}

namespace {

std::int64_t mtime_ns_of(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

}  // namespace

FileStamp stamp_file(const fs::path& path) {
  InputFile in(path, ExitCode::input);
  FileStamp stamp;
  stamp.size = in.size();
  stamp.mtime_ns = mtime_ns_of(in.status());
  Sha256 h;
  std::vector<char> buffer(1 << 16);
  for (std::size_t n; (n = in.read(buffer.data(), buffer.size())) > 0;) h.update(buffer.data(), n);
  stamp.sha256 = h.finish();
  return stamp;
}

SourceState check_source(const fs::path& path, const FileStamp& recorded) {
  if (!recorded.recorded()) return SourceState::unrecorded;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return SourceState::missing;
  if (static_cast<std::uint64_t>(st.st_size) == recorded.size && mtime_ns_of(st) == recorded.mtime_ns)
    return SourceState::same;
  if (static_cast<std::uint64_t>(st.st_size) != recorded.size) return SourceState::changed;
  try {
    return stamp_file(path).sha256 == recorded.sha256 ? SourceState::same : SourceState::changed;
  } catch (const InputError&) {
    return SourceState::missing;
  }
}

ChangedSources find_changed_sources(const FeatureStore& store, const std::vector<std::pair<std::size_t, fs::path>>& rows) {
  ChangedSources out;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& [row, path] = rows[i];
    if (store.state(row) != RowState::written) continue;
    const FileStamp recorded = store.source(row);
    switch (check_source(path, recorded)) {
      case SourceState::unrecorded: ++out.unrecorded; break;
      case SourceState::changed: out.changed.push_back(i); break;
      case SourceState::same: {
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0 &&
            (static_cast<std::uint64_t>(st.st_size) != recorded.size || mtime_ns_of(st) != recorded.mtime_ns))
          out.same_content.push_back(i);
        break;
      }
      case SourceState::missing: break;
    }
  }
  return out;
}

void require_current_sources(const FeatureStore& store, const std::vector<std::pair<std::size_t, fs::path>>& rows,
                             const std::function<void(const std::string&)>& warn) {
  const ChangedSources c = find_changed_sources(store, rows);
  if (!c.changed.empty()) {
    std::string names;
    for (std::size_t k = 0; k < c.changed.size() && k < 3; ++k) names += (k ? ", " : "") + rows[c.changed[k]].second.string();
    if (c.changed.size() > 3) names += ", ...";
    throw InputError(store.dir().string() + ": " + std::to_string(c.changed.size()) + " of " + std::to_string(rows.size()) +
                     " images are not the images their features were computed from (changed since `satcap prepare`, or "
                     "another data set under the same names: " + names +
                     "); run satcap prepare again with this dataset to update the store, or give the right --features");
  }
  if (c.unrecorded > 0 && warn)
    warn(store.dir().string() + ": prepared by an older satcap that did not record its images; its features are used "
         "without checking that they are this dataset's (prepare into a new folder to have them checked)");
}

}  // namespace satcap
