// Python bindings of the tensor-core models (fpscope/mma.hpp): the raw entry points that
// fpscope.mma / fpscope.gemm (fpscope/__init__.py) call with C-contiguous float32 arrays.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "fpscope/mma.hpp"
#include "fpscope/options.hpp"

namespace py = pybind11;

namespace {

using f32 = py::array_t<float, py::array::c_style>;

py::dict info(const fpscope::mma::instruction& in) {
  static const char* fams[] = {"mma.sync", "wgmma", "tcgen05.mma", "v_mfma"};
  static const char* rhos[] = {"RZ-FP32", "RZ-E8M13", "RNE-FP16", "RNE-FP32"};
  py::dict d;
  d["arch"] = in.arch;
  d["inst"] = in.name;
  d["family"] = fams[int(in.fam)];
  d["m"] = in.m;
  d["n"] = in.n;
  d["k"] = in.k;
  d["a"] = in.a.name;
  d["b"] = in.b.name;
  d["c"] = in.c.name;
  d["d"] = in.d.name;
  d["F"] = in.F;
  d["L"] = in.L;
  d["rounding"] = rhos[int(in.rho)];
  d["e_zero"] = in.e_zero;
  d["block"] = in.block;
  d["F2"] = in.F2;
  static const char* ariths[] = {"fdpa", "fma", "e_fdpa", "ftz_mul_add"};
  d["arithmetic"] = ariths[int(in.arith)];
  d["describe"] = in.describe();
  return d;
}

// D = A B + C on the library's GEMM (GIL released); shapes checked here, values in the library.
using u8 = py::array_t<std::uint8_t, py::array::c_style>;

struct shape {
  std::size_t m, k, n;
};

// The shapes of a, b, c and the scales checked (ValueError naming what is wrong).
shape checked(const fpscope::mma::instruction& in, const f32& a, const f32& b, const std::optional<f32>& c,
              int threads, const std::optional<u8>& a_scale, const std::optional<u8>& b_scale,
              const std::optional<f32>& a_scale_1x128, const std::optional<f32>& b_scale_128x128) {
  fpscope::check_threads(threads, "threads");
  if (a.ndim() != 2 || b.ndim() != 2) throw py::value_error("gemm: a and b must be 2-D");
  const auto m = std::size_t(a.shape(0)), k = std::size_t(a.shape(1)), n = std::size_t(b.shape(1));
  if (std::size_t(b.shape(0)) != k)
    throw py::value_error("gemm: a is " + std::to_string(m) + " x " + std::to_string(k) + " but b has " +
                          std::to_string(b.shape(0)) + " rows");
  if (c && (c->ndim() != 2 || std::size_t(c->shape(0)) != m || std::size_t(c->shape(1)) != n))
    throw py::value_error("gemm: c must be " + std::to_string(m) + " x " + std::to_string(n));
  if (in.block) {  // scales: A's m x ceil(k / block), B's ceil(k / block) x n
    const auto nblk = py::ssize_t((k + std::size_t(in.block) - 1) / std::size_t(in.block));
    if (a_scale && (a_scale->ndim() != 2 || a_scale->shape(0) != py::ssize_t(m) || a_scale->shape(1) != nblk))
      throw py::value_error("gemm: a_scale must be " + std::to_string(m) + " x " + std::to_string(nblk));
    if (b_scale && (b_scale->ndim() != 2 || b_scale->shape(0) != nblk || b_scale->shape(1) != py::ssize_t(n)))
      throw py::value_error("gemm: b_scale must be " + std::to_string(nblk) + " x " + std::to_string(n));
  }
  if (a_scale_1x128 || b_scale_128x128) {  // A's m x ceil(k / 128), B's ceil(k / 128) x ceil(n / 128)
    constexpr std::size_t fb = fpscope::mma::fine_block;
    const auto kb = py::ssize_t((k + fb - 1) / fb), nb = py::ssize_t((n + fb - 1) / fb);
    if (a_scale_1x128 && (a_scale_1x128->ndim() != 2 || a_scale_1x128->shape(0) != py::ssize_t(m) ||
                          a_scale_1x128->shape(1) != kb))
      throw py::value_error("gemm: 1x128 a_scale must be " + std::to_string(m) + " x " + std::to_string(kb));
    if (b_scale_128x128 && (b_scale_128x128->ndim() != 2 || b_scale_128x128->shape(0) != kb ||
                            b_scale_128x128->shape(1) != nb))
      throw py::value_error("gemm: 128x128 b_scale must be " + std::to_string(kb) + " x " + std::to_string(nb));
  }
  if (k == 0 || (m && n > fpscope::mma::max_gemm_elements / m))
    throw py::value_error("gemm: a " + std::to_string(m) + " x " + std::to_string(n) + " x " + std::to_string(k) +
                          " product is refused (k = 0, or more than 2^30 results)");
  return {m, k, n};
}

fpscope::mma::gemm_options options(std::size_t promote, int threads, const std::optional<u8>& a_scale,
                                   const std::optional<u8>& b_scale, const std::optional<f32>& a_scale_1x128,
                                   const std::optional<f32>& b_scale_128x128) {
  fpscope::mma::gemm_options o{promote, threads};
  o.a_scale = a_scale ? a_scale->data() : nullptr;
  o.b_scale = b_scale ? b_scale->data() : nullptr;
  o.a_scale_1x128 = a_scale_1x128 ? a_scale_1x128->data() : nullptr;
  o.b_scale_128x128 = b_scale_128x128 ? b_scale_128x128->data() : nullptr;
  return o;
}

f32 gemm(const f32& a, const f32& b, const std::optional<f32>& c, const std::string& arch, const std::string& inst,
         std::size_t promote, int threads, const std::optional<u8>& a_scale, const std::optional<u8>& b_scale,
         const std::optional<f32>& a_scale_1x128, const std::optional<f32>& b_scale_128x128) {
  const auto in = fpscope::mma::find(arch, inst);
  const auto [m, k, n] = checked(in, a, b, c, threads, a_scale, b_scale, a_scale_1x128, b_scale_128x128);
  f32 d({py::ssize_t(m), py::ssize_t(n)});
  const auto o = options(promote, threads, a_scale, b_scale, a_scale_1x128, b_scale_128x128);
  const float* cp = c ? c->data() : nullptr;
  float* dp = d.mutable_data();
  {
    py::gil_scoped_release nogil;
    fpscope::mma::gemm(in, m, n, k, a.data(), b.data(), cp, dp, o);
  }
  return d;
}

// The error against K (mma::k_sweep) on the same arrays as _gemm: one dict per depth.
py::list k_sweep(const f32& a, const f32& b, const std::optional<f32>& c, const std::string& arch,
                 const std::string& inst, const std::vector<std::size_t>& ks, std::size_t promote, int threads,
                 const std::optional<u8>& a_scale, const std::optional<u8>& b_scale,
                 const std::optional<f32>& a_scale_1x128, const std::optional<f32>& b_scale_128x128) {
  const auto in = fpscope::mma::find(arch, inst);
  const auto [m, k, n] = checked(in, a, b, c, threads, a_scale, b_scale, a_scale_1x128, b_scale_128x128);
  const auto o = options(promote, threads, a_scale, b_scale, a_scale_1x128, b_scale_128x128);
  std::vector<fpscope::mma::k_point> pts;
  {
    py::gil_scoped_release nogil;
    pts = fpscope::mma::k_sweep(in, m, n, k, a.data(), b.data(), c ? c->data() : nullptr, ks, o);
  }
  py::list out;
  for (const auto& p : pts) {
    py::dict d;
    d["k"] = p.k;
    d["checked"] = p.err.checked;
    d["undefined_errors"] = p.err.undefined;
    d["inexact"] = p.err.differ;
    d["max_abs_rel_error"] = p.err.max_abs_rel;
    d["mean_abs_rel_error"] = p.err.mean_abs_rel;
    d["max_abs_ulp_error"] = p.err.max_abs_ulp;
    out.append(d);
  }
  return out;
}

}  // namespace

void add_mma_bindings(py::module_& m) {
  m.def("mma_architectures", [] { return fpscope::mma::architectures(); },
        "The architectures with modelled tensor-core instructions, as MMA-Sim names them (lower-case).");
  m.def("mma_instructions", [](const std::string& arch) { return fpscope::mma::instruction_names(arch); }, py::arg("arch"), "The modelled instructions of an architecture (N, M: the shape families).");
  m.def("mma_info", [](const std::string& arch, const std::string& inst) { return info(fpscope::mma::find(arch, inst)); },
        py::arg("arch"), py::arg("inst"), "An instruction's model: shape, operand types, F, L, rounding, e_zero; 'arithmetic' the step's kind "
        "(fdpa; CDNA1/CDNA2: fma, e_fdpa, ftz_mul_add).");
  m.def("_gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("arch"), py::arg("inst"), py::arg("promote"),
        py::arg("threads"), py::arg("a_scale") = py::none(), py::arg("b_scale") = py::none(),
        py::arg("a_scale_1x128") = py::none(), py::arg("b_scale_128x128") = py::none());
  m.def("_gemm_k_sweep", &k_sweep, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("arch"), py::arg("inst"),
        py::arg("ks"), py::arg("promote"), py::arg("threads"), py::arg("a_scale") = py::none(),
        py::arg("b_scale") = py::none(), py::arg("a_scale_1x128") = py::none(),
        py::arg("b_scale_128x128") = py::none());
}
