"""A fake-GEMM for PyTorch: matrix products computed as a GPU tensor-core instruction computes them.

`mma_matmul(a, b, arch=, inst=)` is `a @ b` for 2-D float tensors, forward and backward, each
product run through `fpscope.gemm` (the library's bit-exact instruction models, MMA-Sim's) on the
CPU: the operands are first rounded to nearest-even into the instruction's input types, as a
kernel's cast before its GEMM would (`fpscope.encode` / `fpscope.decode`, the one rounding
routine), and the result comes back as float32 (an f16 output as its float32 value). The
backward pass computes the two products a kernel would, dA = dD @ B^T and dB = A^T @ dD, with
the same instruction (or `grad_inst`), dD rounded into its types in turn. So a training run can
see what an architecture's accumulation (alignment, truncation, the rounding of each step,
promotion every `promote` elements of K) does to its numbers.

`patch_linear(model, arch=, inst=)` makes every `nn.Linear` of a model (or those whose names
match `layers`) compute `x @ W^T` this way, the bias added in float32 after it; it returns a
handle whose `remove()` restores the modules (also a context manager).

This is an emulation on the CPU: about a second per 10^9 multiply-adds of fp16 on one core, fine
for small models and layers, not for a full-size training run.
"""
from __future__ import annotations

import fnmatch

import numpy as np

import fpscope


def _check(arch: str, inst: str, threads: int = 0) -> dict:
    """The instruction's description; ValueError (one line, from the library's option layer) for an
    unknown architecture or instruction, a block-scaled one, or a bad thread count."""
    info = fpscope.mma_info(arch, inst)
    if info["block"]:
        raise ValueError(f"{inst}: block-scaled instructions need scales; use fpscope.gemm with a_scale/b_scale")
    # threads are validated where gemm takes them: one tile of zeros, at once rather than at the
    # first forward pass
    fpscope.gemm(np.zeros((info["m"], info["k"]), np.float32), np.zeros((info["k"], info["n"]), np.float32), arch=arch,
                 inst=inst, threads=threads)
    return info


def _rounded(t, fmt: str, overflow: str | None) -> np.ndarray:
    """A tensor's values rounded to nearest-even into fmt, as float32 (the values gemm takes)."""
    x = np.ascontiguousarray(t.detach().to("cpu").float().numpy())
    kw = {} if overflow is None else {"overflow": overflow}
    return fpscope.decode(fpscope.encode(x, fmt, **kw), fmt)


def _gemm(a, b, arch: str, inst: str, promote: int, overflow: str | None, threads: int):
    import torch

    info = fpscope.mma_info(arch, inst)
    d = fpscope.gemm(_rounded(a, info["a"], overflow), _rounded(b, info["b"], overflow), arch=arch, inst=inst,
                     promote=promote, threads=threads)
    return torch.from_numpy(np.asarray(d, dtype=np.float32)).to(a.device)


def _function():
    import torch

    class MMAMatmul(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b, arch, inst, grad_inst, promote, overflow, threads):
            ctx.save_for_backward(a, b)
            ctx.cfg = (arch, grad_inst, promote, overflow, threads)
            return _gemm(a, b, arch, inst, promote, overflow, threads)

        @staticmethod
        def backward(ctx, grad):
            a, b = ctx.saved_tensors
            arch, inst, promote, overflow, threads = ctx.cfg
            ga = gb = None
            if ctx.needs_input_grad[0]:
                ga = _gemm(grad, b.t(), arch, inst, promote, overflow, threads)  # dgrad: dD @ B^T
            if ctx.needs_input_grad[1]:
                gb = _gemm(a.t(), grad, arch, inst, promote, overflow, threads)  # wgrad: A^T @ dD
            return ga, gb, None, None, None, None, None, None

    return MMAMatmul


_MMAMatmul = None


def mma_matmul(a, b, *, arch: str, inst: str, grad_inst: str | None = None, promote: int = 0,
               overflow: str | None = None, threads: int = 0):
    """a @ b (2-D float tensors, a: m x k, b: k x n) as `inst` of `arch` computes it, with
    autograd: the backward products dD @ b^T and a^T @ dD run as `grad_inst` (default: `inst`).
    Operands are rounded to nearest-even into the instruction's input types first (`overflow` as
    fpscope.encode takes it: e.g. "saturate" for FP8 inputs beyond the largest finite value).
    Returns float32 on a's device."""
    global _MMAMatmul
    import torch

    _check(arch, inst, threads)
    _check(arch, grad_inst or inst, threads)
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.dim() != 2 or b.dim() != 2:
        raise ValueError("mma_matmul: expected two 2-D tensors")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"mma_matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not chain")
    if _MMAMatmul is None:
        _MMAMatmul = _function()
    return _MMAMatmul.apply(a, b, arch, inst, grad_inst or inst, int(promote), overflow, int(threads))


class _Patch:
    def __init__(self, originals):
        self._originals = originals

    def remove(self):
        for module, forward in self._originals:
            if forward is None:
                del module.forward  # back to the class's forward
            else:
                module.forward = forward
        self._originals = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def patch_linear(model, *, arch: str, inst: str, layers=None, grad_inst: str | None = None, promote: int = 0,
                 overflow: str | None = None, threads: int = 0):
    """Every nn.Linear of `model` (those whose qualified names match one of the fnmatch patterns
    `layers`, if given) computes x @ W^T with mma_matmul, the bias added after it in float32;
    leading dimensions of x are flattened into rows. Returns a handle: `.remove()` (or leaving a
    `with` block) restores the modules. ValueError when nothing matches."""
    import torch

    _check(arch, inst, threads)
    _check(arch, grad_inst or inst, threads)
    pats = [layers] if isinstance(layers, str) else list(layers) if layers is not None else None
    originals = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        if pats is not None and not any(fnmatch.fnmatchcase(name, p) for p in pats):
            continue

        def forward(x, m=module):
            rows = x.reshape(-1, x.shape[-1])
            y = mma_matmul(rows, m.weight.t(), arch=arch, inst=inst, grad_inst=grad_inst, promote=promote,
                           overflow=overflow, threads=threads)
            if m.bias is not None:
                y = y + m.bias.float()
            return y.reshape(*x.shape[:-1], y.shape[-1]).to(x.dtype)

        originals.append((module, module.__dict__.get("forward")))
        module.forward = forward
    if not originals:
        raise ValueError(f"patch_linear: no nn.Linear matches {pats!r}")
    return _Patch(originals)
