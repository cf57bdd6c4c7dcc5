// `satcap score`'s inputs (lib/src/eval/coco_results.cpp): COCO caption annotations and a COCO
// results file, then the metrics on them (PTB tokenizer, BLEU, ROUGE-L, CIDEr).
// Input: annotations JSON NUL results JSON.
#include "fuzz_target.h"
#include "satcap/eval/coco_results.h"
#include "satcap/eval/metrics.h"

SATCAP_FUZZ_TARGET(coco_results) {
  using namespace satcap;
  const auto parts = fuzz::sections(data, size, 2);
  const std::string annotations = fuzz::write_input("captions.json", parts[0]).string();
  const auto references = load_coco_references(annotations);
  const CocoResults results = load_coco_results(fuzz::write_input("results.json", parts[1]).string(), references, annotations);
  (void)score_captions(references, results.captions);
}
