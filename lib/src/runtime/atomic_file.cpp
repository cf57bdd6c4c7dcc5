// The streaming atomic writer (see atomic_file.h).
#include "satcap/runtime/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"

namespace fs = std::filesystem;

namespace satcap {

void fsync_directory(const fs::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

std::string temporary_suffix() { return ".tmp-" + std::to_string(::getpid()); }

bool process_alive(long pid) {
  if (pid <= 0) return true;  // not a process id: leave it alone
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH;
}

void fault_point(const char* point) {
  static const std::string spec = [] {
    const char* v = std::getenv("SATCAP_TEST_KILL");
    return std::string(v != nullptr ? v : "");
  }();
  if (spec.empty()) return;
  static std::mutex mutex;
  static std::map<std::string, long> passes;
  std::lock_guard<std::mutex> lock(mutex);
  const long n = ++passes[point];
  if (spec == std::string(point) + ":" + std::to_string(n)) ::raise(SIGKILL);
}

// ---------------------------------------------------------------------------------------------
// Leftovers of killed processes

namespace {

// "<base><marker><pid>" or "<base><marker><pid>.<ext>" (a temporary file of a library that goes
// by the extension, as OpenCV's video writer) -> pid, or -1 when `name` is not of that form.
long leftover_pid(const std::string& name, const std::string& base, const std::string& marker) {
  const std::string prefix = base + marker;
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return -1;
  std::size_t end = name.find('.', prefix.size());
  if (end == std::string::npos) end = name.size();
  if (end == prefix.size() || end > prefix.size() + 10) return -1;
  if (end < name.size() && name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789", end + 1) != std::string::npos)
    return -1;
  long pid = 0;
  for (std::size_t i = prefix.size(); i < end; ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    pid = pid * 10 + (name[i] - '0');
  }
  return pid;
}

// A folder's entries named "*<marker><digits>" (the candidates), listed once per process: a
// writer of many files in one folder (20,000 scene images) lists it once, not once per file.
struct Leftover {
  std::string name, base;
  long pid;
};
std::mutex g_listing_mutex;
std::map<std::pair<std::string, std::string>, std::vector<Leftover>> g_listings;  // (folder, marker)

std::vector<Leftover> list_leftovers(const fs::path& dir, const std::string& marker) {
  std::vector<Leftover> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir.empty() ? fs::path(".") : dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const auto at = name.rfind(marker);
    if (at == std::string::npos || at == 0) continue;
    const long pid = leftover_pid(name, name.substr(0, at), marker);
    if (pid > 0) out.push_back({name, name.substr(0, at), pid});
  }
  return out;
}

bool remove_leftover(const fs::path& dir, const Leftover& l) {
  if (l.pid == static_cast<long>(::getpid()) || process_alive(l.pid)) return false;
  std::error_code ec;
  fs::remove_all(dir / l.name, ec);
  return !ec;
}

}  // namespace

std::vector<std::string> remove_stale_temporaries(const fs::path& path, const std::vector<std::string>& markers) {
  std::vector<std::string> removed;
  const fs::path dir = path.parent_path();
  const std::string base = path.filename().string();
  if (base.empty()) return removed;
  std::lock_guard<std::mutex> lock(g_listing_mutex);
  for (const auto& marker : markers) {
    auto key = std::make_pair(dir.string(), marker);
    auto it = g_listings.find(key);
    if (it == g_listings.end()) it = g_listings.emplace(key, list_leftovers(dir, marker)).first;
    auto& list = it->second;
    for (auto l = list.begin(); l != list.end();) {
      if (l->base == base && remove_leftover(dir, *l)) {
        removed.push_back(l->name);
        l = list.erase(l);
      } else {
        ++l;
      }
    }
  }
  return removed;
}

std::vector<std::string> remove_stale_temporaries_in(const fs::path& dir, const std::vector<std::string>& markers) {
  std::vector<std::string> removed;
  for (const auto& marker : markers)
    for (const auto& l : list_leftovers(dir, marker))
      if (remove_leftover(dir, l)) removed.push_back(l.name);
  return removed;
}

// ---------------------------------------------------------------------------------------------
// AtomicFile

AtomicFile::AtomicFile(fs::path path, ParentDirs parents, Durability durability)
    : path_(std::move(path)), durability_(durability) {
  refuse_overwriting_input(path_);
  std::error_code ec;
  if (fs::is_directory(path_, ec)) throw OutputError(path_.string() + ": is a folder (a file name is needed)");
  if (parents == ParentDirs::create && path_.has_parent_path()) fs::create_directories(path_.parent_path(), ec);
  remove_stale_temporaries(path_);
  tmp_ = path_;
  tmp_ += temporary_suffix();
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw OutputError(path_.string() + ": " + errno_text());
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicFile::fail(const std::string& why) {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  ::unlink(tmp_.c_str());
  throw OutputError(path_.string() + ": " + why);
}

bool AtomicFile::write_noexcept(const void* data, std::size_t size) noexcept {
  if (fd_ < 0 || !error_.empty()) return false;
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      error_ = errno_text();
      return false;
    }
    if (n == 0) {
      error_ = "the write made no progress";
      return false;
    }
    p += n;
    size -= static_cast<std::size_t>(n);
    written_ += static_cast<std::uint64_t>(n);
    fault_point("write");
  }
  return true;
}

void AtomicFile::write(const void* data, std::size_t size) {
  if (fd_ < 0) throw OutputError(path_.string() + ": written after commit");
  if (!write_noexcept(data, size)) fail(error_);
}

void AtomicFile::throw_if_failed() {
  if (!error_.empty()) fail(error_);
}

void AtomicFile::commit() {
  if (fd_ < 0) throw OutputError(path_.string() + ": committed twice");
  throw_if_failed();
  fault_point("commit");
  if (durability_ == Durability::now && ::fsync(fd_) != 0) fail(errno_text());
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp_.c_str());
    throw OutputError(path_.string() + ": " + why);
  }
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp_.c_str());
    throw OutputError(path_.string() + ": " + why);
  }
  if (durability_ == Durability::now) fsync_directory(path_.parent_path());
}

void write_file_atomic(const fs::path& path, const std::string& bytes, ParentDirs parents) {
  AtomicFile file(path, parents);
  file.write(bytes);
  file.commit();
}

void write_file_atomic(const fs::path& path, const std::function<void(const ByteSink&)>& produce, ParentDirs parents) {
  AtomicFile file(path, parents);
  const ByteSink sink = [&file](const void* data, std::size_t size) { return file.write_noexcept(data, size); };
  try {
    produce(sink);
  } catch (...) {
    // A failed write is reported as such (OutputError naming the file), whatever the producer
    // threw when it noticed; otherwise the producer's own exception goes on.
    file.throw_if_failed();
    throw;
  }
  file.commit();
}

void publish_file(const fs::path& written, const fs::path& path) {
  auto fail = [&](const std::string& why) {
    ::unlink(written.c_str());
    throw OutputError(path.string() + ": " + why);
  };
  refuse_overwriting_input(path);
  const int fd = ::open(written.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(errno_text());
  const bool synced = ::fsync(fd) == 0;
  const std::string why = synced ? "" : errno_text();
  ::close(fd);
  if (!synced) fail(why);
  if (::rename(written.c_str(), path.c_str()) != 0) fail(errno_text());
  fsync_directory(path.parent_path());
}

}  // namespace satcap
