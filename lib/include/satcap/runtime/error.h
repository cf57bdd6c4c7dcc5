// Errors thrown by the library. Each kind maps to one exit code of the `satcap` command, so a
// script can tell a bad option from a bad image from a broken model from a full disk.
// Messages name the thing at fault: the file, the entry, the tensor, the option.
#pragma once

#include <stdexcept>
#include <string>

namespace satcap {

// Exit codes of the `satcap` command (documented in docs/cli.md, "Exit codes").
enum class ExitCode : int {
  ok = 0,
  internal = 1,  // a bug or an unexpected failure
  usage = 2,     // a bad option or option value
  input = 3,     // an input file (image, dataset, annotations, results) is missing or malformed
  model = 4,     // a model bundle or encoder is missing, malformed, too new or mismatched
  output = 5,    // an output could not be written (permissions, full disk)
  partial = 6,   // some inputs failed, the others were processed and written
  interrupted = 7,  // training stopped on a non-finite loss or a signal; last checkpoint intact
  peer_failed = 8,  // distributed training: another process failed or could not be reached (or the
                    // rendezvous timed out); this one stopped, the last checkpoint is intact
};

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExitCode code() const noexcept { return code_; }

 private:
  ExitCode code_;
};

// A bad option value: "--beam must be at least 1 (got 0)".
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& m) : Error(ExitCode::usage, m) {}
};

// A bad input file: "images/cat.jpg: not an image (decoder found no image data)".
class InputError : public Error {
 public:
  explicit InputError(const std::string& m) : Error(ExitCode::input, m) {}
};

// A bad model: "models/x/config.json: format_version 3 is newer than this satcap (2)...".
class ModelError : public Error {
 public:
  explicit ModelError(const std::string& m) : Error(ExitCode::model, m) {}
};

// An output that cannot be written: "out/features.bin: No space left on device".
class OutputError : public Error {
 public:
  explicit OutputError(const std::string& m) : Error(ExitCode::output, m) {}
};

// Training stopped early (non-finite loss); the last good checkpoint is kept.
class TrainingStopped : public Error {
 public:
  explicit TrainingStopped(const std::string& m) : Error(ExitCode::interrupted, m) {}
};

}  // namespace satcap
