// A bundle's vocab.json (lib/src/model/vocab.cpp's Vocabulary::load), then encoding and decoding
// with what was read.
#include "fuzz_target.h"
#include "satcap/model/vocab.h"

SATCAP_FUZZ_TARGET(vocab) {
  using namespace satcap;
  const Vocabulary v = Vocabulary::load(fuzz::write_input("vocab.json", data, size));
  std::vector<std::string> tokens;
  for (std::size_t i = 0; i < v.size() && i < 16; ++i) tokens.push_back(v.word(static_cast<std::int64_t>(i)));
  tokens.push_back("zebra");
  (void)v.decode(v.encode(tokens));
}
