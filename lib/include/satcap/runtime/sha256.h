// SHA-256 (FIPS 180-4), for the checksums a model bundle records of its files ("files" in
// config.json) and the content digests a feature store records of the images it encoded. No
// library satcap links provides it (LibTorch's copy is private), so it is here: one small,
// portable implementation, tested against the standard's vectors and Python's hashlib.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "satcap/runtime/error.h"

namespace satcap {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t size);
  void update(const std::string& bytes) { update(bytes.data(), bytes.size()); }
  // The digest of everything given so far; the object is then spent (reset() to reuse it).
  std::array<std::uint8_t, 32> finish();
  // finish() as 64 lowercase hex digits.
  std::string finish_hex();
  void reset();

 private:
  void block(const std::uint8_t* p);
  std::array<std::uint32_t, 8> h_;
  std::array<std::uint8_t, 64> buffer_;
  std::size_t buffered_ = 0;
  std::uint64_t length_ = 0;  // bytes
};

// 64 lowercase hex digits of the SHA-256 of `bytes`.
std::string sha256_hex(const std::string& bytes);

// Lowercase hex of any bytes ("a1ff...").
std::string hex_text(const std::uint8_t* data, std::size_t size);

struct FileChecksum {
  std::string sha256;       // 64 lowercase hex digits
  std::uint64_t bytes = 0;  // the file's size
};

// The SHA-256 and size of a regular file, read in pieces. Throws an Error of `code` naming the
// file when it is not a regular file or cannot be read (see input_file.h).
FileChecksum file_checksum(const std::filesystem::path& path, ExitCode code);

}  // namespace satcap
