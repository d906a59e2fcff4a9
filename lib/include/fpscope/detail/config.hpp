#pragma once

#if defined(__CUDACC__)
#define FPSCOPE_HD __host__ __device__
#else
#define FPSCOPE_HD
#endif
