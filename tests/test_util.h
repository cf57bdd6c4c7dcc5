// Helpers shared by the tests: running the real binary, temporary folders, sample paths.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "satcap/build_config.h"
#include "test_config.h"

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs build/satcap with the arguments (no shell involved) and captures its output.
CommandResult run_satcap(const std::vector<std::string>& args);
// The same for any program (an absolute path, e.g. /usr/bin/python3).
CommandResult run_program(const std::string& program, const std::vector<std::string>& args);

// A fresh, empty folder under the build tree's test-tmp/, named after the test.
std::filesystem::path fresh_temp_dir(const std::string& name);

// The repository's root (for samples and models shipped in it).
inline std::filesystem::path source_dir() { return SATCAP_SOURCE_DIR; }

bool torch_cuda_available();

std::string read_text_file(const std::filesystem::path& path);
void write_text_file(const std::filesystem::path& path, const std::string& text);
