// COCO instances (lib/src/eval/pointing.cpp's load_instances through json_stream) and a synonyms
// table (load_synonyms), then the pointing game on the boxes read, as `satcap eval --instances`
// plays it. Input: instances JSON [NUL synonyms JSON].
#include <algorithm>

#include "fuzz_target.h"
#include "satcap/eval/pointing.h"

SATCAP_FUZZ_TARGET(coco_instances) {
  using namespace satcap;
  const auto parts = fuzz::sections(data, size, 2);
  const Instances inst = load_instances(fuzz::write_input("instances.json", parts[0]));
  std::map<std::string, std::vector<std::string>> synonyms;
  if (!parts[1].empty()) synonyms = load_synonyms(fuzz::write_input("synonyms.json", parts[1]));
  const ClassLexicon lexicon(inst.categories, synonyms);
  // A caption naming every class, each word's attention peaked on its own cell of a 7 x 7 grid.
  std::vector<std::string> words(inst.categories.begin(), inst.categories.begin() + std::min<std::size_t>(inst.categories.size(), 20));
  std::vector<std::vector<float>> alpha(words.size(), std::vector<float>(49, 0.01f));
  for (std::size_t t = 0; t < words.size(); ++t) alpha[t][(t * 11) % 49] = 0.5f;
  PointingTally tally;
  int images = 0;
  for (const auto& [id, objects] : inst.images) {
    if (++images > 50) break;
    ImageObjects sized = objects;
    if (sized.width <= 0 || sized.height <= 0) sized.width = sized.height = 224;  // as eval does without sizes
    tally.add(point_caption(sized, words, alpha, 7, 7, lexicon));
  }
  (void)tally.pointing();
}
