// `satcap caption`: captions images with a trained model (beam search) and shows where each word
// looked. The pipeline is lib/include/satcap/decode/captioner.h, the output app/caption/caption_command.h.
#include <iostream>

#include "caption/caption_command.h"
#include "command.h"
#include "options_cli.h"

namespace satcap::app {
namespace {

const CommandRegistration registration{
    "caption",
    "Caption images (files, folders, list files) with beam search; optionally draw where each word looked "
    "(per-word overlays, figure, video, HTML gallery)",
    [](CLI::App& sub) -> RunFunction {
      auto opts = std::make_shared<CaptionRunOptions>();
      CaptionerOptions& c = opts->captioner;
      sub.add_option("inputs", opts->inputs,
                     "Image files, folders (searched recursively for images) and list files (.txt/.lst, one path "
                     "per line)")
          ->required();
      sub.add_option("--model", c.model,
                     "Model bundle folder or training output folder (default: $SATCAP_MODEL, else the embedded "
                     "model " + default_model_dir().string() + ")");
      add_search_options(sub, c.search);
      sub.add_option("--batch", c.batch_size, "Images per batch (encoder and batched beam search)")->capture_default_str();
      sub.add_option("--seed", c.seed, "Seed of the random draws (--hard-decode sample, --samples)")->capture_default_str();
      add_enum_option(sub, "--precision", c.precision,
                      "Encoder and search under autocast: fp32, bf16 or fp16 (fp16: CUDA only; bf16 on the CPU is slower)");
      add_enum_option(sub, "--format", opts->format,
                      "Output: text (PATH<TAB>caption), json (words, attention rows, grid, scores) or coco "
                      "([{image_id, caption}], image_id = last number in the file name, else the input position from 0)");
      sub.add_option("--out", opts->out, "Write the captions to this file (atomically) instead of stdout");
      sub.add_option("--overlay-dir", opts->overlay_dir,
                     "Write per image a subfolder (named after the image) with one overlay PNG per word and figure.png");
      add_enum_option(sub, "--overlay-style", opts->overlay.style,
                      "mask (the paper: bright where the model looked) or heat (colour map)");
      sub.add_flag("--video", opts->overlay.write_video, "Also write words.avi (MJPEG) per image into --overlay-dir");
      sub.add_flag("--samples", opts->samples,
                   "Draw attention samples s_t ~ alpha_t per word (the paper's hard-attention figures): marked on the "
                   "overlays, listed in json");
      sub.add_option("--samples-per-word", opts->samples_per_word, "Samples drawn per word with --samples")
          ->capture_default_str();
      sub.add_option("--html", opts->html, "Write a self-contained HTML gallery (captions, alternatives, hover a word "
                                           "to see where it looked)");
      return [opts] {
        opts->device = global_options().device;
        opts->quiet = global_options().quiet;
        return run_caption(*opts, std::cout, std::cerr);
      };
    }};

}  // namespace
}  // namespace satcap::app
