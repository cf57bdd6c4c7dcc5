// The training batches, in the order an epoch visits them. The order is a permutation of the
// training captions that depends only on (seed, epoch), so a resumed run sees the same order
// without storing it. A batch's captions are padded into [B, T] and run longest first (the order
// the decoder runs its rows in, so it need not copy the batch's features into that order every
// step). Their inputs: the features gathered from the feature source, or, when the encoder is
// fine-tuned, the images, decoded on a worker thread one batch ahead (TrainingStep encodes them).
//
// Data-parallel training: --batch is the global batch, and each process trains on a contiguous run
// of its rows (BatchShard). The runs are cut where each process gets about the same work, a row
// costing its valid steps plus its fixed cost (projecting its features) in steps' worth, so that
// rank 0, which gets the longest captions, gets fewer of them.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <future>
#include <optional>
#include <vector>

#include "satcap/model/decoder.h"
#include "satcap/train/training_data.h"

namespace satcap {

// Fine-tuning: the network input of a batch's distinct images and, per caption, its image's
// position among them (images with several captions in the batch are encoded once).
struct ImageBatch {
  at::Tensor input;  // [U, 3, H, W]
  at::Tensor index;  // [B] int64
};

struct TrainingBatch {
  std::vector<int64_t> rows;  // feature (or image) row of each caption, longest caption first
  // Data-parallel training: where these captions are in the global batch (null in one process).
  std::optional<BatchSlice> slice;
  at::Tensor features;        // [B, n, D] on the device (undefined when fine-tuning)
  ImageBatch images;          // fine-tuning only
  at::Tensor captions;        // [B, T] int64  <start> w_1 .. w_n <end> <pad>...
  at::Tensor lengths;         // [B] int64  tokens, <start> and <end> included
};

// A caption's length as trained: at most max_train_length words (0: all) between <start> and <end>.
std::size_t trained_length(const TrainingCaption& caption, int max_train_length);
// Its tokens: the first trained_length of them, the last one <end> where the caption was cut.
std::vector<int64_t> trained_tokens(const TrainingCaption& caption, int max_train_length);

// This process's share of every global batch.
struct BatchShard {
  int rank = 0;
  int count = 1;        // processes
  double row_cost = 0;  // a row's fixed cost in valid steps' worth (row_cost_in_steps)
};

// A decoder row's fixed cost (the projection of its features and its initial state) over the cost
// of one of its steps, in multiply-adds: about 15 at the paper's COCO scale (196 x 2048 features).
double row_cost_in_steps(const DecoderOptions& decoder);

// Where `parts` processes cut a batch whose rows (sorted longest first) have `steps` valid steps
// each: parts + 1 row boundaries, part r being rows [cut[r], cut[r + 1]). Each part costs about the
// same (row_cost + steps per row); every part gets a row when there are as many rows as parts.
std::vector<int64_t> split_batch(const std::vector<int64_t>& steps, int parts, double row_cost);

class BatchGenerator {
 public:
  BatchGenerator(const TrainingData& data, int64_t batch_size, int max_train_length, uint64_t seed,
                 c10::Device device, std::optional<BatchShard> shard = std::nullopt);
  ~BatchGenerator();
  BatchGenerator(const BatchGenerator&) = delete;
  BatchGenerator& operator=(const BatchGenerator&) = delete;

  int64_t batches_per_epoch() const { return batches_per_epoch_; }

  // Batch `index` of `epoch` (0-based); with a shard, this process's part of it. Fine-tuning: with
  // `prefetch_next`, the images of the epoch's next batch start loading on a worker thread.
  TrainingBatch batch(int epoch, int64_t index, bool prefetch_next);

 private:
  // Indices into data.train of the batch's captions, longest first (stable); with a shard, those of
  // this process's part, and `slice` receives where they are in the whole batch.
  std::vector<int64_t> captions_of(int64_t index, BatchSlice* slice = nullptr) const;
  std::vector<int64_t> rows_of(const std::vector<int64_t>& captions) const;
  ImageBatch load_images(const std::vector<int64_t>& rows) const;

  const TrainingData& data_;
  int64_t batch_size_;
  int max_train_length_;
  uint64_t seed_;
  c10::Device device_;
  std::optional<BatchShard> shard_;
  int64_t batches_per_epoch_;
  int epoch_ = -1;
  std::vector<int64_t> order_;          // the epoch's permutation of the captions
  int64_t prefetched_index_ = -1;       // the batch whose images next_images_ loads
  std::future<ImageBatch> next_images_;
};

}  // namespace satcap
