# %% [markdown]
# # 1. Formats: where the bits go
#
# Every number below comes from fpscope's emulator (`import fpscope`): the format properties,
# and every representable value, obtained by decoding every code. Nothing is typed in by hand
# except FP32's layout, the input type that is not an emulated format.

# %%
import matplotlib.pyplot as plt
import numpy as np

import fpscope

names = ["fp16", "bf16", "e4m3", "e5m2"]
fmts = {n: fpscope.format(n) for n in names}
for f in fmts.values():
    print(f"{f.name:5} bits {f.bits:2}  exponent {f.exponent_bits}  mantissa {f.mantissa_bits:2}  bias {f.bias:3}  "
          f"max {f.max_finite:.6g}  min normal {f.min_normal:.6g}  min subnormal {f.min_subnormal:.6g}  "
          f"inf {f.has_inf}  nan {f.has_nan}")

# %% [markdown]
# ## Bit layouts, to scale
#
# One box per bit: sign, exponent, mantissa. BF16 keeps FP32's 8 exponent bits (its range)
# and drops mantissa bits (its precision); FP16 splits the difference; the FP8 formats have
# barely any of either.

# %%
layouts = [("fp32", 1, 8, 23)] + [(f.name, 1, f.exponent_bits, f.mantissa_bits) for f in fmts.values()]
fig, ax = plt.subplots(figsize=(10, 3.2))
colours = {"sign": "#d62728", "exponent": "#2ca02c", "mantissa": "#1f77b4"}
for row, (name, s, e, m) in enumerate(layouts):
    x = 0
    for part, width in (("sign", s), ("exponent", e), ("mantissa", m)):
        for _ in range(width):
            ax.add_patch(plt.Rectangle((x, -row), 0.95, 0.8, color=colours[part]))
            x += 1
    ax.text(-0.5, -row + 0.4, name, ha="right", va="center", fontsize=11)
    ax.text(x + 0.5, -row + 0.4, f"1 + {e} + {m} = {s + e + m} bits", va="center", fontsize=9)
ax.set_xlim(-4, 40)
ax.set_ylim(-len(layouts) + 0.6, 1)
ax.axis("off")
ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()], labels=list(colours),
          loc="lower right", ncol=3, frameon=False)
ax.set_title("Bit layouts (one box per bit)")
plt.show()

# %% [markdown]
# ## Number lines
#
# Decoding every code gives every representable value. Positive finite values on a log2 axis:
# the spacing is even inside each binade (the mantissa) and the binades go on for as long as
# the exponent allows; subnormals thin out at the bottom.

# %%
def positive_values(name):
    f = fmts.get(name) or fpscope.format(name)
    codes = np.arange(1 << f.bits, dtype=f.dtype)
    v = fpscope.decode(codes, name, dtype="float64")
    return np.unique(v[np.isfinite(v) & (v > 0)])


fig, axes = plt.subplots(3, 1, figsize=(10, 5), sharex=True)
for ax, name in zip(axes, ["e4m3", "e5m2", "e2m1"]):
    v = positive_values(name)
    f = fpscope.format(name)
    normal = v >= f.min_normal
    ax.vlines(np.log2(v[normal]), 0, 1, color="#1f77b4", lw=1, label="normal")
    ax.vlines(np.log2(v[~normal]), 0, 1, color="#ff7f0e", lw=1, label="subnormal")
    ax.set_yticks([])
    ax.set_ylabel(name, rotation=0, ha="right", va="center")
    print(f"{name} positive finite values = {len(v)}")
axes[0].legend(loc="upper left", ncol=2, fontsize=8)
axes[-1].set_xlabel("log2(value)")
fig.suptitle("Every positive finite value of three small formats")
plt.show()

# %% [markdown]
# On a linear axis the same E4M3 values crowd around zero: the absolute spacing doubles every
# binade, so between 256 and 448 it is 32.

# %%
v = positive_values("e4m3")
fig, ax = plt.subplots(figsize=(10, 1.6))
ax.vlines(v, 0, 1, lw=0.8)
ax.set_yticks([])
ax.set_xlabel("value (linear)")
ax.set_title("E4M3 positive values on a linear axis")
plt.show()
print(f"e4m3 spacing below max = {v[-1] - v[-2]}")

# %% [markdown]
# ## Range against precision
#
# Range: binades from the smallest subnormal to the largest finite value. Precision: decimal
# digits of the significand, (mantissa bits + 1) x log10(2). Each format buys one with the other.

# %%
fig, ax = plt.subplots(figsize=(7, 4.5))
for name in fpscope.formats():
    f = fpscope.format(name)
    if not f.signed:
        continue  # e8m0 is an exponent-only scale, not a number format
    binades = np.log2(f.max_finite / f.min_subnormal)
    digits = (f.mantissa_bits + 1) * np.log10(2)
    ax.scatter(binades, digits, s=40)
    ax.annotate(name, (binades, digits), textcoords="offset points", xytext=(5, 3))
ax.set_xscale("log", base=2)
ax.set_xlabel("range: binades from min subnormal to max")
ax.set_ylabel("precision: decimal digits")
ax.set_title("Range vs precision of the built-in formats")
plt.show()
for name in names:
    f = fmts[name]
    print(f"{name} max = {f.max_finite}")
    print(f"{name} min subnormal = {f.min_subnormal}")
