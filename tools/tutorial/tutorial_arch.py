"""A re-statement of the architecture of sgrvinod's a-PyTorch-Tutorial-to-Image-Captioning (MIT),
written from its description (not its code), for building test checkpoints in the tutorial's format
(make_fixture.py) and loading them the tutorial's way (reference_decode.py).

The tutorial pickles whole nn.Module objects of classes `models.Encoder`,
`models.DecoderWithAttention` and `models.Attention`; register() installs this file as the module
`models` so that torch.save writes exactly those references (and torch.load of a tutorial
checkpoint finds them). The attribute names are the tutorial's, so the state-dict keys match:

  encoder:  resnet.{0..7}.*  (torchvision ResNet without avgpool and fc), adaptive_pool
  decoder:  attention.{encoder_att,decoder_att,full_att}.*, embedding.weight,
            decode_step.{weight_ih,weight_hh,bias_ih,bias_hh}, init_h.*, init_c.*, f_beta.*, fc.*

Equations (E embed, A attention, H decoder, D encoder dim):
  att   = full_att(relu(encoder_att(enc) + decoder_att(h)[:, None])).squeeze(2); alpha = softmax(att, 1)
  awe   = (enc * alpha[..., None]).sum(1)
  h0,c0 = init_h(mean(enc)), init_c(mean(enc))            (linear: no tanh)
  step  : awe *= sigmoid(f_beta(h)); h, c = decode_step(cat([emb(y), awe], 1), (h, c)); logits = fc(dropout(h))
"""
import sys

import torch
import torchvision
from torch import nn


def _trunk(arch):
    """A torchvision ResNet built with torchvision's own classes (so its pickle references
    torchvision.models.resnet.Bottleneck/BasicBlock like the tutorial's resnet101).
      resnet101 / resnet50 / resnet18: torchvision's, untrained;
      tiny: ResNet(Bottleneck, [1, 1, 1, 1], width_per_group=4): D = 2048 like resnet101, ~2.8M parameters;
      tiny-basic: ResNet(BasicBlock, [1, 1, 1, 1]): D = 512, ~4.9M parameters."""
    R = torchvision.models.resnet
    if arch == "tiny":
        return R.ResNet(R.Bottleneck, [1, 1, 1, 1], width_per_group=4)
    if arch == "tiny-basic":
        return R.ResNet(R.BasicBlock, [1, 1, 1, 1])
    if arch in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
        return getattr(torchvision.models, arch)(weights=None)
    raise ValueError(f"unknown encoder arch {arch!r}")


class Encoder(nn.Module):
    def __init__(self, encoded_image_size=14, arch="resnet101"):
        super().__init__()
        self.enc_image_size = encoded_image_size
        resnet = _trunk(arch)
        self.resnet = nn.Sequential(*list(resnet.children())[:-2])  # without avgpool and fc
        self.adaptive_pool = nn.AdaptiveAvgPool2d((encoded_image_size, encoded_image_size))
        self.fine_tune()  # the tutorial's __init__ calls it with the default (True)

    def forward(self, images):  # [B, 3, 256, 256] -> [B, s, s, D]
        out = self.adaptive_pool(self.resnet(images))
        return out.permute(0, 2, 3, 1)

    def fine_tune(self, fine_tune=True):
        for p in self.resnet.parameters():
            p.requires_grad = False
        for c in list(self.resnet.children())[5:]:  # blocks 2..4 (layer2, layer3, layer4)
            for p in c.parameters():
                p.requires_grad = fine_tune


class Attention(nn.Module):
    def __init__(self, encoder_dim, decoder_dim, attention_dim):
        super().__init__()
        self.encoder_att = nn.Linear(encoder_dim, attention_dim)
        self.decoder_att = nn.Linear(decoder_dim, attention_dim)
        self.full_att = nn.Linear(attention_dim, 1)
        self.relu = nn.ReLU()
        self.softmax = nn.Softmax(dim=1)

    def forward(self, encoder_out, decoder_hidden):  # [B, n, D], [B, H] -> [B, D], [B, n]
        att1 = self.encoder_att(encoder_out)
        att2 = self.decoder_att(decoder_hidden)
        att = self.full_att(self.relu(att1 + att2.unsqueeze(1))).squeeze(2)
        alpha = self.softmax(att)
        return (encoder_out * alpha.unsqueeze(2)).sum(dim=1), alpha


class DecoderWithAttention(nn.Module):
    def __init__(self, attention_dim, embed_dim, decoder_dim, vocab_size, encoder_dim=2048, dropout=0.5):
        super().__init__()
        self.encoder_dim = encoder_dim
        self.attention_dim = attention_dim
        self.embed_dim = embed_dim
        self.decoder_dim = decoder_dim
        self.vocab_size = vocab_size
        self.dropout = dropout  # replaced by the module below, as in the tutorial
        self.attention = Attention(encoder_dim, decoder_dim, attention_dim)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.dropout = nn.Dropout(p=dropout)
        self.decode_step = nn.LSTMCell(embed_dim + encoder_dim, decoder_dim, bias=True)
        self.init_h = nn.Linear(encoder_dim, decoder_dim)
        self.init_c = nn.Linear(encoder_dim, decoder_dim)
        self.f_beta = nn.Linear(decoder_dim, encoder_dim)
        self.sigmoid = nn.Sigmoid()
        self.fc = nn.Linear(decoder_dim, vocab_size)
        self.init_weights()

    def init_weights(self):
        self.embedding.weight.data.uniform_(-0.1, 0.1)
        self.fc.bias.data.fill_(0)
        self.fc.weight.data.uniform_(-0.1, 0.1)

    def init_hidden_state(self, encoder_out):  # [B, n, D] -> h, c [B, H]
        mean = encoder_out.mean(dim=1)
        return self.init_h(mean), self.init_c(mean)

    def forward(self, encoder_out, encoded_captions, caption_lengths):
        """Teacher-forced forward as the tutorial's (sorted by decreasing length)."""
        B, D = encoder_out.size(0), encoder_out.size(-1)
        encoder_out = encoder_out.view(B, -1, D)
        n = encoder_out.size(1)
        caption_lengths, sort_ind = caption_lengths.squeeze(1).sort(dim=0, descending=True)
        encoder_out = encoder_out[sort_ind]
        encoded_captions = encoded_captions[sort_ind]
        embeddings = self.embedding(encoded_captions)
        h, c = self.init_hidden_state(encoder_out)
        decode_lengths = (caption_lengths - 1).tolist()
        T = max(decode_lengths)
        predictions = torch.zeros(B, T, self.vocab_size)
        alphas = torch.zeros(B, T, n)
        for t in range(T):
            bt = sum(l > t for l in decode_lengths)
            awe, alpha = self.attention(encoder_out[:bt], h[:bt])
            awe = self.sigmoid(self.f_beta(h[:bt])) * awe
            h, c = self.decode_step(torch.cat([embeddings[:bt, t, :], awe], dim=1), (h[:bt], c[:bt]))
            predictions[:bt, t, :] = self.fc(self.dropout(h))
            alphas[:bt, t, :] = alpha
        return predictions, encoded_captions, decode_lengths, alphas, sort_ind


def register():
    """Installs this file as the module `models` (what the tutorial's pickles reference)."""
    me = sys.modules[__name__]
    for cls in (Encoder, Attention, DecoderWithAttention):
        cls.__module__ = "models"
    sys.modules["models"] = me
    return me
