// Fashion-MNIST (Xiao, Rasul and Vollgraf 2017): 70,000 greyscale photographs of clothing, 28x28
// pixels, in 10 classes, read from the gzip-compressed IDX files of its official distribution
// (Debian: dataset-fashion-mnist). The objects `satcap scenes --objects fashion` pastes into its
// scenes (scenes.h). No torch here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace satcap {

// The train set (60,000 items) and the test set (10,000).
class FashionMnist {
 public:
  struct Set {
    std::vector<std::uint8_t> pixels;           // [n, 28, 28]
    std::vector<std::vector<int>> by_label;     // item indices of each label 0..9
    int count = 0;
  };
  Set train, test;
};

// Reads train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and
// t10k-labels-idx1-ubyte.gz from `folder`. Throws InputError naming the file when one is missing
// (with a hint on installing the data), cannot be decompressed, or is not a well-formed IDX file
// of 28x28 images with labels 0..9 (every label present).
std::shared_ptr<const FashionMnist> load_fashion_mnist(const std::string& folder);

}  // namespace satcap
