#!/usr/bin/python3
"""Beam search the way the common implementations do it (the tutorial's caption.py,
caption_image_beam_search), reimplemented from that code's structure: one image at a time; the
image's features expanded to k copies; at each step the attention (recomputing encoder_att on the
k copies), the f_beta gate, the LSTMCell and fc over the vocabulary; log_softmax added to the
running scores; topk over the flattened [k * V] scores; finished hypotheses (<end>) set aside and k
reduced; stops when k reaches 0 or after --max-len steps.

One difference from the tutorial: when no hypothesis has produced <end> by the last step, the
tutorial crashes (max() of an empty list, a known complaint); here the best unfinished one is taken.

The decoder is train_common.DecoderWithAttention with random weights, in eval mode, on random
features [N, 196, 2048]. Prints one JSON line: captions/s.
"""
import benchutil
import torch
import torch.nn.functional as F

import train_common


@torch.no_grad()
def caption_image_beam_search(decoder, encoder_out, beam_size, max_len):
    """encoder_out: [1, L, D] one image's features. Returns the best word sequence."""
    k = beam_size
    vocab_size = decoder.vocab_size
    encoder_dim = encoder_out.size(-1)
    device = encoder_out.device
    num_pixels = encoder_out.size(1)
    encoder_out = encoder_out.expand(k, num_pixels, encoder_dim)  # [k, L, D]

    k_prev_words = torch.LongTensor([[benchutil.START]] * k).to(device)  # [k, 1]
    seqs = k_prev_words
    top_k_scores = torch.zeros(k, 1).to(device)
    seqs_alpha = torch.ones(k, 1, num_pixels).to(device)
    complete_seqs = list()
    complete_seqs_alpha = list()
    complete_seqs_scores = list()

    step = 1
    h, c = decoder.init_hidden_state(encoder_out)
    while True:
        embeddings = decoder.embedding(k_prev_words).squeeze(1)  # [s, E]
        awe, alpha = decoder.attention(encoder_out, h)  # [s, D], [s, L]
        gate = decoder.sigmoid(decoder.f_beta(h))
        awe = gate * awe
        h, c = decoder.decode_step(torch.cat([embeddings, awe], dim=1), (h, c))
        scores = decoder.fc(h)  # [s, V]
        scores = F.log_softmax(scores, dim=1)
        scores = top_k_scores.expand_as(scores) + scores
        if step == 1:
            top_k_scores, top_k_words = scores[0].topk(k, 0, True, True)
        else:
            top_k_scores, top_k_words = scores.view(-1).topk(k, 0, True, True)
        prev_word_inds = torch.div(top_k_words, vocab_size, rounding_mode="floor")
        next_word_inds = top_k_words % vocab_size
        seqs = torch.cat([seqs[prev_word_inds], next_word_inds.unsqueeze(1)], dim=1)
        seqs_alpha = torch.cat([seqs_alpha[prev_word_inds], alpha[prev_word_inds].unsqueeze(1)], dim=1)

        incomplete_inds = [ind for ind, next_word in enumerate(next_word_inds) if next_word != benchutil.END]
        complete_inds = list(set(range(len(next_word_inds))) - set(incomplete_inds))
        if len(complete_inds) > 0:
            complete_seqs.extend(seqs[complete_inds].tolist())
            complete_seqs_alpha.extend(seqs_alpha[complete_inds].tolist())
            complete_seqs_scores.extend(top_k_scores[complete_inds])
        k -= len(complete_inds)
        if k == 0:
            break
        seqs = seqs[incomplete_inds]
        seqs_alpha = seqs_alpha[incomplete_inds]
        h = h[prev_word_inds[incomplete_inds]]
        c = c[prev_word_inds[incomplete_inds]]
        encoder_out = encoder_out[prev_word_inds[incomplete_inds]]
        top_k_scores = top_k_scores[incomplete_inds].unsqueeze(1)
        k_prev_words = next_word_inds[incomplete_inds].unsqueeze(1)
        if step >= max_len:
            break
        step += 1

    if not complete_seqs_scores:  # the tutorial crashes here
        return seqs[int(top_k_scores.squeeze(1).argmax())].tolist(), step
    i = complete_seqs_scores.index(max(complete_seqs_scores))
    return complete_seqs[i], step


def main():
    p = benchutil.parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--max-len", type=int, default=20, help="decoding steps at most (<end> included)")
    args = p.parse_args()
    if args.quick:
        args.images = min(args.images, 20)
    torch_ = benchutil.setup_torch(args)
    device = torch.device(args.device)
    args.attention = "soft"
    decoder = train_common.build_decoder(args, device)
    decoder.eval()
    features = torch.rand(args.images, args.regions, args.encoder_dim, device=device)

    caption_image_beam_search(decoder, features[0:1], args.beam, args.max_len)  # warm-up
    benchutil.sync(torch_, device)
    steps = 0
    words = 0
    cpu0 = benchutil.cpu_now()
    start = benchutil.now()
    for i in range(args.images):
        seq, n = caption_image_beam_search(decoder, features[i:i + 1], args.beam, args.max_len)
        steps += n
        words += len(seq) - 1
    benchutil.sync(torch_, device)
    seconds = benchutil.now() - start
    cpu_seconds = benchutil.cpu_now() - cpu0
    benchutil.emit({"script": "beam_per_image", "beam": args.beam, "images": args.images, "max_len": args.max_len,
                    "threads": torch.get_num_threads(), "torch": torch.__version__, "seconds": seconds,
                    "cpu_seconds": cpu_seconds, "captions_per_s": args.images / seconds,
                    "captions_per_cpu_s": args.images / cpu_seconds, "mean_steps": steps / args.images,
                    "mean_words": words / args.images})


if __name__ == "__main__":
    main()
