# %% [markdown]
# # 6. Tensor cores: the same GEMM, different bits on every GPU generation
#
# A matrix instruction aligns its products (and C) to the largest exponent among them, keeps F
# bits below it, adds exactly and rounds once; how many products it fuses at a time (L), how many
# bits it keeps (F) and how it rounds differ by generation. `fpscope.gemm` runs a whole GEMM as a
# kernel does with one instruction, bit for bit as MMA-Sim models it (checked against MMA-Sim
# itself: `docs/gemm.md`). Here: FP16 GEMMs on Volta, Ampere, Hopper and AMD CDNA3, where and
# why their bits differ, and DeepSeek-V3's FP8 experiment (K = 4096, with and without promotion
# to FP32 every 128 elements).

# %%
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

import fpscope

FP16 = {
    "volta": "m8n8k4.f32.f16.f16.f32",
    "ampere": "m16n8k16.f32.f16.f16.f32",
    "hopper": "m16n8k16.f32.f16.f16.f32",
    "cdna3": "f32_32x32x8_f16",
}
for arch, inst in FP16.items():
    print(fpscope.mma_info(arch, inst)["describe"])

# %% [markdown]
# ## Where the bits differ: one dot product
#
# 1 + 31 products of 2^-24: Volta keeps 23 fraction bits below the largest term (and fuses 4
# products a step), so each 2^-24 is truncated away; Ampere keeps 24 (8 a step), Hopper 25 (16
# a step), and each step's sum is truncated to binary32 (23 bits below 1) before the next step.
# CDNA3 truncates the products to 24 bits but rounds the final sum to nearest.

# %%
k = 32
a = np.zeros((32, k), np.float32)
a[:, 0] = 1.0
a[:, 1:] = 2.0 ** -12  # products of 2^-24
b = np.zeros((k, 32), np.float32)
b[:, :] = 2.0 ** -12
b[0, :] = 1.0
exact = 1.0 + (k - 1) * 2.0 ** -24
print(f"exact = {exact!r}")
for arch, inst in FP16.items():
    d = fpscope.gemm(a, b, arch=arch, inst=inst)
    print(f"{arch} one dot = {float(d[0, 0])!r}")

# %% [markdown]
# ## Error against K, FP16 inputs, FP32 accumulation
#
# N(0,1) inputs rounded to FP16, 64 x 64 results per K; the mean relative error of each
# generation against the product in float64 (whose own error is far below these: FP16 products
# are exact in it, and the sums lose at most a few units of 2^-53).

# %%
rng = np.random.default_rng(0)
Ks = [64, 256, 1024, 4096]
errs = {arch: [] for arch in FP16}
for K in Ks:
    A = rng.standard_normal((64, K)).astype(np.float16).astype(np.float32)
    B = rng.standard_normal((K, 64)).astype(np.float16).astype(np.float32)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    for arch, inst in FP16.items():
        D = fpscope.gemm(A, B, arch=arch, inst=inst)
        errs[arch].append(float(np.mean(np.abs(D - ref) / np.abs(ref))))
for arch in FP16:
    print(f"{arch} mean rel error at K=4096 = {errs[arch][-1]:.3g}")
fig, ax = plt.subplots(figsize=(7, 4))
for arch, e in errs.items():
    ax.loglog(Ks, e, marker="o", label=f"{arch} ({FP16[arch]})")
ax.set_xlabel("K")
ax.set_ylabel("mean |relative error|")
ax.set_title("FP16 GEMM, FP32 accumulation, by generation")
ax.legend(fontsize=8)

# %% [markdown]
# ## DeepSeek-V3: FP8 on Hopper, K = 4096
#
# Hopper's FP8 `wgmma` keeps 13 fraction bits when it aligns (MMA-Sim: F = 13, RZ-E8M13).
# DeepSeek-V3 measured errors of about 2% at K = 4096 and fixed them by adding the partial sums
# into FP32 registers every 128 elements (`promote=128`). Positive inputs, so that no
# cancellation hides the effect; the reference is the product in float64. The inputs are saved,
# and `fpscope gemm` reports the same errors against the exact product (the check of this
# notebook's numbers, tests/python/test_notebooks.py).

# %%
E4 = "m64n64k32.f32.e4m3.e4m3"
A8 = fpscope.decode(fpscope.encode(np.abs(rng.standard_normal((64, 4096))).astype(np.float32), "e4m3"), "e4m3")
B8 = fpscope.decode(fpscope.encode(np.abs(rng.standard_normal((4096, 64))).astype(np.float32), "e4m3"), "e4m3")
ref8 = A8.astype(np.float64) @ B8.astype(np.float64)
plain = fpscope.gemm(A8, B8, arch="hopper", inst=E4)
promoted = fpscope.gemm(A8, B8, arch="hopper", inst=E4, promote=128)
bw = fpscope.gemm(A8, B8, arch="blackwell", inst="m128n64k32.kind::f8f6f4.f32.e4m3.e4m3")
rel = {name: np.abs(d - ref8) / ref8 for name, d in [("hopper", plain), ("hopper promoted", promoted),
                                                        ("blackwell", bw)]}
for name, r in rel.items():
    print(f"{name} fp8 max rel error = {r.max():.3g}")
tmp = tempfile.mkdtemp()
np.save(os.path.join(tmp, "a8.npy"), A8)
np.save(os.path.join(tmp, "b8.npy"), B8)
print(f"fp8 inputs: {tmp}")
fig, ax = plt.subplots(figsize=(7, 4))
for name, r in rel.items():
    ax.hist(np.log10(r.ravel() + 1e-12), bins=60, alpha=0.6, label=name)
ax.set_xlabel("log10 relative error")
ax.set_ylabel("results")
ax.set_title("FP8 GEMM, K = 4096: Hopper without and with promotion every 128, Blackwell")
ax.legend(fontsize=8)

# %% [markdown]
# ## The error against K
#
# The same FP8 inputs, their first K columns and rows for K = 32 .. 4096 (`fpscope.gemm_k_sweep`,
# the library's sweep that `fpscope gemm --k-sweep ... --plot` draws too): Hopper's error
# doubles with every doubling of K, as the 13-bit accumulator loses about the same share of each
# addition to a sum that keeps growing; promoted every 128, it stays at the error of one
# 128-long group; Blackwell starts four decades lower.

# %%
ks = [32, 64, 128, 256, 512, 1024, 2048, 4096]
sweeps = {"hopper": fpscope.gemm_k_sweep(A8, B8, arch="hopper", inst=E4, ks=ks),
          "hopper promoted": fpscope.gemm_k_sweep(A8, B8, arch="hopper", inst=E4, ks=ks, promote=128),
          "blackwell": fpscope.gemm_k_sweep(A8, B8, arch="blackwell", inst="m128n64k32.kind::f8f6f4.f32.e4m3.e4m3",
                                            ks=ks)}
for name, pts in sweeps.items():
    print(f"{name} sweep K=4096 max rel error = {pts[-1]['max_abs_rel_error']:.3g}")
fig, ax = plt.subplots(figsize=(7, 4))
for name, pts in sweeps.items():
    ax.plot(ks, [max(p["max_abs_rel_error"], 1e-12) for p in pts], marker="o", label=f"{name}, max")
    ax.plot(ks, [max(p["mean_abs_rel_error"], 1e-12) for p in pts], linestyle="--", label=f"{name}, mean")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("K")
ax.set_ylabel("relative error against the exact product")
ax.set_title("FP8 GEMM: error against K")
ax.legend(fontsize=7)
