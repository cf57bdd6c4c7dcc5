#include "testing.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/Device.h>

#include <cstdlib>

#include "satcap/runtime/abi_check.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/runtime.h"
#include "test_util.h"

using namespace satcap;

TEST_CASE("threads default to the available cores and honour an explicit count", "[runtime]") {
  REQUIRE(configure_threads(0) == available_cores());
  REQUIRE(configure_threads(1) == 1);
  REQUIRE(at::get_num_threads() == 1);
  REQUIRE_THROWS_AS(configure_threads(-1), UsageError);
  configure_threads(0);
}

TEST_CASE("device strings are parsed and CUDA is refused clearly where absent", "[runtime]") {
  REQUIRE(parse_device("cpu").is_cpu());
  REQUIRE_THROWS_AS(parse_device("tpu"), UsageError);
  REQUIRE_THROWS_AS(parse_device("banana"), UsageError);
  if (!torch_cuda_available()) {
    REQUIRE_THROWS_WITH(parse_device("cuda"), Catch::Contains("--device cpu"));
    REQUIRE_THROWS_AS(parse_device("cuda:0"), UsageError);
  }
}

TEST_CASE("the command reports usage errors and unknown devices with distinct exit codes", "[cli]") {
  auto r = run_satcap({"info"});
  REQUIRE(r.exit_code == 0);
  REQUIRE_THAT(r.out, Catch::Contains("LibTorch"));
  REQUIRE(run_satcap({"no-such-command"}).exit_code == 2);
  REQUIRE(run_satcap({"info", "--threads", "-3"}).exit_code == 2);
  if (!torch_cuda_available()) {
    auto c = run_satcap({"info", "--device", "cuda"});
    REQUIRE(c.exit_code == 2);
    REQUIRE_THAT(c.err, Catch::Contains("error: --device cuda"));
  }
}

TEST_CASE("OpenBLAS's Prescott fallback is replaced by the CPU's kernels, and products stay exact", "[runtime]") {
  // tests/main.cpp calls select_blas_kernels() as the satcap command does.
  BlasKernels k = blas_kernels();
  if (k.active.empty()) {
    WARN("the BLAS is not OpenBLAS: nothing to choose");
  } else {
    INFO("OpenBLAS chose " << k.detected << ", active " << k.active);
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!std::getenv("OPENBLAS_CORETYPE") && !std::getenv("SATCAP_KEEP_BLAS_KERNELS") && avx2) {
      REQUIRE(k.active != "Prescott");
      REQUIRE(k.switched == (k.detected == "Prescott"));
    }
    auto r = run_satcap({"info"});
    REQUIRE(r.exit_code == 0);
    REQUIRE_THAT(r.out, Catch::Contains("OpenBLAS kernels " + k.active));
  }
  // Whatever kernels run: float products of the shapes satcap uses agree with double ones.
  at::manual_seed(5);
  for (auto [m, kk, n] : std::vector<std::array<int64_t, 3>>{{1, 576, 128}, {64, 3072, 2048}, {196, 576, 128}, {37, 513, 1001}}) {
    auto a = at::randn({m, kk});
    auto b = at::randn({kk, n});
    auto exact = at::mm(a.to(at::kDouble), b.to(at::kDouble));
    auto err = (at::mm(a, b).to(at::kDouble) - exact).abs().max().item<double>();
    INFO(m << "x" << kk << " * " << kk << "x" << n << ": max error " << err);
    REQUIRE(err < 1e-5 * std::sqrt(static_cast<double>(kk)) * 4);
  }
}

TEST_CASE("satcap's std::filesystem is the standard library's, not a copy another library exports", "[runtime]") {
  // The tests and the command are linked with libstdc++ first (CMakeLists.txt), so that an official
  // LibTorch 2.x exporting its own copy (pytorch/pytorch issue 133437) cannot take these calls.
  INFO("provider: " << filesystem_provider());
  CHECK(filesystem_from_standard_library());
  const auto r = run_satcap({"info"});
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("std::filesystem from libstdc++"));
}
