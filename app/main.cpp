// The `satcap` command: parses options, hands each subcommand to the library, and turns the
// library's exceptions into exit codes (see lib/include/satcap/runtime/error.h).
#include <CLI/CLI.hpp>

#include <iostream>
#include <map>
#include <memory>

#include "command.h"
#include "satcap/build_config.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/runtime.h"

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

}  // namespace satcap::app

int main(int argc, char** argv) {
  using namespace satcap;
  using namespace satcap::app;
  select_blas_kernels();  // before any matrix product (see runtime.h)
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
    cli.exit(e);
    return static_cast<int>(ExitCode::usage);
  }

  try {
    tune_allocator();
    configure_threads(global.threads);
    for (auto& [sub, run] : runs) {
      if (sub->parsed()) return run();
    }
    return static_cast<int>(ExitCode::usage);
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return static_cast<int>(e.code());
  } catch (const std::invalid_argument& e) {
    std::cerr << "error: " << e.what() << "\n";
    return static_cast<int>(ExitCode::usage);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return static_cast<int>(ExitCode::internal);
  }
}
