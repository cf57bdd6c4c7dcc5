// The machine's limit (measure.h): the best float32 matrix-product rate LibTorch reaches here, over
// square products and the model's own shapes, the product a Linear layer computes (x W^T).
#include <ATen/ATen.h>

#include <algorithm>
#include <iomanip>

#include "bench/measure.h"

namespace satcap::bench {

namespace {

json measure_sgemm(const BenchRun& run) {
  const Plan& plan = run.plan;
  json shapes = json::array();
  double best = 0;
  auto opts = at::TensorOptions().dtype(at::kFloat).device(run.device);
  for (const auto& [M, K, N] : plan.sgemm_shapes) {
    at::Tensor a = at::rand({M, K}, opts), w = at::rand({N, K}, opts), out = at::empty({M, N}, opts);
    auto product = [&] { at::mm_out(out, a, w.t()); };  // x W^T
    product();  // warm-up
    const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(K) * static_cast<double>(N);
    // Repetitions per round so that three rounds take about plan.sgemm_seconds.
    const double once = std::max(timed(run.device, product).seconds, 1e-6);
    const int reps = std::max(1, static_cast<int>(plan.sgemm_seconds / 3 / once));
    double rate = 0;
    for (int round = 0; round < 3; ++round) {
      const Timing t = timed(run.device, [&] {
        for (int r = 0; r < reps; ++r) product();
      });
      rate = std::max(rate, flops * reps / t.seconds / 1e9);
    }
    run.log("sgemm ", M, "x", K, " * ", K, "x", N, ": ", std::fixed, std::setprecision(1), rate, " GFLOP/s");
    shapes.push_back({{"m", M}, {"k", K}, {"n", N}, {"gflops", rate}});
    best = std::max(best, rate);
  }
  return {{"gflops", best}, {"shapes", shapes}};
}

}  // namespace

double bench_sgemm(const BenchRun& run, json& report) {
  json s = measure_sgemm(run);
  const double peak = s["gflops"].get<double>();
  report["sgemm_gflops"] = peak;
  report["sgemm"] = s;
  return peak;
}

// On a shared machine one measurement can catch a slow phase, and the peak is the best rate reached.
double bench_sgemm_again(const BenchRun& run, double peak, json& report) {
  json again = measure_sgemm(run);
  report["sgemm_gflops_before_training"] = peak;
  report["sgemm_gflops_after_training"] = again["gflops"];
  report["sgemm_after_training"] = again;
  peak = std::max(peak, again["gflops"].get<double>());
  report["sgemm_gflops"] = peak;
  return peak;
}

}  // namespace satcap::bench
