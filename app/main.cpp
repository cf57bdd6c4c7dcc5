// The `satcap` command: parses options, hands each subcommand to the library, and turns the
// library's exceptions into exit codes (see lib/include/satcap/runtime/error.h).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>

#include "command.h"
#include "satcap/build_config.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"
#include "satcap/runtime/runtime.h"
#include "satcap/runtime/torch_error.h"

namespace satcap::app {
namespace {

struct Entry {
  std::string name;
  std::string description;
  SetupFunction setup;
};

std::vector<Entry>& registry() {
  static std::vector<Entry> entries;
  return entries;
}

GlobalOptions& mutable_global_options() {
  static GlobalOptions options;
  return options;
}

std::vector<std::string>& mutable_command_arguments() {
  static std::vector<std::string> arguments;
  return arguments;
}

}  // namespace

const GlobalOptions& global_options() { return mutable_global_options(); }
const std::vector<std::string>& command_arguments() { return mutable_command_arguments(); }

CommandRegistration::CommandRegistration(std::string name, std::string description, SetupFunction setup) {
  registry().push_back({std::move(name), std::move(description), std::move(setup)});
}

// The first word of the command line that is not a global option or its value: the subcommand
// the user meant ("" when there is none).
std::string subcommand_word(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" || a == "--device") {
      ++i;
      continue;
    }
    if (!a.empty() && a[0] != '-') return a;
  }
  return "";
}

// Everything a command printed must have reached standard output: a full disk or a closed file
// (`satcap score ... > /dev/full`) is an output error (5), as for any other output.
int check_standard_output(int code) {
  const bool failed_before = !std::cout;
  errno = 0;
  const bool flushed = std::fflush(stdout) == 0 && !std::ferror(stdout);
  if (!failed_before && flushed) return code;
  const int error = errno;
  std::cerr << "error: standard output: cannot write (" << (error != 0 ? satcap::errno_text(error) : "write error")
            << ")\n";
  return code == 0 || code == static_cast<int>(satcap::ExitCode::partial) ? static_cast<int>(satcap::ExitCode::output)
                                                                          : code;
}

}  // namespace satcap::app

int main(int argc, char** argv) {
  using namespace satcap;
  using namespace satcap::app;
  select_blas_kernels();  // before any matrix product (see runtime.h)
  // A file-size limit (ulimit -f) is a full disk to satcap: the write that crosses it fails with
  // EFBIG and is reported (exit 5, temporary file removed) instead of SIGXFSZ killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
  mutable_command_arguments().assign(argv + 1, argv + argc);

  CLI::App cli{"satcap: Show, Attend and Tell image captioning (soft and hard attention) in C++"};
  cli.set_version_flag("--version", std::string("satcap ") + SATCAP_VERSION);
  cli.require_subcommand(1);
  cli.fallthrough();
  auto& global = mutable_global_options();
  cli.add_option("--threads", global.threads, "LibTorch threads (0 = all available cores)")
      ->capture_default_str();  // range checked by configure_threads (one message, one place)
  cli.add_option("--device", global.device, "Compute device: cpu, cuda or cuda:N")->capture_default_str();
  cli.add_flag("-q,--quiet", global.quiet, "No progress output on stderr");

  auto& entries = registry();
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  std::map<CLI::App*, RunFunction> runs;
  for (auto& entry : entries) {
    CLI::App* sub = cli.add_subcommand(entry.name, entry.description);
    runs[sub] = entry.setup(*sub);
  }

  try {
    cli.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return cli.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return cli.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return cli.exit(e);
  } catch (const CLI::ParseError& e) {
    // CLI11 says "A subcommand is required" for `satcap frob`: the word is named instead.
    const std::string word = subcommand_word(argc, argv);
    bool parsed = false;
    for (auto& [sub, run] : runs) parsed = parsed || sub->parsed();
    const bool known_word = std::any_of(entries.begin(), entries.end(), [&](const Entry& x) { return x.name == word; });
    if (!parsed && !word.empty() && !known_word) {
      std::string known;
      for (const auto& entry : entries) known += (known.empty() ? "" : ", ") + entry.name;
      std::cerr << "error: unknown subcommand '" << word << "' (subcommands: " << known
                << "; satcap --help describes them)\n";
      return static_cast<int>(ExitCode::usage);
    }
    cli.exit(e);
    return static_cast<int>(ExitCode::usage);
  }

  try {
    tune_allocator();
    configure_threads(global.threads);
    for (auto& [sub, run] : runs) {
      if (sub->parsed()) return check_standard_output(run());
    }
    return static_cast<int>(ExitCode::usage);
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return static_cast<int>(e.code());
  } catch (const std::invalid_argument& e) {
    std::cerr << "error: " << exception_text(e) << "\n";
    return static_cast<int>(ExitCode::usage);
  } catch (const std::exception& e) {
    // Never LibTorch's stack frames: the message alone (see satcap/runtime/torch_error.h).
    std::cerr << "error: " << (is_out_of_memory(e) ? "out of memory: " : "") << exception_text(e) << "\n";
    return static_cast<int>(ExitCode::internal);
  }
}
