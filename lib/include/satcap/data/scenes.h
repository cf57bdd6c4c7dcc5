// Synthetic captioning data with known ground truth ("scenes"): 1 to 3 objects (a class, a colour
// and a size each) on a textured background, five reference captions per image that name them and
// their spatial relations, written as COCO captions, COCO instances and a Karpathy-style split
// file. Learning and attention can then be measured without COCO: every word of a caption maps to
// an object whose box is known. datasets/README.md describes the files and the caption grammar.
// No torch here.
#pragma once

#include <opencv2/core/mat.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "satcap/runtime/option_table.h"

namespace satcap {

// What the objects of the scenes are: drawn geometric shapes, or Fashion-MNIST photographs.
enum class SceneObjects { shapes, fashion };

template <>
struct EnumNames<SceneObjects> {
  static const std::vector<std::pair<std::string, SceneObjects>>& table() {
    static const std::vector<std::pair<std::string, SceneObjects>> t{{"shapes", SceneObjects::shapes},
                                                                     {"fashion", SceneObjects::fashion}};
    return t;
  }
};

struct SceneOptions {
  // Output folder: DIR/captions.json, DIR/instances.json, DIR/dataset.json, DIR/images/*.png.
  std::string out_dir;
  // Number of images to generate.
  int images = 2000;
  // Random seed: the same seed (and options) gives byte-identical files.
  std::uint64_t seed = 1;
  // Object kind (written as "shapes" or "fashion" in the files' info).
  SceneObjects objects = SceneObjects::shapes;
  // Width and height of every image in pixels (224 is what the default encoder takes).
  int size = 224;
  // Write into a non-empty output folder (replacing this generator's own files there).
  bool force = false;
  // Worker threads (0 = the cores available); the output does not depend on it.
  int threads = 0;
  // Folder holding Fashion-MNIST's *-images-idx3-ubyte.gz and *-labels-idx1-ubyte.gz.
  std::string fashion_dir = "/usr/share/datasets/fashion-mnist";
};

// Throws UsageError naming the option when a value is out of range.
void validate(const SceneOptions& options);

// The vocabularies, in category-id order (category_id = index + 1). Each entry is one token.
const std::vector<std::string>& scene_categories(SceneObjects objects);
const std::vector<std::string>& scene_colours();
const std::vector<std::string>& scene_sizes();  // {"small", "large"}

// The RGB value a colour name stands for.
cv::Vec3b scene_colour_rgb(const std::string& colour);

struct SceneObject {
  int category_id = 0;   // 1-based index into scene_categories(objects)
  std::string category;  // e.g. "circle", "tshirt"
  std::string colour;    // e.g. "red"
  std::string size;      // "small" or "large"
  cv::Rect box;          // tight box of the drawn pixels (alpha >= 50%), in image coordinates
  int area = 0;          // number of those pixels
};

struct Scene {
  cv::Mat rgb;                        // [size, size] CV_8UC3, RGB
  std::vector<SceneObject> objects;   // 1 to 3, distinct categories, non-overlapping boxes
  std::vector<std::string> captions;  // 5 different captions, lower case
};

// Fashion-MNIST images and labels (fashion_mnist.h), for SceneObjects::fashion.
class FashionMnist;

// Builds scene number `index` (0-based) of the data set that `options` describes. Depends only on
// (options.seed, options.objects, options.size, index), so scenes can be made in any order or
// thread. `fashion` is required when options.objects is SceneObjects::fashion. Images whose index % 10 is 8
// or 9 (val and test) take their Fashion-MNIST items from its test set, the others from its train set.
Scene make_scene(const SceneOptions& options, int index, const FashionMnist* fashion = nullptr);

// The split of image `index`: "train" (index % 10 < 8), "val" (8) or "test" (9).
std::string scene_split(int index);

struct ScenesSummary {
  int images = 0;
  int objects = 0;
  int captions = 0;
  double seconds = 0;
};

// Generates the whole data set into options.out_dir (files written atomically). Throws UsageError
// for bad options or a non-empty folder without `force`, InputError when Fashion-MNIST is missing,
// OutputError when a file cannot be written. `progress` (may be empty) is called with the number
// of images done so far.
ScenesSummary generate_scenes(const SceneOptions& options, const std::function<void(int)>& progress = {});

}  // namespace satcap
