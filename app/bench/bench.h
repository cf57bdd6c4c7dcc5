// `satcap bench`: satcap measured, in one run on one machine and thread count, against the
// machine's limit (the best fp32 matrix-product rate LibTorch reaches here) and against the Python
// way (tools/bench/*.py, run as subprocesses with Debian's python3-torch, the same LibTorch).
//
// Measurements (each reported with the target it is held to; targets are printed, never enforced):
//   sgemm    best GFLOP/s of at::mm over square and model-shaped products
//   train    the decoder's training step (forward + loss + backward + Adam) at the paper's COCO scale,
//            soft and hard attention, batch 32 and 64: words/s and counted FLOPs / time / sgemm peak;
//            the same step as the tutorial writes it (train_common.py) and with the encoder
//            projection hoisted (train_hoisted.py)
//   beam     batched beam search at beam 1, 3, 5 vs a per-image Python beam search (beam_per_image.py)
//   prepare  the encoder pipeline (decode, resize, forward, store) vs the bare network forward
//   growth   a scenes dataset of 2,000 and 20,000 images through prepare and one training epoch:
//            time per image and peak RSS (child processes of the satcap binary)
//   ops      the ATen operations the training step dispatches per decoder time step on the
//            device-generic path (what a GPU runs: each is one or more kernel launches there)
//   dist     training words/s of 1 process (1 and 2 threads) and of 2 data-parallel processes
//            (--nproc 2, 1 thread each), and the scaling efficiency; only with --only dist
// The parts live in one file each beside this one; measure.h, the harness's private header, lists
// them. No torch in this header (precision.h brings c10's Device and ScalarType only).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

#include "attention_runs.h"
#include "satcap/model/decoder_options.h"
#include "satcap/runtime/precision.h"

namespace satcap {

struct BenchOptions {
  // Smaller measurements (about 1-2 minutes on 2 cores) and no growth runs.
  bool quick = false;
  // Tiny sizes (seconds): checks that every measurement runs and reports; the numbers mean nothing.
  bool smoke = false;
  // Compute device for satcap's measurements and the Python scripts ("cpu", "cuda", "cuda:N").
  std::string device = "cpu";
  // The Python interpreter that has PyTorch (Debian's python3-torch).
  std::string python = "/usr/bin/python3";
  // Folder holding train_common.py, train_hoisted.py and beam_per_image.py ("" = <source>/tools/bench).
  std::string scripts_dir;
  // The satcap binary run for the growth measurement ("" = this process's own executable).
  std::string satcap_binary;
  // Scratch folder for generated datasets and feature stores ("" = a fresh folder under the system
  // temporary directory, removed at the end).
  std::string work_dir;
  // Parts to run, any of sgemm, train, python, beam, prepare, growth, dist (empty = all; growth is
  // skipped by quick and smoke unless named here, dist unless named here).
  std::vector<std::string> parts;
  // Training batch sizes to measure (empty = the mode's: 32 and 64; smoke: 4 and 8).
  std::vector<int64_t> batches;
  // Dataset sizes of the growth measurement (empty = 2000 and 20000).
  std::vector<int64_t> growth_sizes;
  // Attention kinds to measure: both, soft or hard.
  AttentionRuns attention = AttentionRuns::both;
  // Precision of the training steps, satcap's and the Python scripts' alike (satcap/runtime/precision.h;
  // fp16: CUDA only). The sgemm peak stays float32.
  Precision precision = Precision::fp32;
  // With a path: LibTorch's profiler records the timed training steps of the last measured batch
  // size and attention kind and writes a Chrome trace (chrome://tracing, Perfetto) there.
  std::string trace;

  // Throws UsageError naming the bad field.
  void validate() const;
};

// The model the benchmark trains and searches with: the paper's COCO scale (196 regions of 2048
// features, widths 512, vocabulary 10,000, the doubly stochastic term with lambda 1 as
// train_common.py has it), hard attention always on the sampled path (REINFORCE,
// as train_common.py --attention hard does: semi-sampling would train half the minibatches with the
// soft context).
DecoderOptions coco_scale_decoder(AttentionKind attention = AttentionKind::soft);

// What one training step dispatches per decoder time step on the device-generic path: the fused CPU
// kernels switched off (satcap/ops/fused_kernels.h), so the CPU runs the ATen expressions CUDA runs.
// Counted with LibTorch's RecordFunction over the forward, the loss and the backward of two steps
// whose captions are `words` and `words + extra` words long; the difference divided by `extra` is
// the per-step part (what is done once per batch cancels out).
struct StepOpCount {
  double dispatched = 0;  // every ATen operation the dispatcher ran, nested ones included
  double kernels = 0;     // the outermost ones that compute (not a view or an allocation): each is
                          // one or more kernel launches on a GPU
  double forward_kernels = 0, backward_kernels = 0;
  // The LSTM cell's share of `kernels`: on CUDA ATen's fused cell (_thnn_fused_lstm_cell, CUDA
  // only, so not countable here) replaces them with one kernel forward and one backward.
  double cell_kernels = 0;
  double cuda_kernels = 0;  // kernels - cell_kernels + kCudaCellKernels: what a CUDA step launches
  // Per step, by operation name, the computing ones (the largest counts first when printed).
  std::vector<std::pair<std::string, double>> by_name;
};
constexpr double kCudaCellKernels = 2;
// The device-generic step's computing operations per decoder time step before they were cut (at
// 52a0f24, measured by count_step_ops there; the same on CUDA, whose cell was the plain expression):
// the figures the report compares with.
constexpr double kOpsPerStepBefore = 60, kOpsPerStepBeforeHard = 74;
StepOpCount count_step_ops(const DecoderOptions& model, int64_t batch, int64_t words = 6, int64_t extra = 4);

// One term of the training step's FLOP count.
struct FlopTerm {
  std::string name;
  double forward = 0;          // FLOPs of the forward pass for the whole batch
  double backward_factor = 2;  // backward = factor * forward (1 where the input needs no gradient)
  double total() const { return forward * (1 + backward_factor); }
};

// The counted FLOPs of one training step over captions of `caption_words` words each (each caption
// takes words + 1 decoding steps: the words and <end>), per term: encoder projection, f_init, the
// attention MLP, the context, the gate, the LSTM gates, the deep output, the vocabulary projection,
// softmax + NLL, and Adam over `parameters` weights (about 12 FLOPs each, no backward).
std::vector<FlopTerm> training_flops(const DecoderOptions& decoder, const std::vector<int64_t>& caption_words,
                                     int64_t parameters);
double total_flops(const std::vector<FlopTerm>& terms);

// COCO-like caption lengths (8..22 words, mean about 11) for batch number `batch_index`: the same
// integer generator as tools/bench/benchutil.py, so the Python scripts train on the same words.
std::vector<int64_t> bench_caption_lengths(int64_t batch_index, int64_t batch_size);

// Runs the benchmark (progress lines to `log` when not null) and returns the report: one JSON
// object with the measurements, the ratios, the targets and the machine.
nlohmann::json run_bench(const BenchOptions& options, std::ostream* log);

// The report as a readable table.
std::string format_bench_report(const nlohmann::json& report);

}  // namespace satcap
