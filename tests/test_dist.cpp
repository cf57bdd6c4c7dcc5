// Data-parallel training (satcap/dist, docs/distributed.md).
// In one process: a global batch cut into parts (what each process of a run trains on) gives the
// whole batch's loss, gradients, dropout masks, hard-attention samples and baseline; the batch is
// cut into parts of about equal work. With real processes (the satcap binary, Gloo over loopback):
// 2 processes end with the weights of 1 process on the same global batches, soft and hard; a killed
// worker stops the others within the bound, naming it, and the last checkpoint resumes with 1
// process; 2 processes in two network namespaces joined by a veth pair.
#include "testing.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <torch/serialize.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>
#include <vector>

#include "satcap/model/bundle.h"
#include "satcap/model/decoder.h"
#include "satcap/ops/dropout.h"
#include "satcap/train/batches.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace satcap;

namespace {

DecoderOptions tiny_decoder(AttentionKind kind) {
  DecoderOptions o;
  o.vocab_size = 9;
  o.feature_dim = 5;
  o.regions = 4;
  o.embed_dim = 6;
  o.attention_dim = 5;
  o.hidden_dim = 8;
  o.dropout = 0.5;  // keyed masks must follow the rows
  o.alpha_c = 1.0;
  o.attention = kind;
  o.semi_sampling_p = 0;  // hard: always the sampled path (REINFORCE, baseline)
  return o;
}

// Captions [B, T] (<start> 1, <end> 2, <pad> 0, words 3..V-1) of the given token lengths.
std::pair<at::Tensor, at::Tensor> captions_of(const std::vector<int64_t>& lengths, int64_t V) {
  const int64_t B = static_cast<int64_t>(lengths.size()), T = lengths.front();
  auto caps = at::zeros({B, T}, at::kLong);
  auto words = at::randint(3, V, {B, T}, at::kLong);
  for (int64_t b = 0; b < B; ++b) {
    caps[b][0] = 1;
    for (int64_t t = 1; t + 1 < lengths[static_cast<size_t>(b)]; ++t) caps[b][t] = words[b][t];
    caps[b][lengths[static_cast<size_t>(b)] - 1] = 2;
  }
  return {caps, at::tensor(lengths, at::kLong)};
}

struct StepResult {
  double total = 0;
  std::vector<at::Tensor> grads;
  at::Tensor baseline;
};

}  // namespace

TEST_CASE("dropout keyed by rows: keys 0..R-1 give the unkeyed mask, and a part's rows get the whole's",
          "[dist]") {
  auto x = at::randn({6, 10});
  at::manual_seed(3);
  auto whole = satcap::dropout(x, 0.5, true);
  at::manual_seed(3);
  auto keyed = satcap::dropout(x, 0.5, true, at::arange(6, at::kLong));
  CHECK(at::equal(whole, keyed));
  at::manual_seed(3);
  auto part = satcap::dropout(x.slice(0, 2, 5), 0.5, true, at::arange(2, 5, at::kLong));
  CHECK(at::equal(part, whole.slice(0, 2, 5)));
  at::manual_seed(3);
  auto shifted = satcap::dropout(x.slice(0, 2, 5), 0.5, true, at::arange(0, 3, at::kLong));
  CHECK_FALSE(at::equal(shifted, whole.slice(0, 2, 5)));  // the keys, not the position in x, decide
}

TEST_CASE("hard attention's draw is at::multinomial's own: argmax(alpha / q), q ~ Exp(1)", "[dist]") {
  // The decoder draws q for every row of the global batch and keeps its part's rows; one process
  // draws exactly what at::multinomial(alpha, 1) drew before data-parallel training existed.
  auto alpha = at::softmax(at::randn({7, 5}), 1);
  at::manual_seed(21);
  auto expected = at::multinomial(alpha, 1).squeeze(1);
  at::manual_seed(21);
  auto q = at::empty({7, 5}).exponential_(1);
  CHECK(at::equal((alpha / q).argmax(1), expected));
  at::manual_seed(21);
  auto part = (alpha.slice(0, 2, 6) / at::empty({7, 5}).exponential_(1).slice(0, 2, 6)).argmax(1);
  CHECK(at::equal(part, expected.slice(0, 2, 6)));
}

TEST_CASE("a global batch cut into parts gives the whole batch's loss, gradients and baseline", "[dist]") {
  for (auto kind : {AttentionKind::soft, AttentionKind::hard}) {
    DYNAMIC_SECTION((kind == AttentionKind::soft ? "soft" : "hard") << " attention") {
      at::manual_seed(17);
      Decoder dec(tiny_decoder(kind));
      dec->train();
      const std::vector<int64_t> lengths{9, 8, 8, 6, 5, 5, 3, 2};  // sorted longest first, as batches are
      const int64_t B = 8;
      auto features = at::randn({B, 4, 5});
      auto [caps, lens] = captions_of(lengths, 9);
      std::vector<int64_t> steps;
      for (int64_t l : lengths) steps.push_back(l - 1);
      const at::Tensor baseline0 = dec->baseline().clone();
      auto reset_baseline = [&] {
        at::NoGradGuard ng;
        dec->baseline().copy_(baseline0);
      };
      auto grads = [&] {
        std::vector<at::Tensor> g;
        for (auto& p : dec->parameters()) g.push_back(p.grad().defined() ? p.grad().clone() : at::zeros_like(p));
        return g;
      };

      // One process, the whole batch.
      StepResult one;
      {
        reset_baseline();
        dec->zero_grad();
        at::manual_seed(99);
        auto terms = dec->loss(dec->forward(features, caps, lens));
        terms.total.backward();
        one.total = terms.total.item<double>();
        one.grads = grads();
        one.baseline = dec->baseline().clone();
      }
      for (const auto& cut : {std::vector<int64_t>{0, 3, 8}, std::vector<int64_t>{0, 1, 4, 8},
                                             std::vector<int64_t>{0, 0, 8}}) {
        INFO("cut at " << nlohmann::json(cut).dump());
        // Each part as a process sees it: the same random state at the start, its rows only.
        StepResult parts;
        at::Tensor nll_sum = at::zeros({});
        for (size_t r = 0; r + 1 < cut.size(); ++r) {
          reset_baseline();
          dec->zero_grad();
          at::manual_seed(99);
          BatchSlice slice;
          slice.row_offset = cut[r];
          slice.global_steps = steps;
          const int64_t n = cut[r + 1] - cut[r];
          auto f = features.slice(0, cut[r], cut[r + 1]);
          auto c = caps.slice(0, cut[r], cut[r + 1]);
          auto l = lens.slice(0, cut[r], cut[r + 1]);
          if (n > 0) c = c.slice(1, 0, lengths[static_cast<size_t>(cut[r])]);
          else c = at::zeros({0, 2}, at::kLong);  // an empty part, as BatchGenerator makes it
          auto terms = dec->loss(dec->forward(f, c, l, &slice));
          CHECK(terms.tokens.item<double>() == slice.tokens());
          terms.total.backward();
          parts.total += terms.total.item<double>();
          nll_sum += terms.caption_nll_sum;
          auto g = grads();
          if (parts.grads.empty()) parts.grads = g;
          else
            for (size_t i = 0; i < g.size(); ++i) parts.grads[i] += g[i];
          // The part's forward did not move the baseline: the caller does, from the global sums.
          CHECK(at::equal(dec->baseline(), baseline0));
        }
        reset_baseline();
        BatchSlice whole;
        whole.global_steps = steps;
        // What TrainingStep does after summing the parts (hard attention only).
        if (kind == AttentionKind::hard)
          dec->update_baseline(nll_sum, at::scalar_tensor(static_cast<double>(whole.captions())));
        CHECK(std::abs(parts.total - one.total) < 1e-5);
        for (size_t i = 0; i < one.grads.size(); ++i) {
          INFO("parameter " << i);
          CHECK(at::allclose(parts.grads[i], one.grads[i], 1e-4, 1e-6));
        }
        CHECK(at::allclose(dec->baseline(), one.baseline, 1e-6, 1e-7));
        if (kind == AttentionKind::hard) CHECK(one.baseline.item<double>() != baseline0.item<double>());
      }
    }
  }
}

TEST_CASE("a batch is cut into parts of about equal work, each part getting a row", "[dist]") {
  const std::vector<int64_t> steps{20, 18, 12, 10, 9, 9, 8, 7, 5, 3, 2, 1};
  for (int parts : {1, 2, 3, 4, 12}) {
    INFO(parts << " parts");
    for (double row_cost : {0.0, 15.0}) {
      auto cut = split_batch(steps, parts, row_cost);
      REQUIRE(cut.size() == static_cast<size_t>(parts) + 1);
      CHECK(cut.front() == 0);
      CHECK(cut.back() == 12);
      double total = 0;
      for (int64_t s : steps) total += s + row_cost;
      double worst = 0;
      for (int r = 0; r < parts; ++r) {
        CHECK(cut[static_cast<size_t>(r) + 1] > cut[static_cast<size_t>(r)]);  // every part gets a row
        double work = 0;
        for (int64_t i = cut[static_cast<size_t>(r)]; i < cut[static_cast<size_t>(r) + 1]; ++i)
          work += steps[static_cast<size_t>(i)] + row_cost;
        worst = std::max(worst, work);
      }
      // No part is more than one (longest) row above an equal share.
      if (parts < 12) CHECK(worst <= total / parts + 20 + row_cost);
    }
  }
  // Fewer rows than parts: some parts are empty, the rows are still all covered once.
  auto cut = split_batch({4, 3}, 3, 0);
  REQUIRE(cut.size() == 4);
  CHECK(cut.front() == 0);
  CHECK(cut.back() == 2);
  CHECK(std::is_sorted(cut.begin(), cut.end()));
}

// ---------------------------------------------------------------------------------------------
// Real processes: the satcap binary, Gloo over loopback (and across network namespaces).

namespace {

using Clock = std::chrono::steady_clock;

// A scenes dataset with prepared features, shared by the tests below (made once per test process).
struct DistData {
  fs::path scenes, features;
  bool ok = false;
  std::string why;
};

const DistData& dist_data() {
  static DistData d = [] {
    DistData r;
    if (!fs::exists(source_dir() / "models" / "embedded" / "mobilenet_v2" / "model.json")) {
      r.why = "models/embedded/mobilenet_v2 not imported (run tools/setup.sh)";
      return r;
    }
    auto dir = fresh_temp_dir("dist_data_" + std::to_string(getpid()));
    r.scenes = dir / "scenes";
    r.features = dir / "features";
    auto scenes = run_satcap({"scenes", "--out", r.scenes.string(), "--images", "24", "--seed", "4"});
    if (scenes.exit_code != 0) throw std::runtime_error("satcap scenes failed: " + scenes.err);
    auto prepared = run_satcap({"-q", "prepare", "--data", r.scenes.string(), "--out", r.features.string(), "--split", "all"});
    if (prepared.exit_code != 0) throw std::runtime_error("satcap prepare failed: " + prepared.err);
    r.ok = true;
    return r;
  }();
  return d;
}

// `satcap train` on the shared data with a tiny model; `extra` adds or overrides flags.
std::vector<std::string> train_args(const fs::path& out, const std::string& attention,
                                    const std::vector<std::string>& extra) {
  const DistData& d = dist_data();
  std::vector<std::string> a{"--threads", "1", "train", "--data", d.scenes.string(), "--features", d.features.string(),
                             "--out", out.string(), "--attention", attention, "--embed-dim", "8", "--attention-dim", "8",
                             "--hidden-dim", "16", "--batch", "12", "--lr", "1e-3", "--min-word-count", "1",
                             "--log-every", "1", "--checkpoint-every", "2", "--seed", "11", "--val-max-images", "8",
                             "--epochs", "1"};
  if (attention == "hard") a.insert(a.end(), {"--semi-sampling-p", "0.5"});
  for (const char* flag : {"--epochs", "--max-steps"})  // given in `extra`: its value wins
    if (std::find(extra.begin(), extra.end(), flag) != extra.end()) {
      auto at = std::find(a.begin(), a.end(), flag);
      if (at != a.end()) a.erase(at, at + 2);
    }
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

std::vector<nlohmann::json> records(const fs::path& dir, const std::string& kind) {
  std::vector<nlohmann::json> out;
  std::ifstream in(dir / "train_log.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) {
      auto j = nlohmann::json::parse(line, nullptr, false);  // a line being written is skipped
      if (j.is_object() && j.value("kind", "") == kind) out.push_back(j);
    }
  return out;
}

// The largest difference between two trained bundles' weights (and buffers: the baseline).
double weight_difference(const fs::path& a, const fs::path& b) {
  Bundle x = load_bundle(a), y = load_bundle(b);
  auto px = x.decoder->named_parameters(), py = y.decoder->named_parameters();
  REQUIRE(px.size() == py.size());
  double worst = 0;
  for (auto& item : px) worst = std::max(worst, (item.value() - py[item.key()]).abs().max().item<double>());
  auto bx = x.decoder->named_buffers(), by = y.decoder->named_buffers();
  for (auto& item : bx) worst = std::max(worst, (item.value() - by[item.key()]).abs().max().item<double>());
  return worst;
}

// Every checkpoint record of a data-parallel run: the ranks' replica hashes are all equal.
void check_replica_hashes(const fs::path& out, int processes) {
  auto checkpoints = records(out, "checkpoint");
  REQUIRE(!checkpoints.empty());
  for (const auto& c : checkpoints) {
    INFO(c.dump());
    REQUIRE(c.contains("replica_hashes"));
    const auto hashes = c.at("replica_hashes").get<std::vector<std::string>>();
    CHECK(static_cast<int>(hashes.size()) == processes);
    for (const auto& h : hashes) CHECK(h == hashes.front());
  }
}

// Starts build/satcap with `args`, its stdout and stderr into `log`; returns its pid.
pid_t spawn_satcap(const std::vector<std::string>& args, const fs::path& log) {
  std::vector<std::string> storage{SATCAP_BINARY};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::fopen(log.c_str(), "w");
    if (f) {
      dup2(fileno(f), 1);
      dup2(fileno(f), 2);
    }
    execv(SATCAP_BINARY, argv.data());
    _exit(127);
  }
  return pid;
}

// The child of `parent` whose environment says RANK=<rank> (-1 when none).
pid_t worker_of(pid_t parent, int rank) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto close = text.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(text.substr(close + 2));
    char state;
    int ppid = 0;
    rest >> state >> ppid;
    if (ppid != parent) continue;
    std::ifstream env(entry.path() / "environ");
    std::string var;
    bool found = false;
    while (std::getline(env, var, '\0')) found = found || var == "RANK=" + std::to_string(rank);
    if (found)
      return static_cast<pid_t>(std::stoi(name));
  }
  return -1;
}

// Waits for `pid` up to `limit`; its exit status, or -1 (then it is killed).
int wait_for(pid_t pid, std::chrono::milliseconds limit) {
  const auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  return -1;
}

}  // namespace

TEST_CASE("2 processes over loopback train the weights of 1 process on the same global batches", "[dist][process]") {
  if (!dist_data().ok) {
    WARN(dist_data().why << ": skipping the multi-process tests");
    return;
  }
  for (std::string attention : {"soft", "hard"}) {
    DYNAMIC_SECTION(attention << " attention") {
      auto dir = fresh_temp_dir("dist_equal_" + attention);
      // Steps 1-7 of one epoch: the last part, 5 steps on with a validation at the epoch's end,
      // goes through --resume with the other process count (2 -> 1 and 1 -> 2 give the same).
      auto one = run_satcap(train_args(dir / "one", attention, {"--max-steps", "7"}));
      INFO(one.err);
      REQUIRE(one.exit_code == 0);
      const auto t0 = Clock::now();
      auto two = run_satcap(train_args(dir / "two", attention, {"--max-steps", "7", "--nproc", "2"}));
      const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      INFO(two.err);
      REQUIRE(two.exit_code == 0);
      INFO("2 processes took " << seconds << " s");
      check_replica_hashes(dir / "two", 2);
      CHECK(records(dir / "two", "done").at(0).at("processes") == 2);
      const double difference = weight_difference(dir / "one", dir / "two");
      WARN(attention << ": 1 vs 2 processes after 7 steps, largest weight difference " << difference);
      CHECK(difference <= 1e-5);
      // The logged losses are the global batch's, whatever the split.
      auto l1 = records(dir / "one", "train"), l2 = records(dir / "two", "train");
      REQUIRE(l1.size() == l2.size());
      for (size_t i = 0; i < l1.size(); ++i) CHECK(std::abs(l1[i].at("loss").get<double>() - l2[i].at("loss").get<double>()) < 1e-4);
    }
  }
}

TEST_CASE("a killed worker stops the others within the bound, naming it, and 1 process resumes the checkpoint",
          "[dist][process]") {
  if (!dist_data().ok) {
    WARN(dist_data().why << ": skipping the multi-process tests");
    return;
  }
  auto dir = fresh_temp_dir("dist_kill");
  const fs::path out = dir / "out", log = dir / "launcher.log";
  // Many epochs of steps: it is killed long before the end. A heartbeat limit of 3 s bounds the
  // survivors' wait when nobody reports the death (here the launcher does, at once).
  const pid_t launcher = spawn_satcap(
      train_args(out, "soft", {"--nproc", "2", "--epochs", "50", "--val-every", "100", "--dist-heartbeat-timeout", "3"}), log);
  REQUIRE(launcher > 0);
  // Until a checkpoint is written, and a few steps after it.
  const auto started = Clock::now();
  bool checkpointed = false;
  while (Clock::now() - started < std::chrono::seconds(90)) {
    if (fs::exists(out / "train_log.jsonl") && records(out, "checkpoint").size() >= 2) {
      checkpointed = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  INFO(read_text_file(log));
  if (!checkpointed) wait_for(launcher, std::chrono::milliseconds(1));
  REQUIRE(checkpointed);
  const std::string checkpoint_before = read_text_file(out / "checkpoint.pt");
  const pid_t victim = worker_of(launcher, 1);
  REQUIRE(victim > 0);
  const auto killed = Clock::now();
  REQUIRE(kill(victim, SIGKILL) == 0);
  const int status = wait_for(launcher, std::chrono::seconds(20));
  const double seconds = std::chrono::duration<double>(Clock::now() - killed).count();
  const std::string text = read_text_file(log);
  INFO(text);
  WARN("kill -9 of rank 1: the run was down " << seconds << " s later");
  REQUIRE(status != -1);                       // it ended by itself
  CHECK(seconds < 3 + 2);                      // the heartbeat limit + slack; the launcher's report is faster
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) != 0);
  CHECK_THAT(text, Catch::Contains("rank 1"));
  CHECK_THAT(text, Catch::Contains("signal 9"));
  CHECK(worker_of(launcher, 0) == -1);
  // The checkpoint on disk is a whole one (the last written, or the one before it), and resumes
  // with 1 process.
  const std::string checkpoint_after = read_text_file(out / "checkpoint.pt");
  CHECK(!checkpoint_after.empty());
  const int64_t last = records(out, "checkpoint").back().at("step").get<int64_t>();
  auto resumed = run_satcap(train_args(out, "soft", {"--epochs", "50", "--val-every", "100", "--resume",
                                                    "--max-steps", std::to_string(last + 2)}));
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  auto resumes = records(out, "resume");
  REQUIRE(resumes.size() == 1);
  CHECK(resumes[0].at("step") == last);
  CHECK(records(out, "done").at(0).at("step") == last + 2);
}

TEST_CASE("2 processes as two hosts: two network namespaces joined by a veth pair", "[dist][process][netns]") {
  if (!dist_data().ok) {
    WARN(dist_data().why << ": skipping the multi-process tests");
    return;
  }
  const std::string a = "satcap_t" + std::to_string(getpid()) + "a", b = "satcap_t" + std::to_string(getpid()) + "b";
  if (std::system(("ip netns add " + a + " 2>/dev/null").c_str()) != 0) {
    WARN("skipping the network-namespace test: `ip netns add` is not permitted here (needs root and CAP_SYS_ADMIN, "
         "and iproute2)");
    return;
  }
  struct Cleanup {
    std::string a, b;
    ~Cleanup() { (void)std::system(("ip netns del " + a + " 2>/dev/null; ip netns del " + b + " 2>/dev/null").c_str()); }
  } cleanup{a, b};
  const std::string va = "vs" + std::to_string(getpid() % 100000) + "a", vb = "vs" + std::to_string(getpid() % 100000) + "b";
  const std::string setup = "ip netns add " + b + " && ip link add " + va + " type veth peer name " + vb +
                            " && ip link set " + va + " netns " + a + " && ip link set " + vb + " netns " + b +
                            " && ip -n " + a + " addr add 10.231.0.1/24 dev " + va + " && ip -n " + b +
                            " addr add 10.231.0.2/24 dev " + vb + " && ip -n " + a + " link set lo up && ip -n " + b +
                            " link set lo up && ip -n " + a + " link set " + va + " up && ip -n " + b + " link set " +
                            vb + " up";
  REQUIRE(std::system(setup.c_str()) == 0);
  auto dir = fresh_temp_dir("dist_netns");
  auto one = run_satcap(train_args(dir / "one", "soft", {"--max-steps", "4"}));
  REQUIRE(one.exit_code == 0);
  // Each rank as torchrun would start it on its host; rank 0 hosts the store at 10.231.0.1.
  auto rank_command = [&](const std::string& ns, int rank, const fs::path& out) {
    std::string cmd = "ip netns exec " + ns + " env MASTER_ADDR=10.231.0.1 MASTER_PORT=29611 WORLD_SIZE=2 RANK=" +
                      std::to_string(rank) + " LOCAL_RANK=0 " + SATCAP_BINARY;
    for (const auto& arg : train_args(out, "soft", {"--max-steps", "4", "--distributed", "--dist-timeout", "60"}))
      cmd += " '" + arg + "'";
    return cmd + " > " + (dir / ("rank" + std::to_string(rank) + ".log")).string() + " 2>&1";
  };
  // Rank 1 writes into its own folder: the two hosts share no output folder (rank 0 alone writes).
  write_text_file(dir / "run.sh", rank_command(a, 0, dir / "two") + " &\n" + rank_command(b, 1, dir / "two_rank1") +
                                    "\necho $? > " + (dir / "rc1").string() + "\nwait $!\necho $? > " +
                                    (dir / "rc0").string() + "\n");
  REQUIRE(std::system(("timeout 180 sh " + (dir / "run.sh").string()).c_str()) == 0);
  const std::string log0 = read_text_file(dir / "rank0.log"), log1 = read_text_file(dir / "rank1.log");
  INFO("rank 0:\n" << log0 << "\nrank 1:\n" << log1);
  CHECK(read_text_file(dir / "rc0").substr(0, 1) == "0");
  CHECK(read_text_file(dir / "rc1").substr(0, 1) == "0");
  CHECK_THAT(log0, Catch::Contains("from 10.231.0.1"));
  CHECK_THAT(log1, Catch::Contains("from 10.231.0.2"));
  CHECK_FALSE(fs::exists(dir / "two_rank1" / "checkpoint.pt"));
  check_replica_hashes(dir / "two", 2);
  const double difference = weight_difference(dir / "one", dir / "two");
  WARN("two namespaces: largest weight difference to 1 process " << difference);
  CHECK(difference <= 1e-5);
}

TEST_CASE("a rank that never joins ends the rendezvous in bounded time, and --distributed names a missing variable",
          "[dist][process]") {
  if (!dist_data().ok) {
    WARN(dist_data().why << ": skipping the multi-process tests");
    return;
  }
  auto dir = fresh_temp_dir("dist_rendezvous");
  // No MASTER_ADDR (ctest's environment has none of the rendezvous variables).
  if (std::getenv("MASTER_ADDR") == nullptr) {
    auto bare = run_satcap(train_args(dir / "bare", "soft", {"--distributed"}));
    CHECK(bare.exit_code == 2);
    CHECK_THAT(bare.err, Catch::Contains("MASTER_ADDR"));
  }
  // Rank 0 of 2 alone, hosting the store: rank 1 never comes.
  std::string cmd = "env MASTER_ADDR=127.0.0.1 MASTER_PORT=29623 WORLD_SIZE=2 RANK=0 " + std::string(SATCAP_BINARY);
  for (const auto& arg : train_args(dir / "alone", "soft", {"--distributed", "--dist-timeout", "3"})) cmd += " '" + arg + "'";
  cmd += " > " + (dir / "alone.log").string() + " 2>&1";
  const auto t0 = Clock::now();
  const int status = std::system(("timeout 60 sh -c \"" + cmd + "\"").c_str());
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const std::string text = read_text_file(dir / "alone.log");
  INFO(text);
  WARN("a rendezvous missing rank 1 (--dist-timeout 3) ended after " << seconds << " s");
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 8);
  CHECK_THAT(text, Catch::Contains("rank 1"));
  CHECK(seconds < 3 * 2 + 15);  // the store's wait and the group's, each --dist-timeout, plus start-up
  CHECK_FALSE(fs::exists(dir / "alone" / "checkpoint.pt"));
}
