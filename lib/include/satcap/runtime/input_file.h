// Opening the files a user gives satcap (images, datasets, lists, configs, models, results): a
// FIFO, a device or a folder never blocks or crashes it; each is refused with its name. The file
// is opened with O_NONBLOCK (so that opening a FIFO returns at once), checked with fstat on the
// descriptor itself (no window between the check and the open), and only then read.
//
// And the other side of "never destroy a user's files": the inputs of a run are registered
// (ProtectedInputs), and every satcap writer (AtomicFile, atomic_file.h) refuses an output that
// is one of them (the same file, by device and inode: links and other spellings included).
#pragma once

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <istream>
#include <memory>
#include <string>
#include <vector>

#include "satcap/runtime/error.h"

namespace satcap {

// The system's message for errno (strerror), the one used in every satcap message.
std::string errno_text(int error);
std::string errno_text();  // of the current errno

// Throws an Error of `code` ("PATH: <why>"); UsageError, InputError, ModelError or OutputError
// for their codes.
[[noreturn]] void throw_error(ExitCode code, const std::string& message);

// A regular file open for reading.
class InputFile {
 public:
  // Throws an Error of `code` naming the file: "no such file", "is a folder, expected a file",
  // "not a regular file (a FIFO, device or socket)", or the system's reason.
  InputFile(const std::filesystem::path& path, ExitCode code);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  int fd() const { return fd_; }
  const struct stat& status() const { return status_; }  // at open
  std::uint64_t size() const { return static_cast<std::uint64_t>(status_.st_size); }
  // Up to `size` bytes; 0 at the end of the file. Error of the code given naming the file.
  std::size_t read(void* data, std::size_t size);
  // The rest of the file.
  std::string read_all();
  // A buffered stream over the file (for parsers that read streams).
  std::istream& stream();

 private:
  std::filesystem::path path_;
  ExitCode code_;
  int fd_ = -1;
  struct stat status_ {};
  struct Stream;
  std::unique_ptr<Stream> stream_;
};

// The whole content of a regular file (InputFile's checks and errors).
std::string read_input_file(const std::filesystem::path& path, ExitCode code);

// A JSON file as a value. Errors of `code` name the file: InputFile's, and "malformed JSON at
// byte B (...)" without the JSON library's exception prefix.
nlohmann::json read_json_file(const std::filesystem::path& path, ExitCode code);

// Checks without opening that `path` is a regular file (following links), for files that another
// library opens itself (LibTorch archives, TorchScript). Error of `code` as InputFile's.
void require_regular_file(const std::filesystem::path& path, ExitCode code);

// The files that are inputs of this run, while the object lives (several may be alive: the
// union counts). Outputs are checked with refuse_overwriting_input().
class ProtectedInputs {
 public:
  ProtectedInputs() = default;
  ~ProtectedInputs();
  ProtectedInputs(const ProtectedInputs&) = delete;
  ProtectedInputs& operator=(const ProtectedInputs&) = delete;
  // Registers an existing file (a missing one, or a folder, is skipped: it cannot be overwritten
  // by a file). `what` names it in messages ("the input image", "--annotations").
  void add(const std::filesystem::path& path, const std::string& what = "an input");
  void add(const std::vector<std::filesystem::path>& paths, const std::string& what = "an input");

 private:
  std::vector<std::pair<std::uint64_t, std::uint64_t>> keys_;  // (device, inode), as registered
};

// Throws UsageError naming both when `output` is (the same file as) a protected input:
// "--out a.jpg is the input image a.jpg: writing it would destroy the input; choose another output".
// `option` names the output ("--out", "--html", "the overlay"); "" = the path only.
void refuse_overwriting_input(const std::filesystem::path& output, const std::string& option = "");

}  // namespace satcap
