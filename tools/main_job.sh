#!/usr/bin/env bash
# The main job (README command 1): the embedded default model on what it knows, and plainly not on
# what it does not. The model was trained on synthetic scenes of coloured shapes (`satcap scenes
# --seed 1`, models/README.md). The job generates four scenes it has never seen (a new seed each run,
# printed; SATCAP_SCENES_SEED=N repeats a run), captions them and the shipped scene, shows where each
# word looked (out/overlays/: one PNG per word, a figure and a video per image; out/gallery.html;
# out/captions.json) and prints each caption beside the scene's true description. Then it captions
# the shipped photograph, says what that caption is worth, and where photographs are captioned for
# real: a model of the PyTorch tutorial imported, or a model trained on a torchvision encoder
# (docs/import.md).
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${SATCAP_SCENES_SEED:-$((RANDOM % 9000 + 1000))}  # never 1, the seed of the training scenes
rm -rf out/new-scenes
mkdir -p out
build/satcap scenes --out out/new-scenes --images 4 --seed "$seed" >/dev/null
scenes=(datasets/samples/scene-1.jpg out/new-scenes/images/*.png)
build/satcap caption "${scenes[@]}" --beam 3 --alternatives 3 \
  --overlay-dir out/overlays --video --html out/gallery.html --format json --out out/captions.json

echo
echo "Scenes of coloured shapes, what the default model knows (the last 4 generated now with seed $seed):"
/usr/bin/python3 - out/captions.json out/new-scenes/dataset.json <<'EOF'
import json, os, sys
captions = json.load(open(sys.argv[1]))
truth = {i["filename"]: i["sentences"][0]["raw"] for i in json.load(open(sys.argv[2]))["images"]}
for c in captions:
    print(f"  {c['image']}\n    model: {c['caption']}")
    if os.path.basename(c["image"]) in truth:
        print(f"    truth: {truth[os.path.basename(c['image'])]}")
EOF

photo=datasets/samples/dog.jpg
echo
echo "A photograph, $photo:"
echo "    model: $(build/satcap -q caption "$photo" --beam 3 | cut -f2)"
cat <<'EOF'
  This model knows synthetic shapes only: it sees every image as coloured shapes, so these words say
  nothing about the photograph. To caption photographs (docs/import.md):
  - import a model trained with the PyTorch tutorial (a-PyTorch-Tutorial-to-Image-Captioning; yours or
    its published COCO checkpoint): python3 tools/import_tutorial.py CHECKPOINT WORDMAP --out coco-model,
    then build/satcap caption --model coco-model photos/
  - or train satcap on COCO or Flickr8k on a ResNet encoder exported from torchvision.
EOF
echo
echo "captions (json, with attention rows): $PWD/out/captions.json"
echo "per-word overlays, figures, videos:   $PWD/out/overlays/"
echo "gallery (open in a browser):          $PWD/out/gallery.html"
