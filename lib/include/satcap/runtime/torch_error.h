// LibTorch's exceptions as a user should see them. c10::Error::what() appends the C++ stack
// ("Exception raised from valid at ./caffe2/serialize/inline_container.cc:177 ... frame #0 ..."),
// and TorchScript's interpreter errors carry a traceback of the scripted code: satcap's messages
// never show either (tools and users read the first line; the frames are LibTorch's internals).
#pragma once

#include <exception>
#include <string>

namespace satcap {

// The exception's message without stack frames: c10::Error's what_without_backtrace(), and for any
// exception the text before "Exception raised from" or "frame #0"; TorchScript's "Traceback of
// TorchScript" reduced to the error it ends with.
std::string exception_text(const std::exception& e);

// Whether `e` is a failed allocation (std::bad_alloc, c10::OutOfMemoryError, or LibTorch's CPU
// allocator's "can't allocate memory").
bool is_out_of_memory(const std::exception& e);

}  // namespace satcap
