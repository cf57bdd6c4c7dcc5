// LibTorch's exceptions without their stack frames (see torch_error.h).
#include "satcap/runtime/torch_error.h"

#include <c10/util/Exception.h>

#include <new>

namespace satcap {
namespace {

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t\r\n") - begin + 1);
}

}  // namespace

std::string exception_text(const std::exception& e) {
  std::string text;
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) text = c10->what_without_backtrace();
  else text = e.what();
  for (const char* marker : {"Exception raised from ", "frame #0"}) {
    const auto at = text.find(marker);
    if (at != std::string::npos) text.erase(at);
  }
  // "The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript ...
  // \n  File ...\nbuiltins.RuntimeError: the user's message": the last line says what failed.
  if (text.find("Traceback of TorchScript") != std::string::npos) {
    std::string last;
    std::size_t start = 0;
    while (start < text.size()) {
      auto end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      const std::string line = trim(text.substr(start, end - start));
      if (!line.empty()) last = line;
      start = end + 1;
    }
    if (last.rfind("builtins.", 0) == 0) last.erase(0, 9);
    text = last;
  }
  return trim(text);
}

bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e) || dynamic_cast<const c10::OutOfMemoryError*>(&e)) return true;
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) {
    const std::string text = c10->what_without_backtrace();
    return text.find("can't allocate memory") != std::string::npos || text.find("out of memory") != std::string::npos;
  }
  return false;
}

}  // namespace satcap
