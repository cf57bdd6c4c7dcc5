#include "bench/bench.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/profiler.h>
#include <torch/cuda.h>
#include <torch/optim/adam.h>
#include <torch/version.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <cstdlib>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

#include "satcap/build_config.h"
#include "satcap/data/dataset.h"
#include "satcap/data/image.h"
#include "satcap/data/image_batch.h"
#include "satcap/data/prepare.h"
#include "satcap/decode/search.h"
#include "satcap/model/decoder.h"
#include "satcap/model/encoder.h"
#include "satcap/ops/adam_step.h"
#include "satcap/runtime/cpu_allocator.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/loss_scaler.h"
#include "satcap/runtime/precision.h"
#include "satcap/runtime/runtime.h"
#include "satcap/train/trainer.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace satcap {

// ---------------------------------------------------------------------------------------------
// Options, caption lengths, FLOP count

namespace {
const std::vector<std::string> kParts = {"sgemm", "train", "python", "beam", "prepare", "growth"};
}

void BenchOptions::validate() const {
  if (quick && smoke) throw UsageError("--quick and --smoke: choose one");
  for (const auto& p : parts) {
    if (std::find(kParts.begin(), kParts.end(), p) == kParts.end()) {
      throw UsageError("--only '" + p + "': expected one of sgemm, train, python, beam, prepare, growth");
    }
  }
  if (python.empty()) throw UsageError("--python must name an interpreter");
  for (auto b : batches) {
    if (b < 1) throw UsageError("--batches: every batch size must be at least 1 (got " + std::to_string(b) + ")");
  }
  for (auto n : growth_sizes) {
    if (n < 10) throw UsageError("--growth-sizes: every size must be at least 10 images (got " + std::to_string(n) + ")");
  }
}

std::vector<int64_t> bench_caption_lengths(int64_t batch_index, int64_t batch_size) {
  // Keep in step with tools/bench/benchutil.py (caption_lengths).
  static const int kWeights[] = {100, 220, 200, 150, 100, 70, 50, 35, 25, 17, 12, 8, 6, 4, 3};  // 8..22 words
  uint64_t state = static_cast<uint64_t>(batch_index) * 0x9E3779B97F4A7C15ULL + 12345ULL;
  std::vector<int64_t> lengths;
  lengths.reserve(static_cast<size_t>(batch_size));
  for (int64_t i = 0; i < batch_size; ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    int u = static_cast<int>((state >> 33) % 1000);
    int acc = 0;
    for (int k = 0; k < 15; ++k) {
      acc += kWeights[k];
      if (u < acc) {
        lengths.push_back(8 + k);
        break;
      }
    }
  }
  return lengths;
}

DecoderOptions coco_scale_decoder(AttentionKind attention) {
  DecoderOptions o;
  o.vocab_size = 10000;
  o.feature_dim = 2048;
  o.regions = 196;
  o.attention = attention;
  o.alpha_c = 1.0;  // the paper's COCO setting, as train_common.py
  o.semi_sampling_p = 0.0;
  return o;
}

std::vector<FlopTerm> training_flops(const DecoderOptions& s, const std::vector<int64_t>& caption_words,
                                     int64_t parameters) {
  const double n = static_cast<double>(s.regions), D = static_cast<double>(s.feature_dim);
  const double m = static_cast<double>(s.embed_dim), A = static_cast<double>(s.attention_dim);
  const double H = static_cast<double>(s.hidden_dim), V = static_cast<double>(s.vocab_size);
  const double beta_dim = s.beta == BetaKind::none ? 0 : s.beta == BetaKind::scalar ? 1 : D;
  const double captions = static_cast<double>(caption_words.size());
  double steps = 0;  // decoding steps over the batch: words + <end> per caption
  for (auto w : caption_words) steps += static_cast<double>(w + 1);
  const double out_in = s.deep_output ? m : H;  // L_o's input width

  std::vector<FlopTerm> t;
  // Once per caption. The features need no gradient: backward is the weight gradient only.
  t.push_back({"encoder projection W_a a_i [n,D]x[D,A]", captions * 2 * n * D * A, 1});
  if (s.init_state != InitState::zeros) t.push_back({"f_init,h and f_init,c on mean_i a_i", captions * (n * D + 2 * 2 * D * H), 1});
  // Per step.
  t.push_back({"attention U_a h_{t-1} [H]x[H,A]", steps * 2 * H * A, 2});
  t.push_back({"attention scores w^T tanh(.) and softmax", steps * (2 * n * A + 2 * n * A + 5 * n), 2});
  if (s.attention == AttentionKind::hard) {
    t.push_back({"context a_{s_t} (gather) and log alpha, entropy", steps * 4 * n, 2});
  } else {
    // Backward: d alpha only (the features need no gradient).
    t.push_back({"context sum_i alpha_ti a_i [n]x[n,D]", steps * 2 * n * D, 1});
  }
  if (beta_dim > 0) t.push_back({"gate beta_t = sigmoid(f_beta h), beta_t z_t", steps * (2 * H * beta_dim + 2 * D), 2});
  t.push_back({"LSTM gates [m+D+H]x[m+D+H,4H] and cell", steps * (2 * (m + D + H) * 4 * H + 10 * H), 2});
  if (s.deep_output) t.push_back({"deep output L_h h_t + L_z z_t + E y_{t-1}", steps * (2 * H * m + 2 * D * m + 2 * m), 2});
  t.push_back({"vocabulary projection L_o [" + std::string(s.deep_output ? "m" : "H") + "]x[.,V]", steps * 2 * out_in * V, 2});
  t.push_back({"log-softmax and NLL over V", steps * 4 * V, 2});
  t.push_back({"Adam update (12 per parameter)", 12.0 * static_cast<double>(parameters), 0});
  return t;
}

double total_flops(const std::vector<FlopTerm>& terms) {
  double sum = 0;
  for (const auto& term : terms) sum += term.total();
  return sum;
}

// ---------------------------------------------------------------------------------------------
// Helpers: clock, child processes, machine facts

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// CPU seconds this process has used (all threads). With --threads 1 on a busy machine, work per
// CPU second is a steadier figure than work per wall second.
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void sync(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

struct ChildRun {
  int exit_code = -1;    // -1 when it did not exit normally (killed by a signal)
  std::string out, err;  // captured stdout and stderr
  double seconds = 0;
  long max_rss_kib = 0;  // the child's own peak resident set (sampled VmHWM; see run_child)
  // The largest anonymous (heap) and file-backed (the program's libraries, about 130 MiB of
  // LibTorch, and mapped files such as the feature store) parts of the resident set seen in the
  // samples: what the peak is made of (not exact peaks themselves).
  long max_rss_anon_kib = 0, max_rss_file_kib = 0;
};

// Runs argv[0] with argv (no shell) in `cwd`, capturing stdout and stderr.
ChildRun run_child(const std::vector<std::string>& argv, const std::string& cwd = "") {
  ChildRun r;
  int out_pipe[2], err_pipe[2];
  int exec_pipe[2];  // closed by a successful exec (O_CLOEXEC): the parent waits for that
  if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0 || pipe2(exec_pipe, O_CLOEXEC) != 0)
    throw std::runtime_error("bench: pipe() failed");
  auto start = Clock::now();
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("bench: fork() failed");
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    close(out_pipe[0]);
    close(out_pipe[1]);
    close(err_pipe[0]);
    close(err_pipe[1]);
    close(exec_pipe[0]);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  close(exec_pipe[1]);
  {  // until the child has exec'd (or failed to): before that it is a copy of this process
    char c;
    while (read(exec_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    close(exec_pipe[0]);
  }
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  char buf[65536];
  // The child's peak memory: VmHWM of its own address space, sampled every 100 ms (monotonic, so
  // only the last moments before it exits can be missed). wait4's ru_maxrss cannot be used: Linux
  // starts a forked child's peak at the parent's resident size at fork time, and this process holds
  // the COCO-scale training tensors by then (every child read 1398 MiB in one full run).
  long hwm_kib = 0;
  const std::string status_path = "/proc/" + std::to_string(pid) + "/status";
  auto sample = [&] {
    std::ifstream st(status_path);
    std::string line;
    auto keep_max = [&](const char* key, long& into) {
      const size_t n = std::strlen(key);
      if (line.compare(0, n, key) == 0) into = std::max(into, std::strtol(line.c_str() + n, nullptr, 10));
    };
    while (std::getline(st, line)) {
      keep_max("VmHWM:", hwm_kib);
      keep_max("RssAnon:", r.max_rss_anon_kib);
      keep_max("RssFile:", r.max_rss_file_kib);
    }
  };
  while (open_fds > 0) {
    sample();
    const int ready = poll(fds, 2, 100);
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (ready == 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  rusage usage{};
  while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  r.seconds = seconds_since(start);
  r.max_rss_kib = hwm_kib > 0 ? hwm_kib : usage.ru_maxrss;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string last_lines(const std::string& text, size_t n) {
  size_t pos = text.size();
  while (n > 0 && pos > 0) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
    --n;
  }
  return text.substr(pos + 1);
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

// The BLAS this process actually loaded (from /proc/self/maps) and OpenBLAS's own description.
json blas_info() {
  json info;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  std::vector<std::string> libs;
  while (std::getline(maps, line)) {
    auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    std::string name = fs::path(path).filename().string();
    if (name.find("blas") == std::string::npos && name.find("mkl") == std::string::npos &&
        name.find("lapack") == std::string::npos) {
      continue;
    }
    if (std::find(libs.begin(), libs.end(), path) == libs.end()) libs.push_back(path);
  }
  info["loaded"] = libs;
  using ConfigFn = char* (*)();
  if (auto fn = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
    info["openblas_config"] = std::string(fn());
  }
  using ThreadsFn = int (*)();
  if (auto fn = reinterpret_cast<ThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"))) {
    info["openblas_max_threads"] = fn();  // OpenBLAS (OpenMP build) uses omp_get_max_threads() per call
  }
  const BlasKernels kernels = blas_kernels();
  if (!kernels.active.empty()) {
    info["openblas_kernels"] = kernels.active;
    info["openblas_kernels_detected"] = kernels.detected;
    info["openblas_kernels_switched"] = kernels.switched;
  }
  std::string summary;
  if (kernels.switched) summary = "kernels " + kernels.active + " chosen by satcap over OpenBLAS's fallback " + kernels.detected + "; ";
  for (size_t i = 0; i < libs.size(); ++i) summary += (i > 0 ? ", " : "") + libs[i];
  if (info.contains("openblas_config")) summary = info["openblas_config"].get<std::string>() + " (" + summary + ")";
  // (Python's torch in the child processes inherits OPENBLAS_CORETYPE, so it runs the same kernels.)
  info["summary"] = summary.empty() ? "none found in this process" : summary;
  return info;
}

struct Logger {
  std::ostream* out;
  template <class... Args>
  void operator()(const Args&... args) const {
    if (!out) return;
    std::ostringstream line;
    (line << ... << args);
    *out << "[bench] " << line.str() << std::endl;
  }
};

// ---------------------------------------------------------------------------------------------
// Sizes of each mode

struct Plan {
  std::string mode;
  DecoderOptions shape = coco_scale_decoder();  // training and beam search model (COCO scale unless smoke)
  std::vector<int64_t> train_batches;  // satcap's batches
  std::vector<int64_t> python_batches; // the Python scripts' batches (a subset of train_batches)
  // Full runs time 10 steps of satcap (about a second each at COCO scale on 2 cores) and 5 of
  // Python: with 3 each, repeated runs on a shared 2-core machine moved by 20%.
  int train_warmup = 1, train_steps = 10;
  int python_warmup = 1, python_steps = 5;
  double sgemm_seconds = 1.0;  // time per product shape
  std::vector<std::array<int64_t, 3>> sgemm_shapes;  // {M, K, N}
  int64_t beam_images = 200, python_beam_images = 200;
  int64_t beam_max_len = 20;
  std::vector<int64_t> beams = {1, 3, 5};
  int64_t prepare_images = 256, prepare_batch = 32;
  std::vector<int64_t> growth_sizes = {2000, 20000};
};

Plan make_plan(const BenchOptions& o) {
  Plan p;
  p.mode = o.smoke ? "smoke" : o.quick ? "quick" : "full";
  const int64_t B = 64, n = p.shape.regions, D = p.shape.feature_dim;
  if (o.smoke) {
    p.shape.regions = 16;
    p.shape.feature_dim = 64;
    p.shape.embed_dim = p.shape.attention_dim = p.shape.hidden_dim = 32;
    p.shape.vocab_size = 200;
    p.train_batches = {32, 64};  // tiny model, the full run's batch sizes (so the same report keys)
    p.python_batches = {64};
    p.train_warmup = p.python_warmup = 1;
    p.train_steps = p.python_steps = 1;
    p.sgemm_seconds = 0.02;
    p.sgemm_shapes = {{256, 256, 256}};
    p.beam_images = p.python_beam_images = 4;
    p.beams = {5};
    p.beam_max_len = 5;
    p.prepare_images = 8;
    p.prepare_batch = 4;
    p.growth_sizes.clear();
    return p;
  }
  p.train_batches = {32, 64};
  p.sgemm_shapes = {{1024, 1024, 1024}, {2048, 2048, 2048}, {B * n, D, 512}, {B, 512 + D + 512, 4 * 512},
                    {B * 12, 512, 10000}};
  if (o.quick) {
    p.python_batches = {64};
    p.train_warmup = 1;
    p.train_steps = 2;
    p.python_warmup = 1;
    p.python_steps = 1;
    p.sgemm_seconds = 0.3;
    p.beam_images = 50;
    p.python_beam_images = 10;
    p.prepare_images = 64;
    p.growth_sizes.clear();
  } else {
    p.python_batches = {32, 64};
    p.sgemm_shapes.insert(p.sgemm_shapes.begin(), {{512, 512, 512}, {1536, 1536, 1536}});
    p.sgemm_shapes.push_back({B, 512, 10000});
  }
  return p;
}

Plan make_plan_with_overrides(const BenchOptions& o) {
  Plan p = make_plan(o);
  if (!o.growth_sizes.empty()) p.growth_sizes = o.growth_sizes;
  if (!o.batches.empty()) {
    p.train_batches = o.batches;
    p.python_batches = {o.batches.back()};
  }
  return p;
}

bool wants(const BenchOptions& o, const std::string& part, bool default_on) {
  if (o.parts.empty()) return default_on;
  return std::find(o.parts.begin(), o.parts.end(), part) != o.parts.end();
}

// ---------------------------------------------------------------------------------------------
// 1. sgemm

json measure_sgemm(const Plan& plan, const c10::Device& device, const Logger& log) {
  json shapes = json::array();
  double best = 0;
  auto opts = at::TensorOptions().dtype(at::kFloat).device(device);
  for (const auto& [M, K, N] : plan.sgemm_shapes) {
    at::Tensor a = at::rand({M, K}, opts), w = at::rand({N, K}, opts), out = at::empty({M, N}, opts);
    at::mm_out(out, a, w.t());  // the product a Linear layer computes: x W^T
    sync(device);
    const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(K) * static_cast<double>(N);
    // Repetitions per round so that three rounds take about plan.sgemm_seconds.
    auto t0 = Clock::now();
    at::mm_out(out, a, w.t());
    sync(device);
    double once = std::max(seconds_since(t0), 1e-6);
    int reps = std::max(1, static_cast<int>(plan.sgemm_seconds / 3 / once));
    double rate = 0;
    for (int round = 0; round < 3; ++round) {
      auto start = Clock::now();
      for (int r = 0; r < reps; ++r) at::mm_out(out, a, w.t());
      sync(device);
      rate = std::max(rate, flops * reps / seconds_since(start) / 1e9);
    }
    log("sgemm ", M, "x", K, " * ", K, "x", N, ": ", std::fixed, std::setprecision(1), rate, " GFLOP/s");
    shapes.push_back({{"m", M}, {"k", K}, {"n", N}, {"gflops", rate}});
    best = std::max(best, rate);
  }
  return {{"gflops", best}, {"shapes", shapes}};
}

// ---------------------------------------------------------------------------------------------
// 2. satcap's training step

struct Batch {
  at::Tensor captions, lengths;  // [B, T] int64, [B] int64
  std::vector<int64_t> words;
  int64_t tokens = 0;  // predicted tokens: words + <end>
};

Batch make_batch(int64_t index, int64_t batch, int64_t vocab, const c10::Device& device) {
  Batch b;
  b.words = bench_caption_lengths(index, batch);
  // Longest first, as satcap train's batches come (the Python scripts sort their own).
  std::stable_sort(b.words.begin(), b.words.end(), std::greater<int64_t>());
  int64_t longest = *std::max_element(b.words.begin(), b.words.end());
  at::Tensor caps = at::zeros({batch, longest + 2}, at::kLong);
  at::Tensor lengths = at::empty({batch}, at::kLong);
  auto c = caps.accessor<int64_t, 2>();
  auto len = lengths.accessor<int64_t, 1>();
  at::Tensor ids = at::randint(4, vocab, {batch, longest}, at::kLong);
  auto r = ids.accessor<int64_t, 2>();
  for (int64_t i = 0; i < batch; ++i) {
    const int64_t w = b.words[static_cast<size_t>(i)];
    c[i][0] = 1;  // <start>
    for (int64_t j = 0; j < w; ++j) c[i][j + 1] = r[i][j];
    c[i][w + 1] = 2;  // <end>
    len[i] = w + 2;
    b.tokens += w + 1;
  }
  b.captions = caps.to(device);
  b.lengths = lengths.to(device);
  return b;
}

json measure_training(const DecoderOptions& shape, int64_t batch, const Plan& plan, const c10::Device& device,
                      Precision precision, const std::string& trace) {
  at::manual_seed(1);
  Decoder decoder(shape);
  decoder->to(device);
  decoder->train();
  torch::optim::Adam adam(decoder->parameters(), torch::optim::AdamOptions(4e-4));
  int64_t parameters = 0;
  for (const auto& p : decoder->parameters()) parameters += p.numel();
  at::Tensor features = at::rand({batch, shape.regions, shape.feature_dim}, at::TensorOptions().device(device));

  LossScaler scaler(precision == Precision::fp16);
  const auto params = decoder->parameters();
  auto train_step = [&](const Batch& b) {  // as satcap train runs it (lib/src/trainer.cpp)
    LossTerms loss = training_loss(decoder, features, b.captions, b.lengths, precision, device);
    clear_grads(adam);
    scaler.scaled(loss.total).backward();
    if (scaler.unscale_and_update(params)) adam_step(adam);
    return loss.nll.item<double>();
  };
  for (int i = 0; i < plan.train_warmup; ++i) train_step(make_batch(i, batch, shape.vocab_size, device));
  std::vector<Batch> batches;
  std::vector<int64_t> words;
  int64_t tokens = 0;
  for (int i = plan.train_warmup; i < plan.train_warmup + plan.train_steps; ++i) {
    batches.push_back(make_batch(i, batch, shape.vocab_size, device));
    words.insert(words.end(), batches.back().words.begin(), batches.back().words.end());
    tokens += batches.back().tokens;
  }
  sync(device);
  double nll = 0;
  const double cpu0 = process_cpu_seconds();
  std::unique_ptr<torch::autograd::profiler::RecordProfile> profile;
  if (!trace.empty()) profile = std::make_unique<torch::autograd::profiler::RecordProfile>(trace);
  auto start = Clock::now();
  for (const auto& b : batches) nll = train_step(b);
  sync(device);
  double seconds = seconds_since(start);
  profile.reset();  // writes the trace (outside the timing it disturbs anyway)
  const double cpu_seconds = process_cpu_seconds() - cpu0;
  auto terms = training_flops(shape, words, parameters);
  // Adam runs once per step; the count above holds it once for all the captions.
  double flops = total_flops(terms) + 12.0 * static_cast<double>(parameters) * (plan.train_steps - 1);
  double gflops = flops / seconds / 1e9;
  json term_list = json::array();
  for (const auto& t : terms) {
    term_list.push_back({{"term", t.name}, {"forward_gflop", t.forward / 1e9}, {"backward_factor", t.backward_factor}});
  }
  return {{"batch", batch},
          {"steps", plan.train_steps},
          {"words", tokens},
          {"seconds", seconds},
          {"cpu_seconds", cpu_seconds},
          {"words_per_s", tokens / seconds},
          {"words_per_cpu_s", tokens / cpu_seconds},
          {"seconds_per_step", seconds / plan.train_steps},
          {"gflop", flops / 1e9},
          {"gflops", gflops},
          {"parameters", parameters},
          {"last_nll", nll},
          {"precision", precision_name(precision)},
          {"skipped_steps", scaler.skipped()},
          {"flop_terms", term_list}};
}

// Two measurements of the same step as one: words, seconds and FLOPs summed, rates recomputed.
// The bench times satcap before and after the Python runs it is compared with, so that a shared
// machine's drift over those minutes falls on both sides of the ratio.
json combine_training(const json& a, const json& b) {
  json m = a;
  const double words = a["words"].get<double>() + b["words"].get<double>();
  const double seconds = a["seconds"].get<double>() + b["seconds"].get<double>();
  const double cpu = a["cpu_seconds"].get<double>() + b["cpu_seconds"].get<double>();
  const double gflop = a["gflop"].get<double>() + b["gflop"].get<double>();
  m["steps"] = a["steps"].get<int64_t>() + b["steps"].get<int64_t>();
  m["words"] = words;
  m["seconds"] = seconds;
  m["cpu_seconds"] = cpu;
  m["words_per_s"] = words / seconds;
  m["words_per_cpu_s"] = words / cpu;
  m["seconds_per_step"] = seconds / m["steps"].get<double>();
  m["gflop"] = gflop;
  m["gflops"] = gflop / seconds;
  m["last_nll"] = b["last_nll"];
  m["parts_words_per_s"] = {a["words_per_s"], b["words_per_s"]};  // before and after the Python runs
  return m;
}

// ---------------------------------------------------------------------------------------------
// 3. the Python scripts

struct Python {
  std::string interpreter, scripts_dir, error;  // error: why it cannot run
  bool ok() const { return error.empty(); }
};

Python find_python(const BenchOptions& o) {
  Python py;
  py.interpreter = o.python;
  py.scripts_dir = o.scripts_dir.empty() ? (fs::path(SATCAP_SOURCE_DIR) / "tools" / "bench").string() : o.scripts_dir;
  if (!fs::exists(py.interpreter)) {
    py.error = py.interpreter + " not found (install python3 and python3-torch: apt-get install python3-torch)";
    return py;
  }
  if (!fs::exists(fs::path(py.scripts_dir) / "train_common.py")) {
    py.error = py.scripts_dir + "/train_common.py not found (the source tree's tools/bench)";
    return py;
  }
  // find_spec only locates the package (fast); the scripts report torch.__version__ themselves.
  ChildRun r = run_child({py.interpreter, "-c",
                          "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('torch') else 1)"});
  if (r.exit_code != 0) {
    py.error = py.interpreter + " has no torch module (install Debian's python3-torch)";
  }
  return py;
}

// Runs one script and returns its JSON line, or {"error": ...}.
json run_script(const Python& py, const std::string& script, std::vector<std::string> args, const DecoderOptions& s,
                int threads, const std::string& device) {
  std::vector<std::string> argv = {py.interpreter, (fs::path(py.scripts_dir) / script).string(),
                                   "--threads", std::to_string(threads), "--device", device,
                                   "--regions", std::to_string(s.regions), "--encoder-dim", std::to_string(s.feature_dim),
                                   "--attention-dim", std::to_string(s.attention_dim), "--embed-dim",
                                   std::to_string(s.embed_dim), "--decoder-dim", std::to_string(s.hidden_dim),
                                   "--vocab", std::to_string(s.vocab_size)};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildRun r = run_child(argv, py.scripts_dir);
  if (r.exit_code != 0) {
    return {{"error", script + " exited with " + std::to_string(r.exit_code) + ": " + last_lines(r.err, 3)}};
  }
  std::string line = last_lines(r.out, 2);
  try {
    json j = json::parse(line);
    j["max_rss_mib"] = static_cast<double>(r.max_rss_kib) / 1024.0;
    return j;
  } catch (const std::exception&) {
    return {{"error", script + " printed no JSON line: " + line}};
  }
}

// ---------------------------------------------------------------------------------------------
// 4. beam search: satcap's batched search vs the per-image Python one

json measure_beam(const DecoderOptions& shape, int64_t beam, const Plan& plan, const c10::Device& device) {
  at::manual_seed(2);
  Decoder decoder(shape);
  decoder->to(device);
  decoder->eval();
  at::Tensor features = at::rand({plan.beam_images, shape.regions, shape.feature_dim}, at::TensorOptions().device(device));
  SearchTokens tokens;
  tokens.banned = {0, 1};  // <pad>, <start>
  SearchOptions so;
  so.beam_size = static_cast<int>(beam);
  so.max_length = static_cast<int>(plan.beam_max_len);
  search(decoder, features.slice(0, 0, std::min<int64_t>(8, plan.beam_images)), tokens, so);  // warm-up
  sync(device);
  const double cpu0 = process_cpu_seconds();
  auto start = Clock::now();
  auto result = search(decoder, features, tokens, so);
  sync(device);
  double seconds = seconds_since(start);
  const double cpu_seconds = process_cpu_seconds() - cpu0;
  double words = 0;
  for (const auto& hyps : result) words += hyps.empty() ? 0 : static_cast<double>(hyps.front().tokens.size());
  return {{"beam", beam},
          {"images", plan.beam_images},
          {"max_len", plan.beam_max_len},
          {"seconds", seconds},
          {"cpu_seconds", cpu_seconds},
          {"captions_per_s", static_cast<double>(plan.beam_images) / seconds},
          {"captions_per_cpu_s", static_cast<double>(plan.beam_images) / cpu_seconds},
          {"mean_words", words / static_cast<double>(plan.beam_images)}};
}

// ---------------------------------------------------------------------------------------------
// 5. the encoder pipeline: prepare (decode, resize, forward, store) vs the bare network forward

const char* kPhotoDir = "/usr/share/darknet/data";

// A COCO captions dataset of `count` real photographs (copies of darknet's sample JPEGs, 500-800
// pixels wide) in `dir`: what prepare meets on COCO (JPEG decoding and resizing included).
// Returns false when the photographs are missing.
bool make_photo_dataset(const fs::path& dir, int64_t count) {
  std::vector<fs::path> photos;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(kPhotoDir, ec)) {
    if (e.path().extension() == ".jpg") photos.push_back(e.path());
  }
  if (photos.empty()) return false;
  std::sort(photos.begin(), photos.end());
  fs::create_directories(dir);
  json images = json::array(), annotations = json::array();
  for (int64_t i = 0; i < count; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "photo%05lld.jpg", static_cast<long long>(i));
    fs::copy_file(photos[static_cast<size_t>(i) % photos.size()], dir / name, fs::copy_options::overwrite_existing);
    images.push_back({{"id", i + 1}, {"file_name", name}});
    annotations.push_back({{"id", i + 1}, {"image_id", i + 1}, {"caption", "a photograph"}});
  }
  std::ofstream(dir / "captions.json") << json{{"images", images}, {"annotations", annotations}}.dump();
  return true;
}

json measure_prepare(const Plan& plan, const c10::Device& device, const fs::path& work, const Logger& log) {
  const fs::path data_dir = work / "prepare-photos";
  if (!make_photo_dataset(data_dir, plan.prepare_images)) {
    return {{"error", std::string("no sample photographs in ") + kPhotoDir + " (apt-get install darknet)"}};
  }
  EncoderOptions eo;  // the default encoder
  std::unique_ptr<Encoder> encoder;
  try {
    encoder = load_encoder(eo);
  } catch (const Error& e) {
    return {{"error", std::string("encoder: ") + e.what()}};
  }
  encoder->to(device);
  encoder->train(false);
  Dataset dataset = load_dataset(data_dir.string());
  const int64_t B = plan.prepare_batch, N = static_cast<int64_t>(dataset.images.size());

  // The network's input shape, from one preprocessed image.
  at::Tensor one = encoder->preprocess({read_image_rgb(dataset.images.front().path)});
  auto input_shape = one.sizes().vec();
  input_shape[0] = B;
  at::Tensor x = at::rand(input_shape, one.options());
  {
    at::NoGradGuard no_grad;
    encoder->forward(x);  // warm-up
  }
  sync(device);

  // prepare: the whole pipeline into a fresh store.
  PrepareOptions po;
  po.batch_size = static_cast<int>(B);
  const fs::path store = work / "prepare-store";
  fs::remove_all(store);
  auto start = Clock::now();
  PrepareSummary summary = prepare_features(dataset, *encoder, store.string(), po);
  sync(device);
  const double prepare_seconds = seconds_since(start);

  // The bare forward over as many images, same batch size, same (no-grad) mode as encode().
  start = Clock::now();
  {
    at::NoGradGuard no_grad;
    for (int64_t done = 0; done < N; done += B) {
      at::Tensor input = done + B <= N ? x : x.slice(0, 0, N - done);
      encoder->forward(input);
    }
  }
  sync(device);
  const double forward_seconds = seconds_since(start);
  fs::remove_all(store);

  // Reading, decoding and preprocessing alone, prepare's own reading stage batch by batch on as
  // many threads as its readers: the CPU work prepare does beside the forward. On a CPU device both
  // share the same cores, so prepare cannot beat forward + decode time (the bound reported below),
  // however they overlap.
  const ImageLimits limits = encoder->read_limits(po.limits);
  const int64_t readers = std::max<int64_t>(1, available_cores());
  std::vector<fs::path> paths;
  for (const auto& image : dataset.images) paths.push_back(image.path);
  start = Clock::now();
  for (int64_t done = 0; done < N; done += B) {
    std::vector<std::size_t> rows;
    for (int64_t i = done; i < std::min(N, done + B); ++i) rows.push_back(static_cast<std::size_t>(i));
    decode_image_batch(rows, paths, limits, *encoder, static_cast<std::size_t>(readers));
  }
  const double decode_seconds = seconds_since(start);
  const double prepare_rate = static_cast<double>(summary.encoded) / prepare_seconds;
  const double forward_rate = static_cast<double>(N) / forward_seconds;
  const double decode_rate = static_cast<double>(N) / decode_seconds;
  // Forward and decoding back to back on the same cores: images / (forward time + decode time).
  const double cpu_bound = device.is_cpu() ? decode_rate / (decode_rate + forward_rate) : 1.0;
  log("  prepare ", std::fixed, std::setprecision(1), prepare_rate, " images/s, bare forward ", forward_rate,
      " images/s (", encoder->identity(), ")");
  return {{"encoder", encoder->identity()},
          {"images", N},
          {"batch", B},
          {"input", input_shape},
          {"source", std::string(kPhotoDir) + " JPEGs, copied"},
          {"prepare_seconds", prepare_seconds},
          {"prepare_images_per_s", prepare_rate},
          {"forward_seconds", forward_seconds},
          {"forward_images_per_s", forward_rate},
          {"decode_threads", readers},
          {"decode_seconds", decode_seconds},
          {"decode_images_per_s", decode_rate},
          {"bound_vs_forward", cpu_bound},
          {"failed", summary.failed}};
}

// ---------------------------------------------------------------------------------------------
// Report helpers

double number_or(const json& j, const char* key, double fallback = 0) {
  return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : fallback;
}

json ratio(double a, double b) {
  if (!(a > 0) || !(b > 0) || !std::isfinite(a) || !std::isfinite(b)) return nullptr;
  return a / b;
}

void add_target(json& report, const std::string& key, const std::string& label, double target, const char* unit,
                bool at_least = true) {
  json t{{"key", key}, {"label", label}, {"target", target}, {"unit", unit}, {"at_least", at_least}};
  const json& v = report.contains(key) ? report[key] : json(nullptr);
  t["value"] = v;
  t["met"] = v.is_number() ? json(at_least ? v.get<double>() >= target : v.get<double>() <= target) : json(nullptr);
  report["targets"].push_back(t);
}

// ---------------------------------------------------------------------------------------------
// 6. growth: time per image and peak memory of prepare and one training epoch, 2,000 vs 20,000 images

std::string self_executable() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

json measure_growth(const Plan& plan, const BenchOptions& o, int threads, const fs::path& work, const Logger& log) {
  const std::string bin = o.satcap_binary.empty() ? self_executable() : o.satcap_binary;
  if (bin.empty() || !fs::exists(bin)) return {{"error", "the satcap binary was not found: " + bin}};
  json runs = json::array();
  const std::vector<std::string> common = {"--threads", std::to_string(threads), "--device", o.device, "--quiet"};
  auto run_step = [&](std::vector<std::string> args, json& run, const std::string& what) -> std::optional<ChildRun> {
    std::vector<std::string> argv = {bin};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), common.begin(), common.end());
    ChildRun r = run_child(argv);
    if (r.exit_code != 0) {
      run["error"] = what + " exited with " + std::to_string(r.exit_code) + ": " + last_lines(r.err, 3);
      log("  ", run["error"].get<std::string>());
      return std::nullopt;
    }
    return r;
  };
  // A step's peak resident set and its largest heap and file-backed parts, in MiB.
  auto put_memory = [](json& run, const std::string& step, const ChildRun& r) {
    run[step + "_peak_rss_mib"] = static_cast<double>(r.max_rss_kib) / 1024.0;
    run[step + "_max_rss_anon_mib"] = static_cast<double>(r.max_rss_anon_kib) / 1024.0;
    run[step + "_max_rss_file_mib"] = static_cast<double>(r.max_rss_file_kib) / 1024.0;
  };
  for (int64_t n : plan.growth_sizes) {
    json run{{"images", n}};
    const fs::path dir = work / ("growth-" + std::to_string(n));
    fs::remove_all(dir);
    log("growth: ", n, " scenes: generating ...");
    auto gen = run_step({"scenes", "--out", (dir / "data").string(), "--images", std::to_string(n)}, run, "satcap scenes");
    if (gen) {
      run["scenes_seconds"] = gen->seconds;
      log("growth: ", n, " scenes: prepare ...");
      auto prep = run_step({"prepare", "--data", (dir / "data").string(), "--out", (dir / "features").string()}, run,
                           "satcap prepare");
      if (prep) {
        run["prepare_seconds"] = prep->seconds;
        run["prepare_ms_per_image"] = prep->seconds * 1000 / static_cast<double>(n);
        put_memory(run, "prepare", *prep);
        log("growth: ", n, " scenes: one training epoch ...");
        // One epoch; validation on a fixed 50 images so that it costs the same at both sizes. The
        // decoder has the scenes model's widths (tools/scenes_training.json), not the paper's 512:
        // growth measures how time and memory scale with the data, and the 20,000-image epoch
        // (80,000 captions) at 512 would take most of an hour on two cores.
        auto train = run_step({"train", "--data", (dir / "data").string(), "--features", (dir / "features").string(),
                               "--out", (dir / "run").string(), "--epochs", "1", "--val-max-images", "50",
                               "--embed-dim", "128", "--attention-dim", "128", "--hidden-dim", "256",
                               "--checkpoint-every", "0", "--no-eval-test"},
                              run, "satcap train");
        if (train) {
          const double train_images = static_cast<double>(n) * 0.8;  // the scenes' train split: 80%
          run["train_seconds"] = train->seconds;
          run["train_ms_per_image"] = train->seconds * 1000 / train_images;
          put_memory(run, "train", *train);
        }
      }
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
    runs.push_back(run);
  }
  json g{{"runs", runs}, {"binary", bin}};
  if (runs.size() >= 2) {
    const json& a = runs.front();
    const json& b = runs.back();
    g["prepare_time_per_image_growth"] = ratio(number_or(b, "prepare_ms_per_image"), number_or(a, "prepare_ms_per_image"));
    g["train_time_per_image_growth"] = ratio(number_or(b, "train_ms_per_image"), number_or(a, "train_ms_per_image"));
    g["prepare_peak_rss_growth"] = ratio(number_or(b, "prepare_peak_rss_mib"), number_or(a, "prepare_peak_rss_mib"));
    g["train_peak_rss_growth"] = ratio(number_or(b, "train_peak_rss_mib"), number_or(a, "train_peak_rss_mib"));
  }
  return g;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

json run_bench(const BenchOptions& options, std::ostream* log_stream) {
  options.validate();
  const Logger log{log_stream};
  const c10::Device device = parse_device(options.device);
  const Precision precision = options.precision;
  check_precision(precision, device);
  const Plan plan = make_plan_with_overrides(options);
  const int threads = at::get_num_threads();
  auto bench_start = Clock::now();
  // Scratch space for generated datasets and stores.
  fs::path work = options.work_dir;
  const bool own_work = work.empty();
  if (own_work) work = fs::temp_directory_path() / ("satcap-bench-" + std::to_string(getpid()));
  fs::create_directories(work);
  struct Cleanup {
    fs::path dir;
    bool active;
    ~Cleanup() {
      std::error_code ec;
      if (active) fs::remove_all(dir, ec);
    }
  } cleanup{work, own_work};

  json report;
  report["format"] = "satcap-bench";
  report["format_version"] = 1;
  report["mode"] = plan.mode;
  json blas = blas_info();
  report["machine"] = {{"cpu", cpu_model()},        {"cores", available_cores()},
                       {"threads", threads},        {"blas", blas["summary"]},
                       {"blas_detail", blas},       {"libtorch", TORCH_VERSION},
                       {"device", device.str()},    {"satcap", SATCAP_VERSION}};
  report["precision"] = precision_name(precision);
  report["targets"] = json::array();
  report["train_batches"] = plan.train_batches;
  log("mode ", plan.mode, ", ", threads, " thread(s), device ", device.str(), ", precision ", precision_name(precision),
      ", BLAS ", blas["summary"].get<std::string>());

  // 1. sgemm peak
  double peak = 0;
  if (wants(options, "sgemm", true)) {
    json s = measure_sgemm(plan, device, log);
    peak = s["gflops"].get<double>();
    report["sgemm_gflops"] = peak;
    report["sgemm"] = s;
  }

  // 2. satcap's training step, with the CPU allocator `satcap train` uses (satcap/runtime/cpu_allocator.h);
  // the beam search and the encoder below run with LibTorch's, as `caption` and `prepare` do.
  install_cpu_allocator();
  const bool run_train = wants(options, "train", true);
  const bool run_python = wants(options, "python", true);
  Python py;
  if (run_python || wants(options, "beam", true)) {
    py = find_python(options);
    report["machine"]["python"] = py.interpreter;
    report["machine"]["python_torch"] = nullptr;  // filled from the first script's output
    if (!py.ok()) {
      report["python_error"] = py.error;
      log("Python comparisons skipped: ", py.error);
    }
  }
  for (bool hard : {false, true}) {
    if (!runs_attention(options.attention, hard ? AttentionKind::hard : AttentionKind::soft)) continue;
    const std::string sfx = hard ? "_hard" : "";
    DecoderOptions shape = plan.shape;
    shape.attention = hard ? AttentionKind::hard : AttentionKind::soft;
    json section;
    auto record = [&](int64_t b, const json& m) {
      const std::string bs = std::to_string(b);
      report["train_words_per_s_b" + bs + sfx] = m["words_per_s"];
      report["train_gflops_b" + bs + sfx] = m["gflops"];
      section["satcap_b" + bs] = m;
    };
    if (run_train) {
      for (int64_t b : plan.train_batches) {
        log("training step, ", hard ? "hard" : "soft", " attention, batch ", b, " ...");
        json m = measure_training(shape, b, plan, device, precision, options.trace);
        log("  satcap: ", std::fixed, std::setprecision(0), m["words_per_s"].get<double>(), " words/s, ",
            std::setprecision(1), m["gflops"].get<double>(), " GFLOP/s");
        record(b, m);
      }
    }
    const bool bracket = run_train && run_python && py.ok();
    if (run_python && py.ok()) {
      for (int64_t b : plan.python_batches) {
        const std::string bs = std::to_string(b);
        for (const char* script : {"train_common", "train_hoisted"}) {
          log("training step in Python (", script, ".py), ", hard ? "hard" : "soft", " attention, batch ", b, " ...");
          json m = run_script(py, std::string(script) + ".py",
                              {"--batch", bs, "--warmup", std::to_string(plan.python_warmup), "--steps",
                               std::to_string(plan.python_steps), "--attention", hard ? "hard" : "soft",
                               "--precision", precision_name(precision)},
                              shape, threads, options.device);
          if (m.contains("error")) {
            log("  ", m["error"].get<std::string>());
          } else {
            report["machine"]["python_torch"] = m.value("torch", "");
            log("  Python: ", std::fixed, std::setprecision(0), m["words_per_s"].get<double>(), " words/s");
          }
          const std::string which = std::string(script) == "train_common" ? "common" : "hoisted";
          section[which + "_b" + bs] = m;
          report["python_" + which + "_words_per_s_b" + bs + sfx] = m.contains("error") ? json(nullptr) : m["words_per_s"];
        }
        if (bracket && section.contains("satcap_b" + bs)) {  // satcap again, after the Python runs
          log("training step, ", hard ? "hard" : "soft", " attention, batch ", b, ", again after Python ...");
          json again = measure_training(shape, b, plan, device, precision, "");
          log("  satcap: ", std::fixed, std::setprecision(0), again["words_per_s"].get<double>(), " words/s");
          record(b, combine_training(section["satcap_b" + bs], again));
        }
      }
    }
    // Ratios at the largest batch both sides ran, and per batch.
    for (int64_t b : plan.python_batches) {
      const std::string bs = std::to_string(b);
      double mine = number_or(report, ("train_words_per_s_b" + bs + sfx).c_str());
      for (const char* which : {"common", "hoisted"}) {
        json r = ratio(mine, number_or(report, ("python_" + std::string(which) + "_words_per_s_b" + bs + sfx).c_str()));
        report["train_vs_" + std::string(which) + "_b" + bs + sfx] = r;
        if (b == plan.python_batches.back()) report["train_vs_" + std::string(which) + sfx] = r;
      }
    }
    report["train" + sfx] = section;
  }

  // The peak again, after the training measurements: on a shared machine one measurement can catch
  // a slow phase, and the peak is the best rate reached. The fractions of peak, computed here once,
  // use the better one.
  if (peak > 0 && run_train && plan.mode != "smoke") {
    json again = measure_sgemm(plan, device, log);
    report["sgemm_gflops_before_training"] = peak;
    report["sgemm_gflops_after_training"] = again["gflops"];
    report["sgemm_after_training"] = again;
    peak = std::max(peak, again["gflops"].get<double>());
    report["sgemm_gflops"] = peak;
  }
  if (peak > 0) {
    for (const std::string sfx : {"", "_hard"}) {
      if (!report.contains("train" + sfx)) continue;
      const std::string mine = "satcap_b";  // satcap's measurements, not Python's
      for (auto& [key, m] : report["train" + sfx].items()) {
        if (key.rfind(mine, 0) != 0) continue;
        m["fraction_of_peak"] = m["gflops"].get<double>() / peak;
        report["train_fraction_of_peak_b" + key.substr(mine.size()) + sfx] = m["fraction_of_peak"];
      }
    }
  }

  uninstall_cpu_allocator();

  // 4. beam search
  if (wants(options, "beam", true)) {
    json section;
    std::map<int64_t, double> per_image;
    for (int64_t k : plan.beams) {
      const DecoderOptions& shape = plan.shape;
      log("beam search, beam ", k, ", ", plan.beam_images, " images ...");
      json m = measure_beam(shape, k, plan, device);
      log("  satcap: ", std::fixed, std::setprecision(1), m["captions_per_s"].get<double>(), " captions/s");
      section["satcap_beam" + std::to_string(k)] = m;
      report["beam" + std::to_string(k) + "_captions_per_s"] = m["captions_per_s"];
      if (py.ok()) {
        log("beam search in Python, one image at a time (beam_per_image.py), beam ", k, ", ", plan.python_beam_images,
            " images ...");
        json p = run_script(py, "beam_per_image.py",
                            {"--images", std::to_string(plan.python_beam_images), "--beam", std::to_string(k),
                             "--max-len", std::to_string(plan.beam_max_len)},
                            shape, threads, options.device);
        section["per_image_beam" + std::to_string(k)] = p;
        if (p.contains("error")) {
          log("  ", p["error"].get<std::string>());
        } else {
          log("  Python: ", std::fixed, std::setprecision(2), p["captions_per_s"].get<double>(), " captions/s");
          report["machine"]["python_torch"] = p.value("torch", "");
          per_image[k] = p["captions_per_s"].get<double>();
        }
      }
      report["beam" + std::to_string(k) + "_per_image_captions_per_s"] = per_image.count(k) ? json(per_image[k]) : json(nullptr);
      report["beam" + std::to_string(k) + "_vs_per_image"] =
          ratio(m["captions_per_s"].get<double>(), per_image.count(k) ? per_image[k] : 0.0);
    }
    // Hard attention decodes with the expected context (the original code's default): the same
    // work as soft attention, measured again at beam 5 against the same per-image Python number.
    if (std::find(plan.beams.begin(), plan.beams.end(), 5) != plan.beams.end()) {
      DecoderOptions shape = plan.shape;
      shape.attention = AttentionKind::hard;
      log("beam search, hard attention (expected context), beam 5 ...");
      json m = measure_beam(shape, 5, plan, device);
      section["satcap_beam5_hard"] = m;
      report["beam5_captions_per_s_hard"] = m["captions_per_s"];
      report["beam5_vs_per_image_hard"] = ratio(m["captions_per_s"].get<double>(), per_image.count(5) ? per_image[5] : 0.0);
    }
    section["model"] = plan.mode == "smoke" ? "smoke (tiny)" : "COCO scale: n 196, D 2048, m 512, A 512, H 512, V 10000";
    section["note"] = "random weights and features: no hypothesis ends early, every caption runs max_len steps on both sides";
    report["beam"] = section;
  }

  // 5. prepare vs the bare encoder forward
  if (wants(options, "prepare", true)) {
    log("encoder: prepare vs bare forward, ", plan.prepare_images, " photographs, batch ", plan.prepare_batch, " ...");
    json m = measure_prepare(plan, device, work, log);
    if (m.contains("error")) log("  ", m["error"].get<std::string>());
    report["prepare"] = m;
    report["prepare_images_per_s"] = m.contains("error") ? json(nullptr) : m["prepare_images_per_s"];
    report["forward_images_per_s"] = m.contains("error") ? json(nullptr) : m["forward_images_per_s"];
    report["prepare_vs_forward"] =
        ratio(number_or(m, "prepare_images_per_s"), number_or(m, "forward_images_per_s"));
    report["prepare_bound_vs_forward"] = m.contains("bound_vs_forward") ? m["bound_vs_forward"] : json(nullptr);
  }

  // 6. growth (full mode, or when named in --only)
  if (wants(options, "growth", plan.mode == "full") && !plan.growth_sizes.empty()) {
    json g = measure_growth(plan, options, threads, work, log);
    report["growth"] = g;
    for (const char* key : {"prepare_time_per_image_growth", "train_time_per_image_growth", "prepare_peak_rss_growth",
                            "train_peak_rss_growth"}) {
      report[std::string("growth_") + key] = g.contains(key) ? g[key] : json(nullptr);
    }
  }

  report["seconds"] = seconds_since(bench_start);

  // Targets (printed, never enforced).
  for (const std::string sfx : {"", "_hard"}) {
    const std::string att = sfx.empty() ? "soft" : "hard";
    add_target(report, "train_vs_common" + sfx, "training words/s over the tutorial's PyTorch (" + att + ")", 6.0, "x");
    add_target(report, "train_vs_hoisted" + sfx, "training words/s over PyTorch with the projection hoisted (" + att + ")", 1.3, "x");
    add_target(report, "train_fraction_of_peak_b64" + sfx, "training FLOP rate at batch 64 / sgemm peak (" + att + ")", 0.5, "");
    add_target(report, "beam5_vs_per_image" + sfx, "beam 5 captions/s over per-image Python (" + att + ")", 5.0, "x");
  }
  add_target(report, "prepare_vs_forward", "prepare images/s over the bare encoder forward", 0.9, "x");
  // Growth targets are upper bounds: value <= target.
  if (report.contains("growth")) {
    add_target(report, "growth_prepare_time_per_image_growth", "prepare time per image, largest / smallest dataset", 1.15, "x", false);
    add_target(report, "growth_train_time_per_image_growth", "training time per image, largest / smallest dataset", 1.15, "x", false);
    add_target(report, "growth_train_peak_rss_growth", "training peak RSS, largest / smallest dataset", 1.10, "x", false);
  }
  return report;
}

// ---------------------------------------------------------------------------------------------

std::string format_bench_report(const json& r) {
  std::ostringstream out;
  auto num = [](const json& v, int precision) {
    if (!v.is_number()) return std::string("n/a");
    std::ostringstream s;
    s << std::fixed << std::setprecision(precision) << v.get<double>();
    return s.str();
  };
  auto get = [&](const std::string& key) { return r.contains(key) ? r[key] : json(nullptr); };
  const json& m = r["machine"];
  out << "satcap bench (" << r.value("mode", "") << ")\n";
  out << "  machine   " << m.value("cpu", "") << ", " << m.value("cores", 0) << " core(s), " << m.value("threads", 0)
      << " thread(s), device " << m.value("device", "") << "\n";
  out << "  LibTorch  " << m.value("libtorch", "") << "; Python torch "
      << (m.contains("python_torch") && m["python_torch"].is_string() ? m["python_torch"].get<std::string>() : "n/a")
      << "\n";
  out << "  BLAS      " << m.value("blas", "") << "\n";
  if (r.contains("python_error")) out << "  Python    not run: " << r["python_error"].get<std::string>() << "\n";
  out << "\n";
  if (r.contains("sgemm")) {
    out << "sgemm (at::mm, x W^T)                       GFLOP/s\n";
    for (const auto& s : r["sgemm"]["shapes"]) {
      std::ostringstream shape;
      shape << s["m"].get<int64_t>() << "x" << s["k"].get<int64_t>() << " * " << s["k"].get<int64_t>() << "x"
            << s["n"].get<int64_t>();
      out << "  " << std::left << std::setw(42) << shape.str() << std::right << std::setw(8) << num(s["gflops"], 1)
          << "\n";
    }
    if (r.contains("sgemm_gflops_after_training"))
      out << "  " << std::left << std::setw(42) << "best again, after the training steps" << std::right << std::setw(8)
          << num(get("sgemm_gflops_after_training"), 1) << "\n";
    out << "  " << std::left << std::setw(42) << "peak" << std::right << std::setw(8) << num(get("sgemm_gflops"), 1)
        << "\n\n";
  }
  for (const std::string sfx : {"", "_hard"}) {
    if (!r.contains("train" + sfx)) continue;
    const std::string precision = r.value("precision", std::string("fp32"));
    out << "training step, " << (sfx.empty() ? "soft" : "hard")
        << " attention (words/s; words = predicted tokens, <end> included)"
        << (precision == "fp32" ? std::string() : ", " + precision + " autocast, of the fp32 peak") << "\n";
    out << "  batch   satcap   GFLOP/s  of peak   tutorial  hoisted   vs tutorial  vs hoisted\n";
    for (const auto& bj : r.value("train_batches", json::array())) {
      const int64_t b = bj.get<int64_t>();
      const std::string bs = std::to_string(b);
      if (!r.contains("train_words_per_s_b" + bs + sfx)) continue;
      out << "  " << std::left << std::setw(6) << b << std::right << std::setw(8)
          << num(get("train_words_per_s_b" + bs + sfx), 0) << std::setw(10) << num(get("train_gflops_b" + bs + sfx), 1)
          << std::setw(9) << num(get("train_fraction_of_peak_b" + bs + sfx), 2) << std::setw(11)
          << num(get("python_common_words_per_s_b" + bs + sfx), 0) << std::setw(9)
          << num(get("python_hoisted_words_per_s_b" + bs + sfx), 0) << std::setw(13)
          << num(get("train_vs_common_b" + bs + sfx), 2) << std::setw(12) << num(get("train_vs_hoisted_b" + bs + sfx), 2)
          << "\n";
    }
    out << "\n";
  }
  if (r.contains("beam")) {
    out << "beam search (captions/s; " << r["beam"].value("model", "") << ")\n";
    out << "  beam   satcap batched   Python per image   ratio\n";
    for (int k : {1, 3, 5}) {
      const std::string ks = "beam" + std::to_string(k);
      if (!r.contains(ks + "_captions_per_s")) continue;
      out << "  " << std::left << std::setw(7) << k << std::right << std::setw(14) << num(get(ks + "_captions_per_s"), 1)
          << std::setw(19) << num(get(ks + "_per_image_captions_per_s"), 2) << std::setw(8)
          << num(get(ks + "_vs_per_image"), 1) << "\n";
    }
    if (r.contains("beam5_captions_per_s_hard")) {
      out << "  " << std::left << std::setw(7) << "5 hard" << std::right << std::setw(14)
          << num(get("beam5_captions_per_s_hard"), 1) << std::setw(19) << num(get("beam5_per_image_captions_per_s"), 2)
          << std::setw(8) << num(get("beam5_vs_per_image_hard"), 1) << "\n";
    }
    out << "\n";
  }
  if (r.contains("prepare")) {
    const json& p = r["prepare"];
    out << "encoder (images/s)\n";
    if (p.contains("error")) {
      out << "  not run: " << p["error"].get<std::string>() << "\n\n";
    } else {
      out << "  prepare (decode, resize, forward, store)  " << std::setw(8) << num(p["prepare_images_per_s"], 1) << "\n"
          << "  bare forward, batch " << std::left << std::setw(21) << p["batch"].get<int64_t>() << std::right
          << std::setw(8) << num(p["forward_images_per_s"], 1) << "\n";
      if (p.contains("decode_images_per_s"))
        out << "  read, decode, preprocess alone, " << std::left << std::setw(10)
            << (std::to_string(p["decode_threads"].get<int64_t>()) + " thr.") << std::right << std::setw(8)
            << num(p["decode_images_per_s"], 1) << "\n"
            << "  prepare's bound here: forward + decode on the same cores " << num(p["bound_vs_forward"], 2)
            << "x the bare forward\n";
      out << "  (" << p["encoder"].get<std::string>() << ", " << p["images"].get<int64_t>() << " photographs)\n\n";
    }
  }
  if (r.contains("growth")) {
    const json& g = r["growth"];
    out << "growth (scenes dataset)\n";
    if (g.contains("error")) {
      out << "  not run: " << g["error"].get<std::string>() << "\n";
    } else {
      // heap / files: the largest anonymous and file-backed parts of training's resident set seen.
      out << "  images   prepare ms/image  prepare peak MiB   train ms/image  train peak MiB   heap   files\n";
      for (const auto& run : g.value("runs", json::array())) {
        out << "  " << std::left << std::setw(7) << run.value("images", 0) << std::right << std::setw(18)
            << num(run.value("prepare_ms_per_image", json(nullptr)), 2) << std::setw(18)
            << num(run.value("prepare_peak_rss_mib", json(nullptr)), 0) << std::setw(17)
            << num(run.value("train_ms_per_image", json(nullptr)), 2) << std::setw(16)
            << num(run.value("train_peak_rss_mib", json(nullptr)), 0) << std::setw(7)
            << num(run.value("train_max_rss_anon_mib", json(nullptr)), 0) << std::setw(8)
            << num(run.value("train_max_rss_file_mib", json(nullptr)), 0) << "\n";
        if (run.contains("error")) out << "    " << run["error"].get<std::string>() << "\n";
      }
    }
    out << "\n";
  }
  out << "targets (reported, not enforced)\n";
  for (const auto& t : r["targets"]) {
    std::string met = t["met"].is_boolean() ? (t["met"].get<bool>() ? "met" : "NOT met") : "not measured";
    // Two decimals, or three where two would print a missed target as equal to it (0.496 as 0.50).
    const bool missed = t["met"].is_boolean() && !t["met"].get<bool>();
    const int digits = missed && num(t["value"], 2) == num(t["target"], 2) ? 3 : 2;
    out << "  " << std::left << std::setw(72) << t["label"].get<std::string>() << std::right << std::setw(8)
        << num(t["value"], digits) << (t.value("at_least", true) ? " >= " : " <= ") << std::setw(4) << num(t["target"], 2) << t["unit"].get<std::string>() << "  "
        << met << "\n";
  }
  out << "\ntotal " << num(get("seconds"), 0) << " s\n";
  return out.str();
}

}  // namespace satcap
