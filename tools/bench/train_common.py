#!/usr/bin/python3
"""One training step of Show, Attend and Tell written the way the most used public PyTorch
tutorial writes it (sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning, models.py and train.py),
reimplemented here from that code's structure:

- Attention recomputes encoder_att(encoder_out) inside every decoding step;
- the batch is sorted by length and shrinks as captions end (batch_size_t);
- a D-dimensional f_beta gate, init_h/init_c as single Linear layers, LSTMCell on [E y; z];
- a per-step fc(dropout(h)) to the vocabulary, written into a [B, T, V] predictions tensor;
- loss = cross entropy over the packed predictions + doubly stochastic term; backward; gradients
  clamped to +-5; Adam.

--attention hard replaces z_t by the sampled region (s_t ~ Multinomial(alpha_t)) and adds the
REINFORCE surrogate of DESIGN-NOTES.md; the tutorial itself has no hard attention.

Random features [B, 196, 2048] and random word ids; the caption lengths come from benchutil, the
same draw satcap's C++ benchmark uses. Prints one JSON line: words/s (words = predicted tokens,
<end> included) and seconds per step.
"""
import contextlib

import benchutil
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


class Attention(nn.Module):
    def __init__(self, encoder_dim, decoder_dim, attention_dim):
        super().__init__()
        self.encoder_att = nn.Linear(encoder_dim, attention_dim)
        self.decoder_att = nn.Linear(decoder_dim, attention_dim)
        self.full_att = nn.Linear(attention_dim, 1)
        self.relu = nn.ReLU()
        self.softmax = nn.Softmax(dim=1)

    def forward(self, encoder_out, decoder_hidden):
        att1 = self.encoder_att(encoder_out)  # [b, L, A], recomputed at every step
        return self.attend(encoder_out, att1, decoder_hidden)

    def attend(self, encoder_out, att1, decoder_hidden):
        att2 = self.decoder_att(decoder_hidden)  # [b, A]
        att = self.full_att(self.relu(att1 + att2.unsqueeze(1))).squeeze(2)  # [b, L]
        alpha = self.softmax(att)
        attention_weighted_encoding = (encoder_out * alpha.unsqueeze(2)).sum(dim=1)  # [b, D]
        return attention_weighted_encoding, alpha


class DecoderWithAttention(nn.Module):
    def __init__(self, attention_dim, embed_dim, decoder_dim, vocab_size, encoder_dim=2048, dropout=0.5,
                 hard=False):
        super().__init__()
        self.encoder_dim = encoder_dim
        self.vocab_size = vocab_size
        self.hard = hard
        self.attention = Attention(encoder_dim, decoder_dim, attention_dim)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.dropout = nn.Dropout(p=dropout)
        self.decode_step = nn.LSTMCell(embed_dim + encoder_dim, decoder_dim, bias=True)
        self.init_h = nn.Linear(encoder_dim, decoder_dim)
        self.init_c = nn.Linear(encoder_dim, decoder_dim)
        self.f_beta = nn.Linear(decoder_dim, encoder_dim)
        self.sigmoid = nn.Sigmoid()
        self.fc = nn.Linear(decoder_dim, vocab_size)
        self.embedding.weight.data.uniform_(-0.1, 0.1)
        self.fc.bias.data.fill_(0)
        self.fc.weight.data.uniform_(-0.1, 0.1)

    def init_hidden_state(self, encoder_out):
        mean_encoder_out = encoder_out.mean(dim=1)
        return self.init_h(mean_encoder_out), self.init_c(mean_encoder_out)

    def attend(self, encoder_out, h, t, batch_size_t):
        """The tutorial's attention call (recomputing encoder_att); train_hoisted.py overrides this."""
        return self.attention(encoder_out[:batch_size_t], h[:batch_size_t])

    def prepare(self, encoder_out):
        """Work done once per batch before the loop (none here; train_hoisted.py hoists encoder_att)."""

    def forward(self, encoder_out, encoded_captions, caption_lengths):
        batch_size = encoder_out.size(0)
        encoder_dim = encoder_out.size(-1)
        vocab_size = self.vocab_size
        encoder_out = encoder_out.view(batch_size, -1, encoder_dim)
        num_pixels = encoder_out.size(1)

        caption_lengths, sort_ind = caption_lengths.squeeze(1).sort(dim=0, descending=True)
        encoder_out = encoder_out[sort_ind]
        encoded_captions = encoded_captions[sort_ind]
        embeddings = self.embedding(encoded_captions)
        h, c = self.init_hidden_state(encoder_out)
        decode_lengths = (caption_lengths - 1).tolist()

        self.prepare(encoder_out)
        predictions = torch.zeros(batch_size, max(decode_lengths), vocab_size, device=encoder_out.device)
        alphas = torch.zeros(batch_size, max(decode_lengths), num_pixels, device=encoder_out.device)
        log_p_s = torch.zeros(batch_size, device=encoder_out.device)  # hard attention: sum_t log alpha_t[s_t]
        entropy = torch.zeros(batch_size, device=encoder_out.device)

        for t in range(max(decode_lengths)):
            batch_size_t = sum([l > t for l in decode_lengths])
            attention_weighted_encoding, alpha = self.attend(encoder_out, h, t, batch_size_t)
            if self.hard:
                s = torch.multinomial(alpha.detach(), 1)  # [b, 1]
                attention_weighted_encoding = encoder_out[:batch_size_t].gather(
                    1, s.unsqueeze(2).expand(-1, 1, encoder_dim)).squeeze(1)
                log_alpha = torch.log(alpha + 1e-10)
                log_p_s = log_p_s + nn.functional.pad(log_alpha.gather(1, s).squeeze(1), (0, batch_size - batch_size_t))
                entropy = entropy + nn.functional.pad(-(alpha * log_alpha).sum(1), (0, batch_size - batch_size_t))
            gate = self.sigmoid(self.f_beta(h[:batch_size_t]))
            attention_weighted_encoding = gate * attention_weighted_encoding
            h, c = self.decode_step(
                torch.cat([embeddings[:batch_size_t, t, :], attention_weighted_encoding], dim=1),
                (h[:batch_size_t], c[:batch_size_t]))
            preds = self.fc(self.dropout(h))
            predictions[:batch_size_t, t, :] = preds
            alphas[:batch_size_t, t, :] = alpha

        return predictions, encoded_captions, decode_lengths, alphas, sort_ind, log_p_s, entropy


def make_batch(torch, args, device, batch_index, features):
    lengths = benchutil.caption_lengths(batch_index, args.batch)
    max_len = max(lengths) + 2
    caps = torch.zeros(args.batch, max_len, dtype=torch.long)
    for i, n in enumerate(lengths):
        caps[i, 0] = benchutil.START
        caps[i, 1:n + 1] = torch.randint(4, args.vocab, (n,))
        caps[i, n + 1] = benchutil.END
    caplens = torch.tensor([[n + 2] for n in lengths], dtype=torch.long)  # <start> + words + <end>
    words = sum(n + 1 for n in lengths)  # predicted tokens: the words and <end>
    return features, caps.to(device), caplens.to(device), words


class Trainer:
    """train.py's inner loop body for one batch."""

    def __init__(self, decoder, args):
        self.decoder = decoder
        # Mixed precision as PyTorch's AMP recipe writes it: autocast around the forward and the
        # loss, a GradScaler for float16.
        self.device_type = torch.device(args.device).type
        self.amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
        self.scaler = torch.cuda.amp.GradScaler() if args.precision == "fp16" else None
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.Adam(params=filter(lambda p: p.requires_grad, decoder.parameters()), lr=4e-4)
        self.alpha_c = 1.0
        self.grad_clip = 5.0
        self.baseline = 0.0

    def step(self, imgs, caps, caplens):
        amp = (torch.autocast(self.device_type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else contextlib.nullcontext())
        with amp:
            loss = self.forward_loss(imgs, caps, caplens)
        self.optimizer.zero_grad()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        for group in self.optimizer.param_groups:  # utils.clip_gradient
            for param in group["params"]:
                if param.grad is not None:
                    param.grad.data.clamp_(-self.grad_clip, self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return float(loss)

    def forward_loss(self, imgs, caps, caplens):
        scores, caps_sorted, decode_lengths, alphas, sort_ind, log_p_s, entropy = self.decoder(imgs, caps, caplens)
        targets = caps_sorted[:, 1:]
        scores_packed = pack_padded_sequence(scores, decode_lengths, batch_first=True).data
        targets_packed = pack_padded_sequence(targets, decode_lengths, batch_first=True).data
        loss = self.criterion(scores_packed, targets_packed)
        loss = loss + self.alpha_c * ((1. - alphas.sum(dim=1)) ** 2).mean()
        if self.decoder.hard:
            # REINFORCE surrogate with a moving-average baseline of the per-caption NLL.
            nll = nn.functional.cross_entropy(scores.transpose(1, 2), targets[:, :scores.size(1)],
                                              reduction="none", ignore_index=benchutil.PAD).sum(1)
            loss = loss + (0.1 * (nll.detach() - self.baseline) * log_p_s).mean() - 0.002 * entropy.mean()
            self.baseline = 0.9 * self.baseline + 0.1 * float(nll.mean())
        return loss


def build_decoder(args, device, cls=DecoderWithAttention):
    return cls(attention_dim=args.attention_dim, embed_dim=args.embed_dim, decoder_dim=args.decoder_dim,
               vocab_size=args.vocab, encoder_dim=args.encoder_dim, hard=args.attention == "hard").to(device)


def main(cls=DecoderWithAttention, name="train_common"):
    p = benchutil.parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--attention", choices=["soft", "hard"], default="soft")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="autocast dtype of the forward and the loss (fp16 with a GradScaler)")
    args = p.parse_args()
    if args.quick:
        args.steps = min(args.steps, 1)
    torch_ = benchutil.setup_torch(args)
    device = torch.device(args.device)
    decoder = build_decoder(args, device, cls)
    decoder.train()
    trainer = Trainer(decoder, args)
    features = torch.rand(args.batch, args.regions, args.encoder_dim, device=device)

    for b in range(args.warmup):
        imgs, caps, caplens, _ = make_batch(torch, args, device, b, features)
        trainer.step(imgs, caps, caplens)
    benchutil.sync(torch_, device)
    batches = [make_batch(torch, args, device, b, features) for b in range(args.warmup, args.warmup + args.steps)]
    words = sum(batch[3] for batch in batches)
    loss = 0.0
    cpu0 = benchutil.cpu_now()
    start = benchutil.now()
    for imgs, caps, caplens, _ in batches:
        loss = trainer.step(imgs, caps, caplens)
    benchutil.sync(torch_, device)
    seconds = benchutil.now() - start
    cpu_seconds = benchutil.cpu_now() - cpu0
    benchutil.emit({"script": name, "attention": args.attention, "precision": args.precision,
                    "batch": args.batch, "steps": args.steps,
                    "warmup": args.warmup, "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "words": words, "seconds": seconds, "cpu_seconds": cpu_seconds,
                    "words_per_s": words / seconds, "words_per_cpu_s": words / cpu_seconds,
                    "seconds_per_step": seconds / args.steps, "loss": loss})


if __name__ == "__main__":
    main()
