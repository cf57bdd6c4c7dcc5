#!/usr/bin/env bash
# satcap against the tutorial's caption.py on a tutorial checkpoint at the paper's scale (docs/import.md):
#   bash tools/tutorial/speed.sh [WORKDIR] [THREADS]
# Makes a random-weight checkpoint (ResNet-101 encoder, E = A = H = 512, a 9,490-word map like the
# tutorial's COCO one), imports it, and captions 20 photographs (256x256 PNGs) with beam 5 both ways:
# caption.py's search one image at a time (tools/tutorial/reference_decode.py --search tutorial-beam,
# with the encoder run per image as caption.py does) and `satcap caption` (batches of 8). The random
# decoder never emits <end>, so both run exactly 12 steps per image (a COCO caption: about 10.5
# words and <end>) and the time per image is that of a full-length caption. Three runs each.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-/tmp/satcap-tutorial-speed}
threads=${2:-1}
py=/usr/bin/python3
mkdir -p "$work"
cd "$work"
if [ ! -f fx/BEST_checkpoint_coco.pth.tar ]; then
  $py "$repo/tools/tutorial/make_fixture.py" fx --name coco --arch resnet101 --embed-dim 512 --attention-dim 512 \
    --decoder-dim 512 --words 9486 --seed 5 --lively >/dev/null
fi
[ -f coco/config.json ] || $py "$repo/tools/import_tutorial.py" fx/BEST_checkpoint_coco.pth.tar fx/WORDMAP_coco.json --out coco
[ -d img ] || $py "$repo/tests/import/test_files.py" photos img >/dev/null
echo "threads $threads; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for run in 1 2 3; do
  OMP_NUM_THREADS=$threads $py "$repo/tools/tutorial/reference_decode.py" fx/BEST_checkpoint_coco.pth.tar \
    fx/WORDMAP_coco.json img/*.png --search tutorial-beam --beam 5 --max-steps 12 --threads "$threads" \
    2>&1 >/dev/null | sed "s/^/python run $run: /"
  "$repo/build/satcap" --threads "$threads" caption --model coco img/*.png --beam 5 --max-len 12 2>&1 >/dev/null |
    grep captioned | sed "s/^/satcap run $run: /"
done
