# %% [markdown]
# # 3. Dynamic loss scaling: torch GradScaler vs DeepSpeed
#
# `fpscope.replay` runs the `fpscope replay` engine on a gradient trace: at each step it scales
# every recorded gradient by the policy's current scale, casts it to FP16 (exact counts), and
# updates the scale as the policy would (skip and back off on inf/NaN, grow after a clean run).
#
# The trace: a recorded one from `datasets/traces/` when one exists; otherwise (and in any case
# for the numbers checked by the tests) a synthetic one written here with the library's trace
# writer: 2400 steps of a 128-element gradient whose magnitude shrinks 2x every 400 steps (as
# gradients do when the loss falls), with rare spikes that overflow FP16 at the scalers' scales.

# %%
import glob
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

import fpscope

tmp = tempfile.mkdtemp()
trace_path = os.path.join(tmp, "shrinking.h5")
rng = np.random.default_rng(1)
spikes = {700, 710, 1900}
with fpscope.TraceWriter(trace_path, model="synthetic: normal(0, 1e-5 * 2^(-step/400)), spikes at 700 710 1900") as w:
    for step in range(2400):
        g = rng.normal(0, 1e-5 * 2.0 ** (-step / 400), 128).astype(np.float32)
        if step in spikes:
            g[:4] = 2.0  # 2 x 2^15 overflows FP16
        w.step(step, loss=float("nan"), lr=float("nan"), tensors={"w": g}, raw=False, hist=True)
print(f"trace: {trace_path}")

# %%
policies = ["static:1", "torch", "deepspeed"]
runs = {p: fpscope.replay(trace_path, p) for p in policies}
fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
for p, r in runs.items():
    steps = [s["step"] for s in r["steps"]]
    a1.step(steps, np.log2([s["scale"] for s in r["steps"]]), where="post", label=r["policy"])
    a2.plot(steps, [100 * s["fraction_of_nonzero_finite"]["underflow"] for s in r["steps"]], lw=0.8, label=p)
    sm = r["summary"]
    print(f"{p} skipped steps = {sm['skipped']}")
    print(f"{p} underflow = {sm['underflow']}")
    print(f"{p} final scale = {sm['scale_final']}")
a1.set_ylabel("log2 scale")
a1.legend(fontsize=8)
a1.set_title("The scale each policy keeps on the same gradients")
a2.set_ylabel("% of gradients underflowing")
a2.set_xlabel("step")
a2.legend(fontsize=8)
plt.show()

# %% [markdown]
# Without a scale (static:1) the gradients shrink into FP16's subnormals and then vanish. The
# dynamic scalers start at 2^16, lose a step to each overflow they meet and back off, then grow
# again after a clean run: GradScaler after 2000 steps, DeepSpeed after a window of 1000, with a
# hysteresis of 2 (how many overflows it tolerates before backing off). The printed skipped
# steps and final scales are the replay's own numbers.

# %%
real = sorted(glob.glob("datasets/traces/*.h5"))
print("recorded traces:", real or "none yet")
for path in real[:1]:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for p in ["torch", "deepspeed"]:
        r = fpscope.replay(path, p)
        ax.step([s["step"] for s in r["steps"]], np.log2([s["scale"] for s in r["steps"]]), where="post", label=p)
    ax.set_xlabel("step")
    ax.set_ylabel("log2 scale")
    ax.set_title(f"{os.path.basename(path)}")
    ax.legend()
    plt.show()
