// Writing a file so that a reader sees the old content or the new, never a mix: the one writer
// of files in satcap (JSON, bundles, checkpoints, feature files, PNGs, pages, logs written whole).
// Bytes go to the sibling "<path>.tmp-<pid>" as they come, commit() fsyncs it, renames it over
// `path` and fsyncs the folder; an AtomicFile destroyed without commit() removes its temporary
// file, so a failed or interrupted write leaves the old file and nothing else. Temporary files of
// a satcap process that was killed (a dead PID) are removed by the next write of the same file.
// An output that is one of the run's protected inputs is refused (input_file.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace satcap {

enum class ParentDirs {
  create,      // create missing parent folders first
  must_exist,  // a missing parent folder is an OutputError
};

// When commit() makes the file durable.
enum class Durability {
  now,    // fsync the file before the rename (the default)
  later,  // the caller syncs the file system itself before relying on it (many small files)
};

class AtomicFile {
 public:
  // Opens "<path>.tmp-<pid>". Throws UsageError when `path` is a protected input, OutputError
  // naming `path` (with the system's reason) when it cannot be created or is a folder.
  explicit AtomicFile(std::filesystem::path path, ParentDirs parents = ParentDirs::create,
                      Durability durability = Durability::now);
  ~AtomicFile();  // without commit(): the temporary file is removed, `path` left as it was
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Appends bytes; OutputError naming `path` when the write fails (a full disk, a size limit).
  void write(const void* data, std::size_t size);
  void write(const std::string& bytes) { write(bytes.data(), bytes.size()); }
  // The same for callers that must not throw (LibTorch's archive writer calls back through C
  // code): false once a write has failed; commit() then reports the failure.
  bool write_noexcept(const void* data, std::size_t size) noexcept;
  // After write_noexcept: OutputError naming `path` if a write has failed (the temporary file removed).
  void throw_if_failed();
  // Makes the file durable and puts it in place (see Durability). OutputError naming `path`.
  void commit();

  const std::filesystem::path& path() const { return path_; }
  const std::filesystem::path& temporary_path() const { return tmp_; }
  std::uint64_t bytes_written() const { return written_; }

 private:
  [[noreturn]] void fail(const std::string& why);
  std::filesystem::path path_, tmp_;
  Durability durability_;
  int fd_ = -1;
  std::uint64_t written_ = 0;
  std::string error_;  // the first failed write's reason
};

// A whole file at once through AtomicFile.
void write_file_atomic(const std::filesystem::path& path, const std::string& bytes,
                       ParentDirs parents = ParentDirs::create);

// Takes the file's next bytes; returns false once a write has failed (the producer may stop: the
// error is reported by write_file_atomic).
using ByteSink = std::function<bool(const void* data, std::size_t size)>;

// A file produced piece by piece (a serialized archive, say), written as it comes instead of
// being built in memory first. `produce` is called once and hands every piece to the sink. A
// failed write is an OutputError as above, whatever `produce` then throws; an exception of
// `produce` itself is passed on, the temporary file removed either way.
void write_file_atomic(const std::filesystem::path& path, const std::function<void(const ByteSink&)>& produce,
                       ParentDirs parents = ParentDirs::create);

// Puts a file that another library wrote (OpenCV's video writer) in place with AtomicFile's
// guarantees: fsync `written`, rename it over `path`, fsync the folder. On failure `written` is
// removed and OutputError names `path`.
void publish_file(const std::filesystem::path& written, const std::filesystem::path& path);

// Flushes a folder's entries (a rename into it) to disk; best effort, errors ignored.
void fsync_directory(const std::filesystem::path& dir);

// ".tmp-<pid>": the suffix of satcap's temporary files and folders before their rename.
std::string temporary_suffix();

// Removes what killed satcap processes left beside `path`: "<path><marker><pid>" for each marker
// (".tmp-" by default; bundles also ".old-") whose process is gone (files or folders). Another
// live process's files, and names of any other form, are left alone. Returns the names removed.
std::vector<std::string> remove_stale_temporaries(const std::filesystem::path& path,
                                                  const std::vector<std::string>& markers = {".tmp-"});

// The same for every file of a folder: "<name>.tmp-<pid>" (and other markers) of dead processes.
// For folders satcap owns (a training run's --out, a feature store).
std::vector<std::string> remove_stale_temporaries_in(const std::filesystem::path& dir,
                                                     const std::vector<std::string>& markers = {".tmp-"});

// A test hook for the fault tests (tests/test_faults.cpp, tools/faults.sh): with the environment
// variable SATCAP_TEST_KILL="<point>:<n>", the process kills itself (SIGKILL, as a power cut or the
// OOM killer would) the n-th time it passes <point>: "write" (a piece written to an AtomicFile's
// temporary file), "commit" (an AtomicFile complete, before its rename), "bundle-swap" (the old
// bundle moved aside, the new one not yet renamed in), "store-commit" (feature rows on disk, their
// marks not yet). Without the variable nothing happens.
void fault_point(const char* point);

// Whether process `pid` is alive (kill(pid, 0)); a process of another user counts as alive.
bool process_alive(long pid);

}  // namespace satcap
