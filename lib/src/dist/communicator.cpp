#include "satcap/dist/communicator.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#include "dist/health.h"
#include "dist/process_group.h"
#include "satcap/build_config.h"

#if SATCAP_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace satcap {

namespace dist {

std::vector<std::uint8_t> to_bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string from_bytes(const std::vector<std::uint8_t>& v) { return {v.begin(), v.end()}; }

std::string error_text(const std::exception& e) {
  std::string text = e.what();
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) text = c10_error->what_without_backtrace();
  return text.substr(0, text.find('\n'));
}

std::string describe_exit(int rank, int status) {
  const std::string who = "rank " + std::to_string(rank);
  if (WIFEXITED(status)) return who + " exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return who + " was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return who + " ended with status " + std::to_string(status);
}

}  // namespace dist

namespace {

using dist::Millis;

// Only the first of the threads that find the run broken reports it; the others wait for the exit.
std::atomic<bool> g_exiting{false};

[[noreturn]] void exit_now(const std::string& line, int code) {
  if (g_exiting.exchange(true)) {
    while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  std::fflush(stdout);
  const std::string text = line + "\n";
  ssize_t ignored = ::write(2, text.data(), text.size());  // one write: lines of other ranks do not interleave
  (void)ignored;
  ::_exit(code);
}

Millis seconds(double s) { return Millis(static_cast<int64_t>(s * 1000.0)); }

std::string env_text(const char* name, bool required) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    if (required)
      throw UsageError(std::string("--distributed: ") + name + " is not set (start satcap with torchrun or a scheduler "
                       "that sets MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK, or use --nproc N on one machine)");
    return {};
  }
  return v;
}

int env_int(const char* name, bool required, int fallback, int low, int high) {
  const std::string text = env_text(name, required);
  if (text.empty()) return fallback;
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str() || *end != '\0' || v < low || v > high)
    throw UsageError(std::string("--distributed: ") + name + "='" + text + "' is not an integer in [" +
                     std::to_string(low) + ", " + std::to_string(high) + "]");
  return static_cast<int>(v);
}

// The local IPv4 address the kernel would send from towards host:port (a UDP connect() sends
// nothing): 127.0.0.1 towards a loopback master, the veth's address inside a network namespace.
// The Gloo device binds to it, so the other ranks reach this one where the master reaches it;
// Gloo's default device binds to whatever the machine's hostname resolves to (often 127.0.0.1).
std::string local_address_towards(const std::string& host, int port) {
  addrinfo hints{}, *found = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || found == nullptr)
    throw DistributedError("MASTER_ADDR '" + host + "' does not resolve to an IPv4 address (or set GLOO_SOCKET_IFNAME)");
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in local{};
  socklen_t length = sizeof local;
  const bool ok = fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0;
  const int error = errno;
  freeaddrinfo(found);
  if (fd >= 0) ::close(fd);
  if (!ok) throw DistributedError("no route to MASTER_ADDR " + host + ": " + std::strerror(error));
  char text[INET_ADDRSTRLEN];
  return inet_ntop(AF_INET, &local.sin_addr, text, sizeof text);
}

#if SATCAP_WITH_GLOO
c10::intrusive_ptr<dist::GroupBase> gloo_group(const c10::intrusive_ptr<c10d::Store>& store, const DistEnvironment& env,
                                               Millis timeout, std::string& address) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0') {
    address = std::string("interface ") + ifname;
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else {
    address = local_address_towards(env.master_addr, env.master_port);
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(address));
  }
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, options);
}
#else
c10::intrusive_ptr<dist::GroupBase> gloo_group(const c10::intrusive_ptr<c10d::Store>&, const DistEnvironment&,
                                               Millis, std::string&) {
  throw UsageError("this satcap was built without Gloo (its LibTorch had no c10d Gloo, or Gloo's headers were not "
                   "found: Debian's libgloo-dev), so distributed training runs on CUDA with NCCL only");
}
#endif

#if SATCAP_WITH_NCCL
c10::intrusive_ptr<dist::GroupBase> nccl_group(const c10::intrusive_ptr<c10d::Store>& store, const DistEnvironment& env,
                                               Millis timeout) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env.rank, env.world_size, options);
}
#endif

}  // namespace

// ---------------------------------------------------------------------------------------------

DistEnvironment read_dist_environment() {
  DistEnvironment env;
  env.master_addr = env_text("MASTER_ADDR", true);
  env.master_port = env_int("MASTER_PORT", true, 0, 1, 65535);
  env.world_size = env_int("WORLD_SIZE", true, 1, 1, 1 << 20);
  env.rank = env_int("RANK", true, 0, 0, env.world_size - 1);
  env.local_world_size = env_int("LOCAL_WORLD_SIZE", false, 1, 1, env.world_size);
  env.local_rank = env_int("LOCAL_RANK", false, 0, 0, env.world_size - 1);
  const std::string agent = env_text("TORCHELASTIC_USE_AGENT_STORE", false);
  env.agent_store = agent == "True" || agent == "true" || agent == "1";
  return env;
}

void validate(const DistOptions& o) {
  if (o.nproc < 0) throw UsageError("--nproc must be at least 0 (got " + std::to_string(o.nproc) + ")");
  if (!(o.timeout > 0)) throw UsageError("--dist-timeout must be positive (got " + std::to_string(o.timeout) + ")");
  if (!(o.heartbeat_timeout >= 0.1))
    throw UsageError("--dist-heartbeat-timeout must be at least 0.1 s (got " + std::to_string(o.heartbeat_timeout) + ")");
  if (!(o.bucket_mb > 0)) throw UsageError("--dist-bucket-mb must be positive (got " + std::to_string(o.bucket_mb) + ")");
}

// ---------------------------------------------------------------------------------------------
// Communicator::Impl

at::Tensor Communicator::Impl::on_group_device(const at::Tensor& tensor) const {
  if (tensor.device() == device && tensor.is_contiguous()) return tensor;
  return tensor.to(device).contiguous();
}

void Communicator::Impl::wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
  try {
    work->wait();
  } catch (const std::exception& e) {
    failed(what, e);
  }
}

void Communicator::Impl::failed(const char* what, const std::exception& error) {
  const std::string text = dist::error_text(error);
  const std::string verdict = health ? health->diagnose(text) : text;
  stop(verdict + " (rank " + std::to_string(env.rank) + "'s " + what + " failed: " + text + ")");
}

void Communicator::Impl::stop(const std::string& verdict) {
  std::string note;
  {
    std::lock_guard<std::mutex> lock(mutex);
    note = failure_note;
  }
  exit_now("error: distributed training stopped on rank " + std::to_string(env.rank) + ": " + verdict +
               (note.empty() ? std::string() : ". " + note),
           static_cast<int>(ExitCode::peer_failed));
}

// ---------------------------------------------------------------------------------------------
// Communicator

Communicator::Communicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Communicator::~Communicator() {
  if (impl_ && !impl_->left) leave();
}

std::unique_ptr<Communicator> Communicator::connect(const DistEnvironment& env, const DistOptions& options,
                                                    c10::Device device) {
  validate(options);
  (void)device;  // only NCCL runs on it
  if (env.rank < 0 || env.rank >= env.world_size)
    throw UsageError("--distributed: RANK " + std::to_string(env.rank) + " is outside [0, WORLD_SIZE " +
                     std::to_string(env.world_size) + ")");
  auto impl = std::make_unique<Impl>();
  impl->env = env;
  impl->options = options;
  const Millis timeout = seconds(options.timeout);
  const auto started = std::chrono::steady_clock::now();
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(env.master_port);
  so.isServer = !env.agent_store && env.rank == 0;  // else the launcher's (or rank 0's) store
  if (!env.agent_store) so.numWorkers = static_cast<std::size_t>(env.world_size);
  so.waitWorkers = !env.agent_store;
  so.timeout = timeout;
  try {
    impl->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    throw DistributedError("rendezvous: no store at " + where + " within " + std::to_string(options.timeout) +
                           " s (" + dist::error_text(e) + "); is " +
                           (env.agent_store ? std::string("the launcher") : std::string("rank 0")) +
                           " running, and are MASTER_ADDR and MASTER_PORT right?");
  }
  auto joined = c10::make_intrusive<c10d::PrefixStore>("satcap/joined/", impl->store);
  joined->set(std::to_string(env.rank), dist::to_bytes("1"));
  auto group_store = c10::make_intrusive<c10d::PrefixStore>("satcap/group", impl->store);
  try {
#if SATCAP_WITH_NCCL
    if (device.is_cuda()) {
      impl->group = nccl_group(group_store, env, timeout);
      impl->backend = "nccl";
      impl->device = device;
    }
#endif
    if (!impl->group) {
      impl->group = gloo_group(group_store, env, timeout, impl->local_address);
      impl->backend = "gloo";
    }
  } catch (const DistributedError&) {
    throw;
  } catch (const std::exception& e) {
    std::string missing;
    for (int r = 0; r < env.world_size; ++r) {
      try {
        if (!joined->check({std::to_string(r)})) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      } catch (const std::exception&) {
        break;
      }
    }
    throw DistributedError("rendezvous at " + where + " failed after " + std::to_string(options.timeout) + " s: " +
                           (missing.empty() ? dist::error_text(e)
                                            : (missing.find(',') == std::string::npos ? "rank " : "ranks ") + missing +
                                                  " of " + std::to_string(env.world_size) + " did not join (" +
                                                  dist::error_text(e) + ")"));
  }
  impl->rendezvous_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  // A heartbeat 20 times per stall limit, at most once per second.
  const Millis stall = seconds(options.heartbeat_timeout);
  const Millis beat = std::clamp(stall / 20, Millis(20), Millis(1000));
  Impl* raw = impl.get();
  impl->health = std::make_shared<dist::HealthMonitor>(env, beat, stall, [raw](const std::string& verdict) {
    raw->stop(verdict);  // the monitor stops calling before the Communicator goes (leave())
  });
  impl->health->start();
  return std::unique_ptr<Communicator>(new Communicator(std::move(impl)));
}

int Communicator::rank() const { return impl_->env.rank; }
int Communicator::size() const { return impl_->env.world_size; }
const DistEnvironment& Communicator::environment() const { return impl_->env; }
const DistOptions& Communicator::options() const { return impl_->options; }
std::string Communicator::backend() const { return impl_->backend; }

std::string Communicator::describe() const {
  char seconds_text[32];
  std::snprintf(seconds_text, sizeof seconds_text, "%.1f", impl_->rendezvous_seconds);
  return "rank " + std::to_string(rank()) + " of " + std::to_string(size()) + ", " + impl_->backend +
         (impl_->local_address.empty() ? std::string() : " from " + impl_->local_address) + ", rendezvous at " +
         impl_->env.master_addr + ":" + std::to_string(impl_->env.master_port) + " in " + seconds_text + " s";
}

void Communicator::broadcast(std::vector<at::Tensor>& tensors) {
  at::NoGradGuard no_grad;
  // One flat buffer per dtype, in the order the dtypes first appear (the same on every rank).
  std::vector<at::ScalarType> dtypes;
  for (const auto& t : tensors)
    if (std::find(dtypes.begin(), dtypes.end(), t.scalar_type()) == dtypes.end()) dtypes.push_back(t.scalar_type());
  for (at::ScalarType dtype : dtypes) {
    std::vector<at::Tensor> parts;
    for (const auto& t : tensors)
      if (t.scalar_type() == dtype) parts.push_back(t.detach().reshape({-1}).to(impl_->device));
    std::vector<at::Tensor> one{at::cat(parts)};
    c10d::BroadcastOptions options;
    options.rootRank = 0;
    impl_->run("broadcast", [&] { return impl_->group->broadcast(one, options); });
    int64_t offset = 0;
    for (auto& t : tensors) {
      if (t.scalar_type() != dtype) continue;
      t.detach().copy_(one[0].narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

void Communicator::sum(at::Tensor& tensor) {
  std::vector<at::Tensor> one{impl_->on_group_device(tensor)};
  impl_->run("allreduce", [&] { return impl_->group->allreduce(one); });
  if (!one[0].is_same(tensor)) tensor.copy_(one[0]);
}

std::string Communicator::broadcast_bytes(const std::string& bytes) {
  at::Tensor size = at::full({1}, is_main() ? static_cast<int64_t>(bytes.size()) : int64_t{0}, at::kLong);
  std::vector<at::Tensor> sizes{size};
  broadcast(sizes);
  const int64_t n = size.item<int64_t>();
  at::Tensor data = at::empty({n}, at::kByte);
  if (is_main() && n > 0) std::memcpy(data.data_ptr(), bytes.data(), static_cast<std::size_t>(n));
  std::vector<at::Tensor> payload{data};
  if (n > 0) broadcast(payload);
  return std::string(static_cast<const char*>(payload[0].data_ptr()), static_cast<std::size_t>(n));
}

std::vector<std::string> Communicator::all_gather_bytes(const std::string& bytes) {
  const int n = size();
  at::Tensor sizes = at::zeros({n}, at::kLong);
  sizes[rank()].fill_(static_cast<int64_t>(bytes.size()));
  sum(sizes);
  const int64_t longest = std::max<int64_t>(1, sizes.max().item<int64_t>());
  at::Tensor mine = at::zeros({longest}, at::kByte);
  if (!bytes.empty()) std::memcpy(mine.data_ptr(), bytes.data(), bytes.size());
  std::vector<at::Tensor> inputs{impl_->on_group_device(mine)};
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < n; ++r) outputs[0].push_back(at::empty({longest}, inputs[0].options()));
  impl_->run("allgather", [&] { return impl_->group->allgather(outputs, inputs); });
  std::vector<std::string> all;
  for (int r = 0; r < n; ++r) {
    at::Tensor got = outputs[0][static_cast<std::size_t>(r)].cpu();
    all.emplace_back(static_cast<const char*>(got.data_ptr()), static_cast<std::size_t>(sizes[r].item<int64_t>()));
  }
  return all;
}

void Communicator::barrier() {
  // A one-element sum: the same on Gloo and NCCL (whose barrier wants device ids in LibTorch 1.13).
  at::Tensor one = at::ones({1}, at::kFloat);
  sum(one);
}

void Communicator::run_on_main(const std::string& what, const std::function<void()>& work) {
  const std::string key = "satcap/ready/" + what;
  if (is_main()) {
    work();
    impl_->store->set(key, dist::to_bytes("1"));
    return;
  }
  // No time limit: the watch thread ends this process when rank 0 fails or dies.
  while (!impl_->store->check({key})) std::this_thread::sleep_for(Millis(200));
}

void Communicator::set_failure_note(const std::string& note) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->failure_note = note;
}

void Communicator::abort(const std::string& message, int exit_code) {
  if (impl_->health) impl_->health->report_self_failure(message);
  exit_now("error: " + message, exit_code);
}

void Communicator::leave() {
  if (impl_->left) return;
  impl_->left = true;
  if (impl_->health) impl_->health->leave();
}

}  // namespace satcap
