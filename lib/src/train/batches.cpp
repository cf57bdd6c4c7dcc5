#include "satcap/train/batches.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <utility>
#include <random>

#include "satcap/model/vocab.h"

namespace satcap {

namespace {

// A permutation of n captions that depends only on (seed, epoch).
std::vector<int64_t> epoch_order(std::size_t n, uint64_t seed, int epoch) {
  std::vector<int64_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = static_cast<int64_t>(i);
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) + 1);
  for (std::size_t i = n; i > 1; --i) {  // Fisher-Yates with the generator's raw output (portable)
    std::size_t j = static_cast<std::size_t>(rng() % i);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

}  // namespace

double row_cost_in_steps(const DecoderOptions& o) {
  const double n = std::max(1, o.regions), D = o.feature_dim, A = o.attention_dim, H = o.hidden_dim,
               m = o.embed_dim, V = o.vocab_size;
  const double fixed = n * D * A + (o.init_state == InitState::zeros ? 0.0 : 2 * D * H);
  const double gate = o.beta == BetaKind::none ? 0.0 : o.beta == BetaKind::scalar ? H : H * D;
  const double step = (m + D + H) * 4 * H + H * A + n * A + n * D + gate + (o.deep_output ? (H + D) * m + m * V : H * V);
  return step > 0 ? fixed / step : 0.0;
}

std::vector<int64_t> split_batch(const std::vector<int64_t>& steps, int parts, double row_cost) {
  const auto B = static_cast<int64_t>(steps.size());
  std::vector<double> before(steps.size() + 1, 0.0);  // cost of rows [0, i)
  for (std::size_t i = 0; i < steps.size(); ++i) before[i + 1] = before[i] + row_cost + static_cast<double>(steps[i]);
  std::vector<int64_t> cut(static_cast<std::size_t>(parts) + 1, 0);
  cut.back() = B;
  for (int r = 1; r < parts; ++r) {
    // The boundary nearest to r / parts of the cost, after the previous one.
    const double target = before.back() * r / parts;
    int64_t i = std::lower_bound(before.begin(), before.end(), target) - before.begin();
    if (i > 0 && target - before[static_cast<std::size_t>(i - 1)] < before[static_cast<std::size_t>(i)] - target) --i;
    i = std::max(i, cut[static_cast<std::size_t>(r - 1)]);
    if (B >= parts) i = std::clamp<int64_t>(i, cut[static_cast<std::size_t>(r - 1)] + 1, B - (parts - r));
    cut[static_cast<std::size_t>(r)] = std::min(i, B);
  }
  return cut;
}

std::size_t trained_length(const TrainingCaption& c, int max_train_length) {
  return max_train_length > 0 ? std::min(c.length, static_cast<std::size_t>(max_train_length) + 2) : c.length;
}

std::vector<int64_t> trained_tokens(const TrainingCaption& c, int max_train_length) {
  const std::size_t n = trained_length(c, max_train_length);
  std::vector<int64_t> t(c.tokens, c.tokens + n);
  if (n < c.length) t.back() = Vocabulary::end_id;
  return t;
}

BatchGenerator::BatchGenerator(const TrainingData& data, int64_t batch_size, int max_train_length, uint64_t seed,
                               c10::Device device, std::optional<BatchShard> shard)
    : data_(data),
      batch_size_(batch_size),
      max_train_length_(max_train_length),
      seed_(seed),
      device_(device),
      shard_(shard),
      batches_per_epoch_((static_cast<int64_t>(data.train.size()) + batch_size - 1) / batch_size) {}

BatchGenerator::~BatchGenerator() {
  if (next_images_.valid()) next_images_.wait();  // a load that is never used is waited for and dropped
}

std::vector<int64_t> BatchGenerator::captions_of(int64_t index, BatchSlice* slice) const {
  const int64_t N = static_cast<int64_t>(data_.train.size());
  const int64_t begin = index * batch_size_, end = std::min(N, begin + batch_size_);
  auto length = [&](int64_t c) { return trained_length(data_.train[static_cast<std::size_t>(c)], max_train_length_); };
  std::vector<int64_t> captions(order_.begin() + begin, order_.begin() + end);
  std::stable_sort(captions.begin(), captions.end(), [&](int64_t a, int64_t b) { return length(a) > length(b); });
  if (!shard_) return captions;
  std::vector<int64_t> steps;  // valid steps: every token but <start> is predicted
  for (int64_t c : captions) steps.push_back(static_cast<int64_t>(length(c)) - 1);
  const std::vector<int64_t> cut = split_batch(steps, shard_->count, shard_->row_cost);
  const int64_t first = cut[static_cast<std::size_t>(shard_->rank)], last = cut[static_cast<std::size_t>(shard_->rank) + 1];
  if (slice) {
    slice->row_offset = first;
    slice->global_steps = std::move(steps);
  }
  return std::vector<int64_t>(captions.begin() + first, captions.begin() + last);
}

std::vector<int64_t> BatchGenerator::rows_of(const std::vector<int64_t>& captions) const {
  std::vector<int64_t> rows;
  rows.reserve(captions.size());
  for (int64_t i : captions) rows.push_back(data_.train[static_cast<std::size_t>(i)].feature_row);
  return rows;
}

ImageBatch BatchGenerator::load_images(const std::vector<int64_t>& rows) const {
  std::vector<int64_t> distinct, index;
  std::map<int64_t, int64_t> position;
  for (int64_t r : rows) {
    auto [it, added] = position.emplace(r, static_cast<int64_t>(distinct.size()));
    if (added) distinct.push_back(r);
    index.push_back(it->second);
  }
  return {data_.images(distinct), at::tensor(index, at::kLong)};
}

TrainingBatch BatchGenerator::batch(int epoch, int64_t index, bool prefetch_next) {
  if (epoch != epoch_) {
    if (next_images_.valid()) next_images_.wait();
    next_images_ = {};
    prefetched_index_ = -1;
    order_ = epoch_order(data_.train.size(), seed_, epoch);
    epoch_ = epoch;
  }
  TrainingBatch batch;
  if (shard_) batch.slice.emplace();
  const std::vector<int64_t> captions = captions_of(index, batch.slice ? &*batch.slice : nullptr);
  std::vector<std::vector<int64_t>> tokens;
  tokens.reserve(captions.size());
  for (int64_t i : captions) tokens.push_back(trained_tokens(data_.train[static_cast<std::size_t>(i)], max_train_length_));
  const int64_t B = static_cast<int64_t>(tokens.size());
  int64_t T = B == 0 ? 2 : 0;  // a process's part may be empty: [0, 2] goes through the decoder
  for (const auto& t : tokens) T = std::max<int64_t>(T, static_cast<int64_t>(t.size()));
  auto padded = at::full({B, T}, Vocabulary::pad_id, at::kLong);  // [B, T]
  auto lengths = at::empty({B}, at::kLong);                        // [B]
  auto pa = padded.accessor<int64_t, 2>();
  auto la = lengths.accessor<int64_t, 1>();
  for (int64_t b = 0; b < B; ++b) {
    la[b] = static_cast<int64_t>(tokens[b].size());
    for (std::size_t t = 0; t < tokens[b].size(); ++t) pa[b][static_cast<int64_t>(t)] = tokens[b][t];
  }
  batch.rows = rows_of(captions);
  if (!data_.encoder) batch.features = data_.gather(batch.rows).to(device_, at::kFloat);
  batch.captions = padded.to(device_);
  batch.lengths = lengths.to(device_);
  if (data_.encoder) {
    batch.images = next_images_.valid() && prefetched_index_ == index ? next_images_.get() : load_images(batch.rows);
    next_images_ = {};
    const int64_t next = index + 1;
    if (prefetch_next && next < batches_per_epoch_) {
      prefetched_index_ = next;
      next_images_ = std::async(std::launch::async, [this, rows = rows_of(captions_of(next))] { return load_images(rows); });
    }
  }
  return batch;
}

}  // namespace satcap
