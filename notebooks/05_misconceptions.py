# %% [markdown]
# # 5. Common misconceptions, answered by computation
#
# Each answer is computed by fpscope: `fpscope.cast` (one value, rounded once, with its IEEE
# flags), `fpscope.encode`/`decode` (arrays), `fpscope.replay` (the `fpscope replay` command).

# %%
import glob
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

import fpscope

# %% [markdown]
# ## "1.2e-7 is below FP16's range, so it vanishes"
#
# No. FP16's smallest *normal* is 2^-14 ≈ 6.1e-5, but below it come the subnormals, down to
# 2^-24 ≈ 6.0e-8. 1.2e-7 rounds to the subnormal 2 x 2^-24 = 2^-23: it survives, with a
# relative error of about 0.7% (a subnormal this small has only 2 significant bits).

# %%
bits, value, flags = fpscope.cast(1.2e-7, "fp16")
print(f"1.2e-7 in fp16 = {value}")
print(f"1.2e-7 in fp16 bits = {bits:#06x}")
print("is 2^-23:", value == 2.0 ** -23, " flags:", [k for k, v in flags.items() if v])
print(fpscope.cli("cast", "1.2e-7", "--to", "fp16").stdout)

# %% [markdown]
# ## "FP16's range is 6e-5 to 65504"
#
# Its normals are. Nonzero results reach down to 2^-24 (anything above 2^-25 survives), and at
# the top 65504 is the largest finite value but values round to it up to 65520, which is the
# first to overflow to inf. The relative error of a sweep of inputs across the whole range
# shows the three regions: flat (normal), growing (subnormal), total (vanished or overflowed).

# %%
fp16 = fpscope.format("fp16")
print(f"fp16 smallest surviving > 2^-25: {fpscope.cast(np.nextafter(2.0 ** -25, 1), 'fp16')[1]}")
print(f"65519.99 in fp16 = {fpscope.cast(65519.99, 'fp16')[1]}")
print(f"65520 in fp16 = {fpscope.cast(65520.0, 'fp16')[1]}")

xs = np.exp2(np.linspace(-28, 17, 20001))  # float64 inputs
q = fpscope.decode(fpscope.encode(xs, "fp16"), "fp16", dtype="float64")
with np.errstate(all="ignore"):
    rel = np.where(np.isfinite(q), np.abs(q - xs) / xs, 1.0)
fig, ax = plt.subplots(figsize=(10, 4))
ax.plot(np.log2(xs), np.maximum(rel, 1e-6), lw=0.6)
for v, label, c in [(fp16.min_subnormal, "min subnormal 2^-24", "#ff7f0e"), (fp16.min_normal, "min normal 2^-14", "#2ca02c"),
                    (fp16.max_finite, "max 65504", "#9467bd")]:
    ax.axvline(np.log2(v), ls="--", color=c, label=label)
ax.set_yscale("log")
ax.set_xlabel("log2 x")
ax.set_ylabel("relative error of fp16(x)")
ax.set_title("FP16's real range: relative error of the cast across 45 binades")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## "GradScaler doubles the scale after every clean step"
#
# No: PyTorch's GradScaler (init 2^16, growth 2, backoff 0.5, interval 2000) doubles it after
# 2000 consecutive steps without inf/NaN, and halves it (skipping the step) on an overflow.
# `fpscope.replay` runs the real replay engine (`fpscope replay --policy torch --json`) on a
# trace. To make the demonstration exact and self-contained this notebook writes a small
# synthetic trace with the library's trace writer (`fpscope.TraceWriter`): 2400 steps of one
# 256-element gradient, normal(0, 1e-3), with one spike of 1.0 at step 300 (1.0 x 2^16
# overflows FP16).

# %%
tmp = tempfile.mkdtemp()
trace_path = os.path.join(tmp, "synthetic.h5")
rng = np.random.default_rng(0)
with fpscope.TraceWriter(trace_path, model="synthetic: normal(0, 1e-3) gradients, spike at step 300") as w:
    for step in range(2400):
        g = rng.normal(0, 1e-3, 256).astype(np.float32)
        if step == 300:
            g[0] = 1.0
        w.step(step, loss=float("nan"), lr=float("nan"), tensors={"w": g}, raw=False, hist=True)

print(f"trace: {trace_path}")
r = fpscope.replay(trace_path, "torch")
steps = np.array([s["step"] for s in r["steps"]])
scale = np.array([s["scale"] for s in r["steps"]])
skipped = [s["step"] for s in r["steps"] if s["skipped"]]
changes = [(int(steps[i]), scale[i - 1], scale[i]) for i in range(1, len(scale)) if scale[i] != scale[i - 1]]
print("policy:", r["policy"])
print(f"torch skipped steps = {skipped}")
for at, old, new in changes:
    print(f"scale {old:g} -> {new:g} at step {at}")
print(f"torch scale changes = {r['summary']['scale_changes']}")

fig, ax = plt.subplots(figsize=(10, 3.5))
ax.step(steps, np.log2(scale), where="post")
for s in skipped:
    ax.axvline(s, color="#d62728", ls=":", label="overflow: step skipped, scale halved")
ax.set_xlabel("step")
ax.set_ylabel("log2 scale")
ax.set_title("torch GradScaler on the synthetic trace: growth only after 2000 clean steps")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Recorded traces of real runs, where they exist (`datasets/traces/*.h5`), replay the same way:

# %%
real = sorted(glob.glob("datasets/traces/*.h5"))
print("recorded traces:", real or "none yet")
if real:
    rr = fpscope.replay(real[0], "torch")
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.step([s["step"] for s in rr["steps"]], np.log2([s["scale"] for s in rr["steps"]]), where="post")
    ax.set_xlabel("step")
    ax.set_ylabel("log2 scale")
    ax.set_title(f"torch GradScaler replayed on {os.path.basename(real[0])}")
    plt.show()

# %% [markdown]
# ## "BF16 has FP32's range, so it cannot underflow"
#
# It has FP32's exponent, so it underflows where FP32 does, at about 1e-38 for normals and
# 2^-133 for its smallest subnormal (7 mantissa bits: 2^-126 x 2^-7). Half of that ties to
# zero. Below 2^-126 the precision drains one bit per binade, as the sweep shows.

# %%
for e in (-126, -130, -133, -134):
    print(f"2^{e} in bf16 = {fpscope.cast(2.0 ** e, 'bf16')[1]!r}")
print(f"bf16 min subnormal = {fpscope.format('bf16').min_subnormal}")

xs = np.exp2(np.linspace(-136, -120, 4001))
q = fpscope.decode(fpscope.encode(xs, "bf16"), "bf16", dtype="float64")
rel = np.abs(q - xs) / xs
fig, ax = plt.subplots(figsize=(10, 3.5))
ax.plot(np.log2(xs), np.maximum(rel, 1e-6), lw=0.6)
ax.axvline(-126, ls="--", color="#2ca02c", label="min normal 2^-126")
ax.axvline(-133, ls="--", color="#ff7f0e", label="min subnormal 2^-133")
ax.set_yscale("log")
ax.set_xlabel("log2 x")
ax.set_ylabel("relative error of bf16(x)")
ax.set_title("BF16 underflows too: subnormals, then zero below 2^-134")
ax.legend(fontsize=8)
plt.show()
