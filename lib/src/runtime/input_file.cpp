// Reading user-given files without blocking on FIFOs, and the registry of a run's inputs (see
// input_file.h).
#include "satcap/runtime/input_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <streambuf>

#include "satcap/runtime/json_input.h"

namespace fs = std::filesystem;

namespace satcap {

std::string errno_text(int error) { return std::strerror(error); }
std::string errno_text() { return errno_text(errno); }

void throw_error(ExitCode code, const std::string& message) {
  switch (code) {
    case ExitCode::usage: throw UsageError(message);
    case ExitCode::input: throw InputError(message);
    case ExitCode::model: throw ModelError(message);
    case ExitCode::output: throw OutputError(message);
    default: throw Error(code, message);
  }
}

namespace {

// Why a file of this type is not read ("" for a regular file).
std::string not_regular_reason(mode_t mode) {
  if (S_ISREG(mode)) return "";
  if (S_ISDIR(mode)) return "is a folder, expected a file";
  if (S_ISFIFO(mode)) return "not a regular file (a FIFO: reading it could wait forever)";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "not a regular file (a device)";
  if (S_ISSOCK(mode)) return "not a regular file (a socket)";
  return "not a regular file";
}

std::string open_failure(const fs::path& path, int error) {
  if (error == ENOENT || error == ENOTDIR) return path.string() + ": no such file";
  if (error == ENXIO) return path.string() + ": not a regular file (a socket or a FIFO without a writer)";
  return path.string() + ": cannot open (" + errno_text(error) + ")";
}

}  // namespace

struct InputFile::Stream : std::streambuf {
  explicit Stream(InputFile& file) : file(file), stream(this) {}
  int_type underflow() override {
    const std::size_t n = file.read(buffer, sizeof buffer);
    if (n == 0) return traits_type::eof();
    setg(buffer, buffer, buffer + n);
    return traits_type::to_int_type(buffer[0]);
  }
  InputFile& file;
  char buffer[1 << 16];
  std::istream stream;
};

InputFile::InputFile(const fs::path& path, ExitCode code) : path_(path), code_(code) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd_ < 0) throw_error(code, open_failure(path, errno));
  if (::fstat(fd_, &status_) != 0) {
    const int e = errno;
    ::close(fd_);
    throw_error(code, path.string() + ": cannot read (" + errno_text(e) + ")");
  }
  if (const std::string why = not_regular_reason(status_.st_mode); !why.empty()) {
    ::close(fd_);
    throw_error(code, path.string() + ": " + why);
  }
  // Reads of a regular file never wait on O_NONBLOCK, but the flag is dropped all the same.
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags >= 0) ::fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);
}

InputFile::~InputFile() {
  stream_.reset();
  if (fd_ >= 0) ::close(fd_);
}

std::size_t InputFile::read(void* data, std::size_t size) {
  for (;;) {
    const ssize_t n = ::read(fd_, data, size);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    // A file that vanished is still readable through its descriptor; what fails here is the disk.
    throw_error(code_, path_.string() + ": cannot read (" + errno_text() + ")");
  }
}

std::string InputFile::read_all() {
  std::string out;
  out.reserve(static_cast<std::size_t>(size()));
  char buffer[1 << 16];
  for (std::size_t n; (n = read(buffer, sizeof buffer)) > 0;) out.append(buffer, n);
  return out;
}

std::istream& InputFile::stream() {
  if (!stream_) stream_ = std::make_unique<Stream>(*this);
  return stream_->stream;
}

std::string read_input_file(const fs::path& path, ExitCode code) { return InputFile(path, code).read_all(); }

nlohmann::json read_json_file(const fs::path& path, ExitCode code) {
  const std::string text = read_input_file(path, code);
  try {
    // No deeper than kMaxJsonDepth (satcap/runtime/json_input.h): deeper values overflow the stack
    // when copied or printed.
    return nlohmann::json::parse(text, json_depth_limit(path.string(), code));
  } catch (const nlohmann::json::parse_error& e) {
    // nlohmann's message: "[json.exception.parse_error.101] parse error at line 1, column 5: ..."
    std::string what = e.what();
    const auto at = what.find("parse error");
    throw_error(code, path.string() + ": malformed JSON at byte " + std::to_string(e.byte) +
                          (at == std::string::npos ? std::string() : " (" + what.substr(at) + ")"));
  } catch (const nlohmann::json::out_of_range& e) {  // a number beyond a double's range (1e999)
    throw_error(code, path.string() + ": malformed JSON (" + json_error_text(e) + ")");
  }
}

void require_regular_file(const fs::path& path, ExitCode code) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw_error(code, open_failure(path, errno));
  if (const std::string why = not_regular_reason(st.st_mode); !why.empty()) throw_error(code, path.string() + ": " + why);
}

// ---------------------------------------------------------------------------------------------
// The inputs of the run

namespace {

struct Registered {
  std::string path;
  std::string what;
  int count = 0;
};

std::mutex g_inputs_mutex;
std::map<std::pair<std::uint64_t, std::uint64_t>, Registered> g_inputs;

}  // namespace

void ProtectedInputs::add(const fs::path& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || S_ISDIR(st.st_mode)) return;
  const std::pair<std::uint64_t, std::uint64_t> key{static_cast<std::uint64_t>(st.st_dev),
                                                     static_cast<std::uint64_t>(st.st_ino)};
  std::lock_guard<std::mutex> lock(g_inputs_mutex);
  Registered& r = g_inputs[key];
  if (r.count++ == 0) r = {path.string(), what, 1};
  keys_.push_back(key);
}

void ProtectedInputs::add(const std::vector<fs::path>& paths, const std::string& what) {
  for (const auto& p : paths) add(p, what);
}

ProtectedInputs::~ProtectedInputs() {
  std::lock_guard<std::mutex> lock(g_inputs_mutex);
  for (const auto& key : keys_) {
    auto it = g_inputs.find(key);
    if (it != g_inputs.end() && --it->second.count <= 0) g_inputs.erase(it);
  }
}

void refuse_overwriting_input(const fs::path& output, const std::string& option) {
  struct stat st {};
  if (::stat(output.c_str(), &st) != 0) return;  // not there yet: no input it could be
  Registered input;
  {
    std::lock_guard<std::mutex> lock(g_inputs_mutex);
    auto it = g_inputs.find({static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)});
    if (it == g_inputs.end()) return;
    input = it->second;
  }
  const std::string same = input.path == output.string() ? "" : " (the same file)";
  throw UsageError((option.empty() ? "" : option + " ") + output.string() + " is " + input.what + " " + input.path + same +
                   ": writing it would destroy that input; choose another output path");
}

}  // namespace satcap
