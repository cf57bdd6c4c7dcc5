// A decoder's options as a bundle's config.json "decoder" object holds them
// (lib/src/model/decoder_options.cpp's from_json through the option table), and their JSON again.
#include <nlohmann/json.hpp>

#include "fuzz_target.h"
#include "satcap/model/decoder_options.h"
#include "satcap/runtime/json_input.h"

SATCAP_FUZZ_TARGET(decoder_options) {
  using namespace satcap;
  // Parsed as the readers of bundles parse config.json (not JSON: they refuse it before this point).
  const nlohmann::json j = nlohmann::json::parse(data, data + size, json_depth_limit("config.json", ExitCode::model),
                                                 /*allow_exceptions=*/false);
  if (j.is_discarded()) return;
  const DecoderOptions o = j.get<DecoderOptions>();
  for (int format : {1, 3}) (void)decoder_options_json(o, format).dump();
}
