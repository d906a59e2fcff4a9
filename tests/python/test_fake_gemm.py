"""fpscope.fake_gemm: a PyTorch fake-GEMM on the tensor-core models (issue 17). The references are
written here: operands rounded by NumPy's own float16 / ml_dtypes' bfloat16 casts (not fpscope's),
products by fpscope.gemm (whose models the MMA-Sim oracle proves), gradients by torch's autograd
in float64."""
import numpy as np
import pytest

import fpscope

torch = pytest.importorskip("torch")
from fpscope.fake_gemm import mma_matmul, patch_linear  # noqa: E402

F16 = {"arch": "hopper", "inst": "m16n8k16.f32.f16.f16.f32"}


def rng_tensors(*shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=torch.float32) for s in shapes]


def h(t):
    """NumPy's float16 rounding (nearest-even), as float32 values."""
    return t.detach().numpy().astype(np.float16).astype(np.float32)


def test_forward_is_the_instruction_gemm_of_the_rounded_operands():
    a, b = rng_tensors((40, 48), (48, 24))
    d = mma_matmul(a, b, **F16)
    want = fpscope.gemm(h(a), h(b), **F16)
    assert d.dtype == torch.float32 and d.shape == (40, 24)
    assert np.array_equal(d.numpy().view(np.uint32), want.view(np.uint32))
    # not the float32 product: the rounding of the inputs and the instruction's accumulation show
    assert not np.array_equal(d.numpy(), (a @ b).numpy())


def test_backward_runs_the_dgrad_and_wgrad_products_on_the_instruction():
    a, b, g = rng_tensors((32, 48), (48, 16), (32, 16), seed=1)
    a.requires_grad_(True)
    b.requires_grad_(True)
    mma_matmul(a, b, **F16).backward(g)
    ga = fpscope.gemm(h(g), np.ascontiguousarray(h(b).T), **F16)
    gb = fpscope.gemm(np.ascontiguousarray(h(a).T), h(g), **F16)
    assert np.array_equal(a.grad.numpy().view(np.uint32), ga.view(np.uint32))
    assert np.array_equal(b.grad.numpy().view(np.uint32), gb.view(np.uint32))


def test_gradients_are_close_to_float64_autograd():
    a, b, g = rng_tensors((24, 64), (64, 8), (24, 8), seed=2)
    a64, b64 = a.double().requires_grad_(True), b.double().requires_grad_(True)
    (a64 @ b64).backward(g.double())
    a.requires_grad_(True)
    b.requires_grad_(True)
    d = mma_matmul(a, b, arch="ampere", inst="m16n8k16.f32.bf16.bf16.f32")
    d.backward(g)
    # bf16 inputs: 2^-9 relative per operand; sums of 64 (24) terms of either sign
    assert torch.allclose(d.double(), a64.detach() @ b64.detach(), rtol=0, atol=0.05 * 8)
    assert torch.allclose(a.grad.double(), a64.grad, rtol=0, atol=0.05 * 3)
    assert torch.allclose(b.grad.double(), b64.grad, rtol=0, atol=0.05 * 5)


def test_the_architecture_changes_the_bits():
    # Products that cancel leave residues whose low bits depend on each model's alignment and
    # truncation width: Ampere's (F = 24, 8 products a step) and Hopper's (F = 25, 16 a step).
    g = np.random.default_rng(3)
    a = torch.from_numpy((g.standard_normal((64, 256)) * np.exp2(g.integers(-8, 8, (64, 256)))).astype(np.float32))
    b = torch.from_numpy(g.standard_normal((256, 32)).astype(np.float32))
    amp = mma_matmul(a, b, arch="ampere", inst="m16n8k16.f32.f16.f16.f32")
    hop = mma_matmul(a, b, **F16)
    assert (amp.numpy().view(np.uint32) != hop.numpy().view(np.uint32)).sum() > 0


def mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))


def test_patch_linear_computes_every_linear_on_the_instruction_and_remove_restores():
    model = mlp()
    x, = rng_tensors((3, 5, 32), seed=4)  # leading dimensions are flattened into rows
    before = model(x).detach().clone()
    with patch_linear(model, **F16) as patch:
        y = model(x)
        h1 = mma_matmul(x.reshape(-1, 32), model[0].weight.t(), **F16) + model[0].bias
        want = mma_matmul(torch.relu(h1), model[2].weight.t(), **F16) + model[2].bias
        assert torch.equal(y, want.reshape(3, 5, 8))
        assert not torch.equal(y, before)
        y.square().sum().backward()  # gradients flow to every parameter
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert patch._originals == []
    assert torch.equal(model(x), before)  # restored: the float32 forward again


def test_patch_linear_selects_layers_by_name():
    model = mlp()
    x, = rng_tensors((4, 32), seed=5)
    handle = patch_linear(model, layers="2", **F16)  # only the second Linear
    y = model(x)
    want = mma_matmul(torch.relu(model[0](x)), model[2].weight.t(), **F16) + model[2].bias
    assert torch.equal(y, want)
    handle.remove()
    with pytest.raises(ValueError, match="no nn.Linear matches"):
        patch_linear(model, layers=["encoder.*"], **F16)


def train(patched, steps=30):
    model = mlp(1)
    x, w = rng_tensors((64, 32), (32, 8), seed=6)
    target = x @ w / 32 ** 0.5
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    patch = patch_linear(model, arch="hopper", inst="m64n8k16.f32.bf16.bf16") if patched else None
    for _ in range(steps):
        opt.zero_grad()
        loss = (model(x) - target).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    if patch:
        patch.remove()
    return losses


def test_a_short_training_run_learns_through_the_fake_gemm_as_float32_does():
    fake, f32 = train(True), train(False)
    assert fake[-1] < 0.6 * fake[0]
    assert fake != f32  # bf16 operands and the instruction's sums do change the run ...
    assert abs(fake[-1] - f32[-1]) < 0.1 * f32[-1]  # ... a little, on this small one


@pytest.mark.parametrize("kw, match", [
    ({"arch": "pascal", "inst": "m16n8k16.f32.f16.f16.f32"}, "arch"),
    ({"arch": "hopper", "inst": "m16n8k99.f32.f16.f16.f32"}, "inst|instruction"),
    ({"arch": "blackwell", "inst": "m128n8k32.kind::mxf8f6f4.block32.f32.e4m3.e4m3.ue8m0"}, "block-scaled"),
    ({**F16, "grad_inst": "m16n8k8.f32.f16.f16.f99"}, "inst|instruction"),
])
def test_bad_instructions_are_refused(kw, match):
    a, b = rng_tensors((16, 16), (16, 8))
    with pytest.raises(ValueError, match=match):
        mma_matmul(a, b, **kw)
    with pytest.raises(ValueError, match=match):
        patch_linear(mlp(), **kw)


def test_bad_shapes_are_refused():
    a, b = rng_tensors((16, 16), (8, 8))
    with pytest.raises(ValueError, match="do not chain"):
        mma_matmul(a, b, **F16)
    with pytest.raises(ValueError, match="2-D"):
        mma_matmul(a.reshape(2, 8, 16), b, **F16)
