"""An independent NumPy model of the formats, written from the IEEE 754 / OCP specifications
rather than from the library: decode by formula, and rounding of finite values by bracketing
them between the sorted representable magnitudes. The CLI's outputs are checked against it.

Conventions modelled (those of the ieee profile):
- rne ties go to the even code (the code's last bit); e8m0 has a 1-bit significand, whose
  ties go up (as ml_dtypes does);
- overflow past the largest finite value: inf (ieee), NaN (e4m3 "fn": S.1111.111; fnuz: 0x80),
  e8m0 NaN 0xFF, max finite in the fp6/fp4 formats; saturate (and the directed modes on their
  far side, and rtz) give +-max finite;
- e8m0: every value below its smallest 2^-127 becomes 2^-127; zero and negatives are NaN;
- fnuz: zero is always +0.
"""
import math

import numpy as np

# name: (bits, exponent bits, mantissa bits, bias, specials)
FORMATS = {
    "fp16": (16, 5, 10, 15, "ieee"),
    "bf16": (16, 8, 7, 127, "ieee"),
    "tf32": (19, 8, 10, 127, "ieee"),
    "e4m3": (8, 4, 3, 7, "fn"),
    "e5m2": (8, 5, 2, 15, "ieee"),
    "e4m3fnuz": (8, 4, 3, 8, "fnuz"),
    "e5m2fnuz": (8, 5, 2, 16, "fnuz"),
    "e2m3": (6, 2, 3, 1, "finite"),
    "e3m2": (6, 3, 2, 3, "finite"),
    "e2m1": (4, 2, 1, 1, "finite"),
    "e8m0": (8, 8, 0, 127, "e8m0"),
}

STORAGE = {1: np.uint8, 2: np.uint16, 4: np.uint32}


class Format:
    def __init__(self, name):
        self.name = name
        self.bits, self.e, self.m, self.bias, self.style = FORMATS[name]
        self.signed = self.style != "e8m0"
        self.sign_bit = 1 << (self.bits - 1) if self.signed else 0
        mag_bits = self.bits - 1 if self.signed else self.bits
        all_ones = (1 << mag_bits) - 1
        self.max_mag = {
            "ieee": (((1 << self.e) - 1) << self.m) - 1,
            "fn": all_ones - 1,
            "fnuz": all_ones,
            "finite": all_ones,
            "e8m0": all_ones - 1,
        }[self.style]
        self.mags = np.array([self.mag_value(k) for k in range(self.max_mag + 1)], dtype=np.float64)
        top, below = self.mags[-1], self.mags[-2]
        # The first value past the largest finite one, with the exponent range unbounded.
        self.beyond = 2 * top if self.style == "e8m0" else top + (top - below)
        self.ext = np.append(self.mags, self.beyond)
        self.dtype = STORAGE[1 if self.bits <= 8 else 2 if self.bits <= 16 else 4]

    def mag_value(self, k):
        if self.style == "e8m0":
            return math.ldexp(1.0, k - self.bias)
        ex, fr = k >> self.m, k & ((1 << self.m) - 1)
        if ex == 0:
            return math.ldexp(fr, 1 - self.bias - self.m)
        return math.ldexp(fr + (1 << self.m), ex - self.bias - self.m)

    def decode(self, code):
        """Exact value of one code (float64), NaN for NaN codes."""
        code = int(code)
        neg = bool(code & self.sign_bit)
        mag = code & ~self.sign_bit & ((1 << self.bits) - 1)
        if self.style == "e8m0":
            return math.nan if code == 0xFF else self.mag_value(code)
        if self.style == "fnuz" and code == self.sign_bit:
            return math.nan
        if mag > self.max_mag:
            if self.style == "ieee" and mag == self.max_mag + 1:
                return -math.inf if neg else math.inf
            return math.nan
        v = self.mag_value(mag)
        return -v if neg else v

    def decode_all(self, codes):
        table = np.array([self.decode(c) for c in range(1 << self.bits)], dtype=np.float64)
        return table[np.asarray(codes, dtype=np.int64)]

    def encode(self, x, mode="rne", saturate=False):
        """Codes of finite float64 values x (exactly what one rounding gives)."""
        x = np.asarray(x, dtype=np.float64)
        assert np.all(np.isfinite(x))
        neg = np.signbit(x)
        a = np.abs(x)
        T = self.ext
        n = len(T)
        i = np.searchsorted(T, a, side="right") - 1  # T[i] <= a; -1 below the smallest (e8m0)
        lo = np.clip(i, 0, n - 1)
        hi = np.clip(i + 1, 0, n - 1)
        exact = (i >= 0) & (T[lo] == a)
        past = i + 1 >= n  # beyond the virtual value: overflows whatever the mode
        if mode == "rtz":
            up = np.zeros_like(neg)
        elif mode == "rup":
            up = ~neg
        elif mode == "rdn":
            up = neg.copy()
        elif mode in ("rne", "rna"):
            mid = (T[lo] + T[hi]) / 2  # exact: these values have few significant bits
            tie = a == mid
            if mode == "rna" or self.style == "e8m0":
                up = (a > mid) | tie
            else:
                up = (a > mid) | (tie & (lo % 2 == 1))
        else:
            raise ValueError(mode)
        # Past the virtual value every choice overflows; which overflow result is decided below.
        idx = np.where(exact, i, np.where(up | past, i + 1, i))
        if self.style == "e8m0":
            idx = np.where(i < 0, 0, idx)
        over = idx > self.max_mag
        to_max = np.full(x.shape, bool(saturate))
        to_max |= mode == "rtz"
        if mode == "rup":
            to_max |= neg
        if mode == "rdn":
            to_max |= ~neg
        sign = np.where(neg, self.sign_bit, 0).astype(np.int64)
        inf_code = {
            "ieee": sign | (self.max_mag + 1),
            "fn": sign | (self.max_mag + 1),
            "fnuz": np.full(x.shape, self.sign_bit, dtype=np.int64),
            "finite": sign | self.max_mag,
            "e8m0": np.full(x.shape, 0xFF, dtype=np.int64),
        }[self.style]
        code = np.where(over, np.where(to_max, sign | self.max_mag, inf_code), sign | np.minimum(idx, self.max_mag))
        if self.style == "fnuz":
            code = np.where(~over & (idx == 0), 0, code)
        if self.style == "e8m0":
            code = np.where(neg | (a == 0), 0xFF, np.where(over, code, idx))
        return code.astype(self.dtype)

    def boundary_inputs(self):
        """Every magnitude, every midpoint, and their float64 neighbours, both signs."""
        v = self.ext
        mids = (v[:-1] + v[1:]) / 2
        pts = np.concatenate([v, mids, [2 * self.beyond, v[0] / 2, v[1] / 2]])
        pts = np.concatenate([pts, np.nextafter(pts, np.inf), np.nextafter(pts, -np.inf)])
        pts = pts[np.isfinite(pts)]
        return np.concatenate([pts, -pts])


def random_floats32(n, seed):
    """Finite float32 values of every exponent, from random bit patterns."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << 32, size=n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return x[np.isfinite(x)]


def random_floats64(n, seed, lo=-160, hi=140):
    """Finite float64 values with exponents in [lo, hi) (the formats' reach and past it)."""
    rng = np.random.default_rng(seed)
    m = rng.random(n) + 1.0
    e = rng.integers(lo, hi, size=n)
    s = rng.choice([-1.0, 1.0], size=n)
    return s * np.ldexp(m, e)
