#!/usr/bin/env python3
"""Write datasets/traces/synthetic.h5: a scripted trace whose answers are known, for tests.

    .venv/bin/python datasets/make_synthetic_traces.py

12 steps (0..11), every one recorded, the same 10 tensors in each, in this recording order:

  w          float32 (4, 8)  w[i] = (i - 16) * 2^-10 * (step + 1), i = 0..31 (row-major): exact
                             values, amax (step + 1) / 64, one zero (i = 16)
  b          float32 (16,)   b[j] = (j + 1) * 2^-12: amax 2^-8, no zero
  enc/layer%1.weight         float32 (3,) [0.25, -0.5, 0.75]: the name escaping, stored as the
                             link "enc%2Flayer%251.weight"
  h          float16 (8,)    0.5, -0.25, 0.125, 2^-24 (fp16's least subnormal), -0, 2^-10,
                             0.3330078125, 2^-14: stored as raw uint16 bits
                             0x3800 0xB400 0x3000 0x0001 0x8000 0x1400 0x3554 0x0400
  bf         bfloat16 (2, 3) 0.5, -0.5, 2^-133 (bf16's least subnormal), 0.1 (bits 0x3DCD), 0,
                             2^-126: raw uint16 bits 0x3F00 0xBF00 0x0001 0x3DCD 0x0000 0x0080
  zeros      float32 (10,)   all zero, the odd indices -0.0: zeros 10, amax 0
  sub        float32 (6,)    float32 subnormals only: 2^-149, -2^-149, 2^-140, -2^-130, 2^-127,
                             and the largest, 0x007FFFFF: amax 0x007FFFFF as float32
  empty      float32 (0,)    no elements: count 0, amax 0, empty datasets
  scalar     float32 ()      step * 2^-8 (a zero at step 0)
  ones       float32 (5,)    0.5 - 2^-25 * k, k = 0..4: runs of ones in the fraction (0.5, then
                             0x3EFFFFFF ... 0x3EFFFFFC: the histogram's narrowest buckets)

What each step is for:

  step 5   b[3] = 1.5 and b[7] = -1.5 (amax 1.5): at loss scale 2^16 these overflow fp16
           (1.5 * 2^16 = 98304 > 65504), at 2^15 they do not (49152). Every other finite |x|
           of the trace is at most 0.75 (enc/layer%1.weight), and 0.75 * 2^16 = 49152 < 65504.
           So a GradScaler replay starting at 2^16 skips step 5 and halves to 2^15.
  step 7   w[0] = +inf (it was -16 * 2^-10 * 8): a non-finite gradient (infs 1 in w; amax is
           the largest finite, 15 * 2^-10 * 8 = 0.1171875): a scaler skips it at any scale.
  step 9   b[0] = NaN: the same with a NaN (nans 1).
  step 3   loss unknown: @loss is NaN.  step 4: lr unknown: @lr is NaN.
  loss     10 / (step + 1); lr 0.01; loss_scale 65536 at steps 0..5, 32768 from step 6 (a
           scaler that halved after step 5's overflow; values are stored unscaled regardless).
  modes    steps 0..9 "both" (values and histogram), step 10 "hist" only, step 11 "raw" only.

The file is written by tools/record/fpscope_record.py, so it also tests that recorder; @created
is fixed (2024-01-01T00:00:00Z).
"""

import argparse
import pathlib
import sys

import ml_dtypes
import numpy as np

here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent / "tools" / "record"))
from fpscope_record import Recorder  # noqa: E402

F32 = np.float32


def tensors(step):
    w = ((np.arange(32, dtype=F32) - 16) * F32(2.0 ** -10) * F32(step + 1)).reshape(4, 8)
    b = (np.arange(16, dtype=F32) + 1) * F32(2.0 ** -12)
    if step == 5:
        b[3], b[7] = 1.5, -1.5
    if step == 7:
        w[0, 0] = np.inf
    if step == 9:
        b[0] = np.nan
    zeros = np.zeros(10, F32)
    zeros[1::2] = -0.0
    sub = np.array([2.0 ** -149, -2.0 ** -149, 2.0 ** -140, -2.0 ** -130, 2.0 ** -127], F32)
    sub = np.concatenate([sub, np.array([0x007FFFFF], np.uint32).view(F32)])
    bf = np.array([0x3F00, 0xBF00, 0x0001, 0x3DCD, 0x0000, 0x0080], np.uint16).view(ml_dtypes.bfloat16).reshape(2, 3)
    assert bf.reshape(-1)[3] == ml_dtypes.bfloat16(0.1)
    return {
        "w": w,
        "b": b,
        "enc/layer%1.weight": np.array([0.25, -0.5, 0.75], F32),
        "h": np.array([0.5, -0.25, 0.125, 2.0 ** -24, -0.0, 2.0 ** -10, 0.3330078125, 2.0 ** -14], np.float16),
        "bf": bf,
        "zeros": zeros,
        "sub": sub,
        "empty": np.zeros(0, F32),
        "scalar": np.array(step * 2.0 ** -8, F32),
        "ones": np.array([0.5 - k * 2.0 ** -25 for k in range(5)], F32),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(here / "traces" / "synthetic.h5"))
    args = ap.parse_args()
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with Recorder(args.out, "synthetic: scripted gradients with known answers; datasets/make_synthetic_traces.py",
                  dtype=None, created="2024-01-01T00:00:00Z", max_steps=12) as rec:
        for step in range(12):
            rec.record(step, tensors(step), loss=None if step == 3 else 10 / (step + 1),
                       lr=None if step == 4 else 0.01, loss_scale=65536.0 if step <= 5 else 32768.0,
                       mode="hist" if step == 10 else "raw" if step == 11 else "both")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
