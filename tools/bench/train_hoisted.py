#!/usr/bin/python3
"""The tutorial's training step (train_common.py) with one change: the encoder projection
encoder_att(encoder_out) [B, L, A] is computed once per batch, before the decoding loop, and sliced
to the shrinking batch at each step, instead of being recomputed at every step. Nothing else differs.
Prints one JSON line like train_common.py.
"""
import train_common


class HoistedDecoder(train_common.DecoderWithAttention):
    def prepare(self, encoder_out):
        self.att1 = self.attention.encoder_att(encoder_out)  # [B, L, A], once per batch

    def attend(self, encoder_out, h, t, batch_size_t):
        return self.attention.attend(encoder_out[:batch_size_t], self.att1[:batch_size_t], h[:batch_size_t])


if __name__ == "__main__":
    train_common.main(HoistedDecoder, "train_hoisted")
