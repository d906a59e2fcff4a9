# %% [markdown]
# # 2. Underflow thresholds on real gradients
#
# The gradients of a small character transformer at training step 300
# (`datasets/lm-grads/step0300.npy`, recorded by `datasets/record_lm_grads.py`), on a log2
# axis, against the thresholds of each format. The counts are exact: `fpscope.class_counts`
# casts (in effect) every value, the same computation as `fpscope hist`.

# %%
import matplotlib.pyplot as plt
import numpy as np

import fpscope

x = np.load("datasets/lm-grads/step0300.npy")
exps, counts = fpscope.binades(x)  # floor(log2|x|) -> count, nonzero finite values
print(f"{x.size} values, {int(np.count_nonzero(x == 0))} zeros, binades 2^{exps.min()} .. 2^{exps.max()}")

# %% [markdown]
# A value vanishes when it rounds to zero: in FP16 everything at or below half the smallest
# subnormal, 2^-25 (the tie rounds to even, which is zero). Between that and the smallest
# normal 2^-14 values survive as subnormals, with fewer significant bits the smaller they are.

# %%
fp16 = fpscope.format("fp16")
half_sub = fp16.min_subnormal / 2
print("cast(2^-25) ->", fpscope.cast(half_sub, "fp16")[1], "  cast(next above 2^-25) ->",
      fpscope.cast(np.nextafter(half_sub, 1.0), "fp16")[1])


def draw(ax, exps, counts, f, shift=0, title=None):
    """The log2 histogram of the values times 2^shift against format f's thresholds."""
    ax.bar(exps + shift, counts, width=1.0, align="edge", color="#7f7f7f")
    lo, hi = np.log2(f.min_subnormal / 2), np.log2(f.min_normal)
    ax.axvspan(-1000, lo, color="#d62728", alpha=0.2, label="vanishes")
    ax.axvspan(lo, hi, color="#ff7f0e", alpha=0.15, label="subnormal")
    ax.axvline(np.log2(f.min_subnormal), color="#ff7f0e", ls="--", lw=1, label=f"min subnormal 2^{np.log2(f.min_subnormal):.0f}")
    ax.axvline(hi, color="#2ca02c", ls="--", lw=1, label=f"min normal 2^{hi:.0f}")
    ax.axvline(np.log2(f.max_finite), color="#9467bd", ls="--", lw=1, label="max")
    ax.set_yscale("log")
    ax.set_xlabel("log2|x · S|")
    ax.set_title(title or f.name)
    ax.legend(fontsize=7, loc="upper left")


fig, ax = plt.subplots(figsize=(10, 4))
draw(ax, exps, counts, fp16, title="step 300 gradients against FP16, no loss scaling")
ax.set_xlim(-45, 20)
plt.show()
c = fpscope.class_counts(x, "fp16", [1.0])
print(f"fp16 underflow at scale 1 = {int(c['underflow'][0])}")
print(f"fp16 subnormal at scale 1 = {int(c['subnormal'][0])}")

# %% [markdown]
# ## Loss scaling shifts the histogram
#
# Multiplying the loss by S multiplies every gradient by S: the histogram slides right by
# log2 S binades, out of the vanishing region, until its top hits the maximum.
#
# The printed scales are `fpscope.recommend`'s, the rows `fpscope hist` prints: "fewest lost"
# has the fewest values underflowing or overflowing, then the fewest subnormal, and of a run of
# tied scales the middle one; "GradScaler-style" is the largest power of two at which nothing
# overflows, less one binade of headroom.

# %%
scales = [2.0 ** k for k in (0, 8, 16)]
fig, axes = plt.subplots(len(scales), 1, figsize=(10, 8), sharex=True)
for ax, s in zip(axes, scales):
    draw(ax, exps, counts, fp16, shift=int(np.log2(s)), title=f"FP16, S = 2^{int(np.log2(s))}")
    ax.set_xlim(-45, 20)
plt.tight_layout()
plt.show()

fig, ax = plt.subplots(figsize=(9, 4))
for name in ["fp16", "bf16", "e4m3", "e5m2"]:
    s = fpscope.sweep(x, name)  # exact counts at every float32 power of two, 2^-126 .. 2^127
    shown = (s["log2_scale"] >= 0) & (s["log2_scale"] <= 32)
    nz = x.size - s["zero"][0] - s["nonfinite"][0]
    lost = (s["underflow"] + s["overflow"]) / nz
    ax.plot(s["log2_scale"][shown], 100 * lost[shown], marker=".", label=name)
    rec = fpscope.recommend(s)  # the scales `fpscope hist` recommends, from the same sweep
    print(f"{name} fewest lost at scale = 2^{rec['fewest_lost']['log2_scale']}")
    print(f"{name} GradScaler-style scale = 2^{rec['gradscaler']['log2_scale']}")
ax.set_yscale("symlog", linthresh=1e-3)
ax.set_xlabel("log2 S")
ax.set_ylabel("% of nonzero values lost (underflow + overflow)")
ax.set_title("What each loss scale loses, per format")
ax.legend()
plt.show()

# %% [markdown]
# ## BF16 and FP8
#
# BF16 has FP32's exponent range: at S = 1 nothing here vanishes. The FP8 formats have ranges
# of about 18 (E4M3) and 32 (E5M2) binades, narrower than the gradients' own spread, so some
# values are lost at every scale: the scale only chooses which end.

# %%
fig, axes = plt.subplots(3, 1, figsize=(10, 9))
for ax, name, s in zip(axes, ["bf16", "e4m3", "e5m2"], [1.0, 2.0 ** 10, 2.0 ** 10]):
    f = fpscope.format(name)
    draw(ax, exps, counts, f, shift=int(np.log2(s)), title=f"{name}, S = 2^{int(np.log2(s))}")
    ax.set_xlim(-140 if name == "bf16" else -45, 20 if name != "bf16" else 130)
    c = fpscope.class_counts(x, name, [s])
    print(f"{name} underflow at scale 2^{int(np.log2(s))} = {int(c['underflow'][0])}")
plt.tight_layout()
plt.show()
