// The `satcap` command's subcommands register themselves here, one file each (app/cmd_*.cpp),
// so adding a subcommand touches no other file. A subcommand declares its options on the CLI11
// app it is given and returns the function that runs it; that function returns the exit code.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace satcap::app {

// Options every subcommand shares (declared once, on the top-level app, and accepted after the
// subcommand name too: `satcap caption x.jpg --threads 2`).
struct GlobalOptions {
  int threads = 0;              // LibTorch intra-op threads (0 = all available cores)
  std::string device = "cpu";   // cpu, cuda or cuda:N
  bool quiet = false;           // no progress output on stderr
};

const GlobalOptions& global_options();

// The command line as typed, without the program name (argv[1..]): what `--nproc N` starts its
// workers with.
const std::vector<std::string>& command_arguments();

using RunFunction = std::function<int()>;
using SetupFunction = std::function<RunFunction(CLI::App& sub)>;

struct CommandRegistration {
  CommandRegistration(std::string name, std::string description, SetupFunction setup);
};

}  // namespace satcap::app
