// A module's parameters and buffers as flat named tensors ("attention.W_a.weight") in a LibTorch
// archive, read back with a check of every name and shape: what model bundles and training
// checkpoints store (no pickled objects).
#pragma once

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <string>

#include "satcap/runtime/atomic_file.h"

namespace torch {
namespace nn {
class Module;
}
namespace serialize {
class InputArchive;
class OutputArchive;
}  // namespace serialize
}  // namespace torch

namespace satcap {

// Writes every parameter and buffer of `module` (recursively) under prefix + its dotted name, on CPU.
void write_named_tensors(torch::serialize::OutputArchive& archive, const torch::nn::Module& module,
                         const std::string& prefix = "");
// Copies the archive's tensors into `module`'s parameters and buffers (same device as the module's).
// Throws ModelError naming `where` and the tensor when one is missing or has another shape.
void read_named_tensors(torch::serialize::InputArchive& archive, torch::nn::Module& module, const std::string& where,
                        const std::string& prefix = "");
// Serializes the archive straight into `path` with write_file_atomic's guarantees, without holding
// the file in memory (a COCO-scale checkpoint is about 250 MB; built in a string first it took
// about three times that at once). Throws OutputError naming `path` when it cannot be written.
void write_archive_atomic(const std::filesystem::path& path, torch::serialize::OutputArchive& archive,
                          ParentDirs parents = ParentDirs::create);
// "[2, 3]"
std::string shape_text(at::IntArrayRef sizes);

}  // namespace satcap
