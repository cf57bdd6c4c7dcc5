// Writing a whole file so that a reader sees the old content or the new, never a mix: bytes go to
// "<path>.tmp-<pid>", are fsynced, renamed over `path`, and the folder is fsynced. The one
// implementation every satcap writer of files (JSON, bundles, checkpoints, PNGs) uses.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>

namespace satcap {

enum class ParentDirs {
  create,      // create missing parent folders first
  must_exist,  // a missing parent folder is an OutputError
};

// Throws OutputError naming `path` (with the system's reason) when it cannot be written; the
// temporary file is removed and an existing `path` is left as it was.
void write_file_atomic(const std::filesystem::path& path, const std::string& bytes,
                       ParentDirs parents = ParentDirs::create);

// Takes the file's next bytes; returns false once a write has failed (the producer should stop:
// the error is reported by write_file_atomic).
using ByteSink = std::function<bool(const void* data, std::size_t size)>;

// The same for a file produced piece by piece (a serialized archive, say), written as it comes
// instead of being built in memory first. `produce` is called once and hands every piece to the
// sink. A failed write is an OutputError as above, whatever `produce` then throws; an exception of
// `produce` itself is passed on, the temporary file removed either way.
void write_file_atomic(const std::filesystem::path& path, const std::function<void(const ByteSink&)>& produce,
                       ParentDirs parents = ParentDirs::create);

// Flushes a folder's entries (a rename into it) to disk; best effort, errors ignored.
void fsync_directory(const std::filesystem::path& dir);

// ".tmp-<pid>": the suffix of satcap's temporary files and folders before their rename.
std::string temporary_suffix();

}  // namespace satcap
