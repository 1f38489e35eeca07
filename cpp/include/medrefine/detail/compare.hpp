// Vectorised "is |a - b| < t" for short runs of pixels, as bit masks (bit k: pixel k).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace medrefine {
namespace detail {

#if defined(__SSE2__)
// Pixels k and k + 1 of `p` as doubles.
template <typename T>
inline __m128d load2(const T* p) {
  if constexpr (std::is_same_v<T, double>) {
    return _mm_loadu_pd(p);
  } else if constexpr (std::is_same_v<T, float>) {
    return _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  } else {
    return _mm_set_pd(static_cast<double>(p[1]), static_cast<double>(p[0]));
  }
}
#endif

// Bits k < 4: |a[k] - b[k]| < t (one channel; NaN compares false).
template <typename T>
inline unsigned near4(const T* a, const T* b, double t) {
#if defined(__SSE2__)
  const __m128d sign = _mm_set1_pd(-0.0);
  const __m128d limit = _mm_set1_pd(t);
  const __m128d lo = _mm_andnot_pd(sign, _mm_sub_pd(load2(a), load2(b)));
  const __m128d hi = _mm_andnot_pd(sign, _mm_sub_pd(load2(a + 2), load2(b + 2)));
  return static_cast<unsigned>(_mm_movemask_pd(_mm_cmplt_pd(lo, limit)) |
                               (_mm_movemask_pd(_mm_cmplt_pd(hi, limit)) << 2));
#else
  unsigned bits = 0;
  for (int k = 0; k < 4; ++k) {
    const double d = std::fabs(static_cast<double>(a[k]) - static_cast<double>(b[k]));
    bits |= static_cast<unsigned>(d < t) << k;
  }
  return bits;
#endif
}

// Bits k < 4: |a[k] - ref| < t for a constant reference value.
template <typename T>
inline unsigned near4(const T* a, double ref, double t) {
#if defined(__SSE2__)
  const __m128d sign = _mm_set1_pd(-0.0);
  const __m128d limit = _mm_set1_pd(t);
  const __m128d r = _mm_set1_pd(ref);
  const __m128d lo = _mm_andnot_pd(sign, _mm_sub_pd(load2(a), r));
  const __m128d hi = _mm_andnot_pd(sign, _mm_sub_pd(load2(a + 2), r));
  return static_cast<unsigned>(_mm_movemask_pd(_mm_cmplt_pd(lo, limit)) |
                               (_mm_movemask_pd(_mm_cmplt_pd(hi, limit)) << 2));
#else
  unsigned bits = 0;
  for (int k = 0; k < 4; ++k) {
    bits |= static_cast<unsigned>(std::fabs(static_cast<double>(a[k]) - ref) < t) << k;
  }
  return bits;
#endif
}

}  // namespace detail
}  // namespace medrefine
