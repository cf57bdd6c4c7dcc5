// Reading Fashion-MNIST's IDX files (see fashion_mnist.h): gunzip with zlib, check the magic
// numbers and sizes, and index the items by label.
#include "satcap/data/fashion_mnist.h"

#include <zlib.h>

#include <filesystem>

#include "satcap/runtime/error.h"

namespace fs = std::filesystem;

namespace satcap {
namespace {

std::vector<std::uint8_t> gunzip_file(const fs::path& path) {
  const std::string hint = " (Fashion-MNIST: install the Debian package dataset-fashion-mnist or pass --fashion-dir)";
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw InputError(path.string() + ": no such file" + hint);
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) throw InputError(path.string() + ": cannot open" + hint);
  std::vector<std::uint8_t> out;
  std::uint8_t buf[1 << 16];
  while (true) {
    int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(f, &err);
      gzclose(f);
      throw InputError(path.string() + ": cannot decompress (" + msg + ")");
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  gzclose(f);
  return out;
}

std::uint32_t be32(const std::vector<std::uint8_t>& d, std::size_t i) {
  return (std::uint32_t{d[i]} << 24) | (std::uint32_t{d[i + 1]} << 16) | (std::uint32_t{d[i + 2]} << 8) | d[i + 3];
}

FashionMnist::Set load_fashion_set(const fs::path& images_path, const fs::path& labels_path) {
  std::vector<std::uint8_t> images = gunzip_file(images_path), labels = gunzip_file(labels_path);
  if (images.size() < 16 || be32(images, 0) != 0x00000803 || be32(images, 8) != 28 || be32(images, 12) != 28) {
    throw InputError(images_path.string() + ": not an IDX file of 28x28 images");
  }
  if (labels.size() < 8 || be32(labels, 0) != 0x00000801) throw InputError(labels_path.string() + ": not an IDX label file");
  std::uint32_t n = be32(images, 4);
  if (be32(labels, 4) != n || labels.size() < 8 + std::size_t{n} || images.size() < 16 + std::size_t{n} * 784) {
    throw InputError(images_path.string() + ": image and label counts do not match, or the file is truncated");
  }
  FashionMnist::Set set;
  set.count = static_cast<int>(n);
  set.pixels.assign(images.begin() + 16, images.begin() + 16 + std::size_t{n} * 784);
  set.by_label.resize(10);
  for (std::uint32_t i = 0; i < n; ++i) {
    int label = labels[8 + i];
    if (label > 9) throw InputError(labels_path.string() + ": label " + std::to_string(label) + " out of range");
    set.by_label[label].push_back(static_cast<int>(i));
  }
  for (int c = 0; c < 10; ++c) {
    if (set.by_label[c].empty()) throw InputError(labels_path.string() + ": no item of label " + std::to_string(c));
  }
  return set;
}

}  // namespace

std::shared_ptr<const FashionMnist> load_fashion_mnist(const std::string& folder) {
  auto data = std::make_shared<FashionMnist>();
  fs::path dir(folder);
  data->train = load_fashion_set(dir / "train-images-idx3-ubyte.gz", dir / "train-labels-idx1-ubyte.gz");
  data->test = load_fashion_set(dir / "t10k-images-idx3-ubyte.gz", dir / "t10k-labels-idx1-ubyte.gz");
  return data;
}

}  // namespace satcap
