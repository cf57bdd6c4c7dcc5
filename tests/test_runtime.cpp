#include "testing.h"

#include <ATen/Parallel.h>
#include <c10/core/Device.h>

#include "satcap/error.h"
#include "satcap/runtime.h"
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
