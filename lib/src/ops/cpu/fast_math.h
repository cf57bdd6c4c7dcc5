// The vectorisable float functions the hand-written kernels share, included by their *_impl.h
// (once per instruction set, inside satcap::kernels::SATCAP_KERNEL_NS, so that each build inlines
// its own vector width). kernel_tanh and kernel_exp (attention_scores_kernels.h,
// token_nll_kernels.h) expose them to the tests.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace satcap::kernels::SATCAP_KERNEL_NS {
namespace {

#pragma omp declare simd
inline float tanh_approx(float x) {
  // Eigen's float tanh (also XLA's and ONNX Runtime's): odd 13/6 rational minimax polynomial.
  x = std::min(std::max(x, -7.90531110763549805f), 7.90531110763549805f);
  const float x2 = x * x;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * x;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return p / q;
}

// sigmoid(x) = (1 + tanh(x / 2)) / 2: no exponential, and no overflow for large |x|. Within 1.7e-7
// of the exact sigmoid over [-30, 30]: absolute precision, not relative (3.8e-6 relative above
// x = -4, and 0 below x = -15.8, where the exact value is under 1.4e-7).
#pragma omp declare simd
inline float sigmoid_approx(float x) { return 0.5f + 0.5f * tanh_approx(0.5f * x); }

#pragma omp declare simd
inline float exp_approx(float x) {
  // Cephes' expf: x = n ln 2 + r with |r| <= ln 2 / 2, e^r by its degree-5 minimax polynomial,
  // 2^n put into the exponent bits. n is rounded with the 1.5 * 2^23 trick, which vectorises
  // without SSE4.1's round instruction.
  x = std::min(std::max(x, -87.33654475f), 88.0f);
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n: n + 127 is in [1, 254] after the clamp. A NaN x (a NaN loss, say) is not clamped: its n is
  // taken as 0, so that the conversion and the shift stay defined (UBSan found the left shift of a
  // negative value); p is NaN, and so is the result.
  const int32_t biased = static_cast<int32_t>(n == n ? n : 0.0f) + 127;
  const uint32_t bits = static_cast<uint32_t>(biased) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace
}  // namespace satcap::kernels::SATCAP_KERNEL_NS
