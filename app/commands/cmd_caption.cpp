// `satcap caption`: captions images with a trained model (beam search) and shows where each word
// looked. The pipeline is lib/include/satcap/decode/captioner.h.
#include <iostream>

#include "command.h"
#include "satcap/decode/captioner.h"

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
      sub.add_option("--beam", c.beam_size, "Beam width (1 = greedy search)")->capture_default_str();
      sub.add_option("--max-len", c.max_length, "Longest caption in words")->capture_default_str();
      sub.add_option("--alternatives", c.alternatives,
                     "Captions listed per image, best first (1..--beam; text: indented lines RANK<TAB>SCORE<TAB>caption)")
          ->capture_default_str();
      sub.add_option("--length-penalty", c.length_penalty,
                     "GNMT length penalty alpha: score = log p / ((5 + len) / 6)^alpha (0 = total log-probability)")
          ->capture_default_str();
      sub.add_option("--hard-decode", c.hard_decode,
                     "Hard-attention models: context while decoding: expected (soft context, as the original code), "
                     "sample (s_t ~ alpha_t) or argmax")
          ->capture_default_str()
          ->check(CLI::IsMember({"expected", "sample", "argmax"}));
      sub.add_option("--batch", c.batch_size, "Images per batch (encoder and batched beam search)")->capture_default_str();
      sub.add_option("--seed", c.seed, "Seed of the random draws (--hard-decode sample, --samples)")->capture_default_str();
      sub.add_option("--precision", c.precision,
                     "Encoder and search under autocast: fp32, bf16 or fp16 (fp16: CUDA only; bf16 on the CPU is slower)")
          ->capture_default_str();
      sub.add_option("--format", opts->format,
                     "Output: text (PATH<TAB>caption), json (words, attention rows, grid, scores) or coco "
                     "([{image_id, caption}], image_id = last number in the file name, else the input position from 0)")
          ->capture_default_str()
          ->check(CLI::IsMember({"text", "json", "coco"}));
      sub.add_option("--out", opts->out, "Write the captions to this file (atomically) instead of stdout");
      sub.add_option("--overlay-dir", opts->overlay_dir,
                     "Write per image a subfolder (named after the image) with one overlay PNG per word and figure.png");
      sub.add_option("--overlay-style", opts->overlay.style,
                     "mask (the paper: bright where the model looked) or heat (colour map)")
          ->capture_default_str()
          ->check(CLI::IsMember({"mask", "heat"}));
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
