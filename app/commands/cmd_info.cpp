// `satcap info`: what this build is and what it runs on.
#include <iostream>

#include "command.h"
#include "satcap/runtime/runtime.h"

namespace satcap::app {
namespace {

const CommandRegistration registration{
    "info", "Print the build (satcap, LibTorch, threads, CUDA) and check the chosen --device",
    [](CLI::App&) -> RunFunction {
      return [] {
        parse_device(global_options().device);
        std::cout << build_summary() << "\n";
        return 0;
      };
    }};

}  // namespace
}  // namespace satcap::app
