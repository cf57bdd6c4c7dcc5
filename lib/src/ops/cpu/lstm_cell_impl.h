// The loops behind lstm_cell_kernels.h, included once per instruction set by
// lstm_cell_{generic,avx2,avx512}.cpp (their compiler flags choose the vector width). Define
// SATCAP_KERNEL_NS first.
#include "fast_math.h"
#include "lstm_cell_kernels.h"

namespace satcap::kernels::SATCAP_KERNEL_NS {
namespace {

void forward(const LstmCellForwardArgs& s, int64_t begin, int64_t end) {
  const int64_t H = s.hidden, G = 4 * H;
  for (int64_t r = begin; r < end; ++r) {
    float* a = s.gates + r * G;  // the sum of the parts, then their activations, in place
    const float* p0 = s.parts[0] + r * s.part_ld[0];
#pragma omp simd
    for (int64_t j = 0; j < G; ++j) a[j] = p0[j];
    for (int k = 1; k < 3; ++k) {
      if (!s.parts[k]) continue;
      const float* p = s.parts[k] + r * s.part_ld[k];
#pragma omp simd
      for (int64_t j = 0; j < G; ++j) a[j] += p[j];
    }
    float *ai = a, *af = a + H, *ag = a + 2 * H, *ao = a + 3 * H;
    const float* c = s.c + r * H;
    float *h_out = s.h_out + r * H, *c_out = s.c_out + r * H, *t_out = s.tanh_c + r * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const float i = sigmoid_approx(ai[j]), f = sigmoid_approx(af[j]), g = tanh_approx(ag[j]),
                  o = sigmoid_approx(ao[j]);
      const float cn = f * c[j] + i * g;
      const float t = tanh_approx(cn);
      ai[j] = i;
      af[j] = f;
      ag[j] = g;
      ao[j] = o;
      c_out[j] = cn;
      t_out[j] = t;
      h_out[j] = o * t;
    }
  }
}

void backward(const LstmCellBackwardArgs& s, int64_t begin, int64_t end) {
  const int64_t H = s.hidden, G = 4 * H;
  for (int64_t r = begin; r < end; ++r) {
    const float* a = s.gates + r * G;
    const float *ai = a, *af = a + H, *ag = a + 2 * H, *ao = a + 3 * H;
    const float *c = s.c + r * H, *t = s.tanh_c + r * H;
    const float* dh = s.grad_h ? s.grad_h + r * H : nullptr;
    const float* dcn = s.grad_c ? s.grad_c + r * H : nullptr;
    float* d = s.grad_gates + r * G;
    float *di = d, *df = d + H, *dg = d + 2 * H, *do_ = d + 3 * H;
    float* dc = s.grad_c_in + r * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const float i = ai[j], f = af[j], g = ag[j], o = ao[j], tj = t[j];
      const float gh = dh ? dh[j] : 0.0f;
      const float gc = (dcn ? dcn[j] : 0.0f) + gh * o * (1.0f - tj * tj);
      di[j] = gc * g * i * (1.0f - i);
      df[j] = gc * c[j] * f * (1.0f - f);
      dg[j] = gc * i * (1.0f - g * g);
      do_[j] = gh * tj * o * (1.0f - o);
      dc[j] = gc * f;
    }
  }
}

}  // namespace

LstmCellKernels cell_kernels(const char* isa) { return {forward, backward, isa}; }

}  // namespace satcap::kernels::SATCAP_KERNEL_NS
