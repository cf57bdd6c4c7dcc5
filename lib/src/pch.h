// Precompiled header for the library, the command and the tests: LibTorch's headers dominate
// compile time (about 30 s a file on the 2-core reference machine), so they are parsed once.
#pragma once
#include <torch/torch.h>
#include <opencv2/core.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
