// Every test file includes Catch through this header. LibTorch's c10 logging pulls in glog, whose
// CHECK macro (it aborts the process) silently replaces Catch's CHECK when a torch header comes
// after catch.hpp; so the logging header comes first here and its CHECK is dropped.
#pragma once

#include <c10/util/Logging.h>
#undef CHECK

#include <catch2/catch.hpp>
