// word2vec's negative-sampling SGD, one row after the other, as word2vec.c and gensim run it.
//
// The weights are never written. A row's current value is ``w - alpha * g``, where ``g`` is the
// gradient the rows before it have accumulated (``alpha = 0``: the plain gradient at ``w``). So
// after the call, one SGD step ``w -= alpha * g`` leaves the weights word2vec's pair-by-pair
// updates would have left, and the caller's weights stay untouched until that step, which keeps
// processes of a DDP run in agreement. Threads take contiguous blocks of rows and share the
// gradient buffers without locks (Hogwild, as word2vec.c's and gensim's threads share weights);
// one thread is deterministic.
//
// Per row, for targets t = center (label 1) and each negative (label 0; skipped when it equals the
// center, as gensim does), with h the row's input vector (skip-gram: one context word's; CBOW: the
// mean or sum of the context words'):
//     f = u_t . h,  loss += softplus(label ? -f : f),  e += (sigmoid(f) - label) * u_t,
//     g_out[t] += (sigmoid(f) - label) * h
// then every context word of the row gets g_in[w] += e (in full, not divided: word2vec.c).

#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

template <typename T>
struct Problem {
  const T* input_weight;   // (V, D)
  const T* output_weight;  // (V, D)
  T* input_grad;           // (V, D), accumulated into
  T* output_grad;          // (V, D), accumulated into
  int64_t dim;
  const int64_t* centers;       // (N,)
  const int64_t* contexts;      // (N, C); C = 1 for skip-gram
  const uint8_t* context_mask;  // (N, C) or null (every slot real)
  int64_t context_slots;
  const int64_t* negatives;  // (N, K)
  int64_t negatives_per_row;
  bool cbow_mean;
  T alpha;
};

// current = w - alpha * g for one row
template <typename T>
inline void current_row(const T* w, const T* g, T alpha, int64_t dim, T* out) {
#pragma omp simd
  for (int64_t d = 0; d < dim; ++d) out[d] = w[d] - alpha * g[d];
}

template <typename T>
inline T dot(const T* a, const T* b, int64_t dim) {
  T total = 0;
#pragma omp simd reduction(+ : total)
  for (int64_t d = 0; d < dim; ++d) total += a[d] * b[d];
  return total;
}

template <typename T>
double run_rows(const Problem<T>& p, int64_t begin, int64_t end) {
  const int64_t dim = p.dim;
  std::vector<T> h(dim), error(dim), u(dim), w(dim);
  double loss = 0.0;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t* words = p.contexts + row * p.context_slots;
    const uint8_t* mask = p.context_mask ? p.context_mask + row * p.context_slots : nullptr;
    int64_t count = 0;
    for (int64_t d = 0; d < dim; ++d) h[d] = 0;
    for (int64_t slot = 0; slot < p.context_slots; ++slot) {
      if (mask && !mask[slot]) continue;
      const int64_t word = words[slot];
      current_row(p.input_weight + word * dim, p.input_grad + word * dim, p.alpha, dim, w.data());
#pragma omp simd
      for (int64_t d = 0; d < dim; ++d) h[d] += w[d];
      ++count;
    }
    if (count == 0) continue;
    if (p.cbow_mean && count > 1) {
      const T scale = T(1) / T(count);
      for (int64_t d = 0; d < dim; ++d) h[d] *= scale;
    }
    for (int64_t d = 0; d < dim; ++d) error[d] = 0;
    const int64_t center = p.centers[row];
    for (int64_t k = -1; k < p.negatives_per_row; ++k) {
      const bool positive = k < 0;
      const int64_t target = positive ? center : p.negatives[row * p.negatives_per_row + k];
      if (!positive && target == center) continue;
      T* target_grad = p.output_grad + target * dim;
      current_row(p.output_weight + target * dim, target_grad, p.alpha, dim, u.data());
      const double f = static_cast<double>(dot(u.data(), h.data(), dim));
      const double e = std::exp(-std::fabs(f));
      const double sigmoid = f >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
      const double signed_f = positive ? -f : f;  // loss = softplus(signed_f)
      loss += (signed_f > 0 ? signed_f : 0.0) + std::log1p(e);
      const T g = static_cast<T>(sigmoid - (positive ? 1.0 : 0.0));
#pragma omp simd
      for (int64_t d = 0; d < dim; ++d) {
        error[d] += g * u[d];
        target_grad[d] += g * h[d];
      }
    }
    for (int64_t slot = 0; slot < p.context_slots; ++slot) {
      if (mask && !mask[slot]) continue;
      T* grad = p.input_grad + words[slot] * dim;
#pragma omp simd
      for (int64_t d = 0; d < dim; ++d) grad[d] += error[d];
    }
  }
  return loss;
}

template <typename T>
double run(const Problem<T>& p, int64_t rows, int threads) {
  if (threads <= 1 || rows < 2 * 256) return run_rows(p, 0, rows);
  std::vector<double> losses(threads, 0.0);
  std::vector<std::thread> workers;
  const int64_t block = (rows + threads - 1) / threads;
  for (int t = 0; t < threads; ++t) {
    const int64_t begin = t * block, end = begin + block < rows ? begin + block : rows;
    if (begin >= end) break;
    workers.emplace_back([&, t, begin, end] { losses[t] = run_rows(p, begin, end); });
  }
  for (auto& worker : workers) worker.join();
  double loss = 0.0;
  for (double value : losses) loss += value;
  return loss;
}

template <typename T>
double entry(const T* input_weight, const T* output_weight, T* input_grad, T* output_grad, int64_t dim,
             const int64_t* centers, const int64_t* contexts, const uint8_t* context_mask, int64_t context_slots,
             const int64_t* negatives, int64_t rows, int64_t negatives_per_row, int cbow_mean, double alpha,
             int threads) {
  Problem<T> p{input_weight, output_weight, input_grad, output_grad, dim, centers, contexts, context_mask,
               context_slots, negatives, negatives_per_row, cbow_mean != 0, static_cast<T>(alpha)};
  return run(p, rows, threads);
}

}  // namespace

extern "C" {
double hfssl_word2vec_sgd_float(const float* iw, const float* ow, float* ig, float* og, int64_t dim, const int64_t* centers,
                                const int64_t* contexts, const uint8_t* mask, int64_t slots, const int64_t* negatives,
                                int64_t rows, int64_t k, int cbow_mean, double alpha, int threads) {
  return entry<float>(iw, ow, ig, og, dim, centers, contexts, mask, slots, negatives, rows, k, cbow_mean, alpha, threads);
}
double hfssl_word2vec_sgd_double(const double* iw, const double* ow, double* ig, double* og, int64_t dim,
                                 const int64_t* centers, const int64_t* contexts, const uint8_t* mask, int64_t slots,
                                 const int64_t* negatives, int64_t rows, int64_t k, int cbow_mean, double alpha,
                                 int threads) {
  return entry<double>(iw, ow, ig, og, dim, centers, contexts, mask, slots, negatives, rows, k, cbow_mean, alpha, threads);
}
}
