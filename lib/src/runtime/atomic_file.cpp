#include "satcap/runtime/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "satcap/runtime/error.h"

namespace fs = std::filesystem;

namespace satcap {
namespace {

std::string errno_text() { return std::strerror(errno); }

}  // namespace

void fsync_directory(const fs::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

std::string temporary_suffix() { return ".tmp-" + std::to_string(::getpid()); }

void write_file_atomic(const fs::path& path, const std::string& bytes, ParentDirs parents) {
  write_file_atomic(path, [&bytes](const ByteSink& sink) { sink(bytes.data(), bytes.size()); }, parents);
}

void write_file_atomic(const fs::path& path, const std::function<void(const ByteSink&)>& produce, ParentDirs parents) {
  std::error_code ec;
  if (parents == ParentDirs::create && path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
  fs::path tmp = path;
  tmp += temporary_suffix();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw OutputError(path.string() + ": " + errno_text());
  auto fail = [&](const std::string& why) {
    ::unlink(tmp.c_str());
    throw OutputError(path.string() + ": " + why);
  };
  std::string write_error;  // the first failed write's reason
  ByteSink sink = [&](const void* data, std::size_t size) {
    if (!write_error.empty()) return false;
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      ssize_t n = ::write(fd, p, size);
      if (n < 0) {
        if (errno == EINTR) continue;
        write_error = errno_text();
        return false;
      }
      p += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  };
  try {
    produce(sink);
  } catch (...) {
    ::close(fd);
    if (!write_error.empty()) fail(write_error);
    ::unlink(tmp.c_str());
    throw;
  }
  if (!write_error.empty()) {
    ::close(fd);
    fail(write_error);
  }
  std::string why = ::fsync(fd) == 0 ? std::string() : errno_text();
  if (::close(fd) != 0 && why.empty()) why = errno_text();
  if (!why.empty()) fail(why);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail(errno_text());
  fsync_directory(path.parent_path());
}

}  // namespace satcap
