#pragma once

#if defined(__CUDACC__)
#define FPSCOPE_HD __host__ __device__
#else
#define FPSCOPE_HD
#endif

// The element routines must inline into the bulk loops for those to vectorise.
#if defined(__CUDACC__)
#define FPSCOPE_INLINE __forceinline__
#elif defined(__GNUC__)
#define FPSCOPE_INLINE inline __attribute__((always_inline))
#else
#define FPSCOPE_INLINE inline
#endif
