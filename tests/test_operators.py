"""Operator contract tests, parametrized over the registry plus parameter variants.

Properties checked with tolerances: adjointness, Moore-Penrose identities of the
pseudo-inverse, the null-space projector, the spectral norm, simulated noise statistics,
kernel and mask geometry, input errors, device moves and spec round trips.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_invrec.core.errors import InputError
from napari_invrec.core.linalg import power_iteration
from napari_invrec.core.operators import OPERATORS, NoiseParams, make_operator
from napari_invrec.core.operators.blur import Blur, BlurParams
from napari_invrec.core.operators.inpaint import Inpaint, InpaintParams
from napari_invrec.core.operators.mri_multicoil import simulated_coil_maps
from napari_invrec.core.operators.registry import operator_arrays, operator_from_spec

SHAPES = [(32, 48), (33, 31)]  # non-square catches H/W mix-ups; odd sizes catch shift errors


def _custom_kernel(shape):
    return np.random.default_rng(1).random((5, 3)) + 0.1  # asymmetric, non-square


def _custom_mask(shape):
    return (np.random.default_rng(2).random(shape) > 0.4).astype(np.uint8)


def _custom_columns(shape):
    cols = np.zeros(shape[1])
    cols[[1, 5, shape[1] // 2, shape[1] - 3]] = 1
    return cols


VARIANTS = {
    "blur-disk": ("blur", lambda s: {"kernel": "disk", "radius": 3.0}),
    "blur-motion": ("blur", lambda s: {"kernel": "motion", "length": 7.0, "angle": 30.0}),
    "blur-custom": ("blur", lambda s: {"kernel": "custom", "kernel_array": _custom_kernel(s)}),
    "blur-wide": ("blur", lambda s: {"sigma": 12.0}),  # wider than the image: folded
    "inpaint-box": ("inpaint", lambda s: {"mask": "box", "box_size": 0.4}),
    "inpaint-custom": ("inpaint", lambda s: {"mask": "custom", "mask_array": _custom_mask(s)}),
    "mri-equispaced": ("mri", lambda s: {"pattern": "equispaced", "acceleration": 3.0}),
    "mri-custom-columns": ("mri", lambda s: {"mask_array": _custom_columns(s)}),
    "mri-custom-2d": ("mri", lambda s: {"mask_array": _custom_mask(s)}),
    "mri-multicoil-equispaced": ("mri-multicoil", lambda s: {"pattern": "equispaced",
                                                             "acceleration": 3.0, "n_coils": 4}),
    "mri-multicoil-custom-maps": ("mri-multicoil", lambda s: {
        "coil_maps_array": 0.5 * simulated_coil_maps(3, s).numpy()}),
    "mri-multicoil-custom-columns": ("mri-multicoil", lambda s: {"mask_array":
                                                                 _custom_columns(s)}),
    "cs-bernoulli": ("cs", lambda s: {"ensemble": "bernoulli"}),
    "cs-structured": ("cs", lambda s: {"ensemble": "structured", "ratio": 0.3}),
    "superres-x3": ("superres", lambda s: {"factor": 3, "sigma": 1.0}),
}
# every registered linear family with its defaults (nonlinear families have their own tests)
CASES = {name: (name, lambda s: {}) for name, spec in OPERATORS.items() if spec.linear} | VARIANTS


def build(case: str, shape, **kw):
    name, fn = CASES[case]
    return make_operator(name, shape, **(fn(shape) | kw))


@pytest.fixture(params=[(c, s) for c in CASES for s in SHAPES],
                ids=[f"{c}-{s[0]}x{s[1]}" for c in CASES for s in SHAPES])
def op(request):
    case, shape = request.param
    return build(case, shape)


def rand_image(op, b=2, c=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((b, c, *op.shape), generator=g, dtype=op.image_dtype)


def rand_meas(op, b=2, c=1, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((b, c, *op.measurement_shape), generator=g, dtype=op.measurement_dtype)


def inner(u, v):
    """Per-batch Hermitian inner product (complex)."""
    return (torch.conj(u) * v).flatten(1).sum(1)


def nrm(u):
    return u.abs().flatten(1).norm(dim=1)


def truncation(op) -> float:
    """Absolute gain of A on its numerical null space (0 unless the pinv truncates)."""
    return getattr(op, "pinv_rcond", 0.0) * op.norm()


# ---------------------------------------------------------------------------- the contract
def test_shapes_and_dtypes(op):
    x = rand_image(op, b=3, c=2)
    y = op.A(x)
    assert y.shape == (3, 2, *op.measurement_shape) and y.dtype == op.measurement_dtype
    z = op.A_adjoint(y)
    assert z.shape == x.shape and z.dtype == op.image_dtype
    assert op.A_pinv(y).shape == x.shape
    # channels and batch elements are independent. One element alone takes another code path
    # (GEMV instead of GEMM, an unbatched FFT), so the two round differently: each output is a
    # sum over the n image pixels, whose float32 error is at most n * eps * ||A|| ||x||
    # (Higham, Thm 3.5), with ||A|| ||x|| ~ ||A x|| for a random x. Coupling would be O(1).
    one = op.A(x[1:2, 1:2])
    n = x[0, 0].numel()
    bound = n * torch.finfo(torch.float32).eps * float(nrm(y[1:2, 1:2]))
    assert float((one - y[1:2, 1:2]).abs().max()) <= bound


def test_adjointness(op):
    x, y = rand_image(op), rand_meas(op)
    ax = op.A(x)
    lhs, rhs = inner(ax, y), inner(x, op.A_adjoint(y))
    assert torch.all((lhs - rhs).abs() <= 1e-4 * nrm(ax) * nrm(y))


def test_pseudo_inverse(op):
    x, y = rand_image(op), rand_meas(op)
    ax = op.A(x)
    res = nrm(op.A(op.A_pinv(ax)) - ax)
    assert torch.all(res <= 1e-4 * nrm(ax) + truncation(op) * nrm(x))
    p = op.A_pinv(y)
    if op.name == "lensless":
        # regularised (A^H A + rho I)^-1 A^H y: its optimality condition, to CG's tolerance
        rho = (op.pinv_rcond * op.norm()) ** 2
        grad = op.A_adjoint(op.A(p) - y) + rho * p
        assert torch.all(nrm(grad) <= 1e-4 * nrm(op.A_adjoint(y)))
        return
    assert torch.all(nrm(op.A_pinv(op.A(p)) - p) <= 1e-4 * nrm(p))


def test_null_space(op):
    x = rand_image(op)
    n = op.null_project(x)
    assert torch.all(nrm(op.A(n)) <= 1e-4 * nrm(op.A(x)) + truncation(op) * nrm(n))
    if op.name == "lensless":
        # the regularised pinv's null projector rho (A^H A + rho I)^-1 is a filter with gains
        # in [0, 1] (not idempotent): <P x, x> >= ||P x||^2, to CG's tolerance
        assert torch.all(inner(n, x).real >= nrm(n) ** 2 - 1e-4 * nrm(x) ** 2)
    else:
        assert torch.all(nrm(op.null_project(n) - n) <= 1e-4 * nrm(x))
    assert torch.all(nrm(op.range_project(x) + n - x) <= 1e-5 * nrm(x))


def test_norm_matches_power_iteration(op):
    x0 = rand_image(op, b=1, seed=5)
    brute = power_iteration(op.AtA, x0, iters=500, tol=1e-8) ** 0.5
    assert abs(op.norm() - brute) <= 0.01 * op.norm()


def test_measure_seed_and_noise_level(op):
    g = torch.Generator().manual_seed(7)
    x = torch.rand((4, 1, *op.shape), generator=g)
    sigma = 0.1
    y1 = op.measure(x, NoiseParams("gaussian", sigma=sigma, seed=3))
    y2 = op.measure(x, NoiseParams("gaussian", sigma=sigma, seed=3))
    y3 = op.measure(x, NoiseParams("gaussian", sigma=sigma, seed=4))
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)
    clean = op.A(x)
    assert torch.equal(op.measure(x, NoiseParams("none")), clean)
    d = y1 - clean
    measured = torch.as_tensor(op.mask != 0).expand_as(d) if hasattr(op, "mask") \
        else torch.ones_like(d, dtype=torch.bool)
    est = d[measured].abs().pow(2).mean().sqrt().item()  # E|n|^2 = sigma^2, real or complex
    assert abs(est - sigma) <= 0.1 * sigma
    assert torch.all(y1[~measured] == 0)
    if d.is_complex():  # circular: real and imaginary parts each carry half the power
        re, im = d[measured].real.pow(2).mean(), d[measured].imag.pow(2).mean()
        assert abs(re / im - 1) < 0.2


def test_move_to_cpu_keeps_dtypes(op):
    x = rand_image(op)
    before = op.A(x)
    dtypes = {k: b.dtype for k, b in op.named_buffers()}
    op2 = op.to("cpu")
    assert {k: b.dtype for k, b in op2.named_buffers()} == dtypes
    assert torch.equal(op2.A(x), before) and op2.device.type == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_parity(op):
    x = rand_image(op)
    ref = op.A(x)
    spec, arrays = op.spec(), operator_arrays(op)
    built = operator_from_spec(spec, arrays, device="cuda")  # masks drawn on CPU, then moved
    for gop in (op.to("cuda"), built):
        out = gop.A(x.cuda()).cpu()
        assert (out - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())
        back = gop.A_adjoint(gop.A(x.cuda())).cpu()
        assert back.dtype == op.image_dtype and back.shape == x.shape


def test_spec_round_trip(op):
    spec = json.loads(json.dumps(op.spec()))
    op2 = operator_from_spec(spec, operator_arrays(op))
    x = rand_image(op)
    torch.testing.assert_close(op2.A(x), op.A(x), rtol=0, atol=0)


def test_wrong_shapes_raise(op):
    h, w = op.shape
    with pytest.raises(InputError):
        op.A(torch.zeros(1, 1, h + 1, w, dtype=op.image_dtype))
    with pytest.raises(InputError):
        op.A(torch.zeros(h, w, dtype=op.image_dtype))
    with pytest.raises(InputError):
        op.A_adjoint(torch.zeros(1, 1, h, w + 1, dtype=op.measurement_dtype))


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_unknown_parameter_raises(name):
    with pytest.raises(InputError, match="unknown parameter"):
        make_operator(name, (32, 48), not_a_field=1)


# ---------------------------------------------------------------------------- blur
def _delta(shape):
    d = torch.zeros(1, 1, *shape)
    d[..., shape[0] // 2, shape[1] // 2] = 1.0
    return d


def _centroid(img: torch.Tensor):
    img = img[0, 0].double()
    r = torch.arange(img.shape[0], dtype=torch.float64)
    c = torch.arange(img.shape[1], dtype=torch.float64)
    s = img.sum()
    return float((img.sum(1) * r).sum() / s), float((img.sum(0) * c).sum() / s)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kw", [{}, {"kernel": "disk", "radius": 2.5},
                                {"kernel": "motion", "length": 9.0, "angle": 30.0},
                                {"kernel": "motion", "length": 6.0, "angle": -70.0},
                                {"kernel_size": 5}])
def test_blur_does_not_shift_and_preserves_flux(shape, kw):
    op = make_operator("blur", shape, **kw)
    k = op.kernel_image()
    assert k.shape[0] % 2 == 1 and k.shape[1] % 2 == 1
    assert abs(float(k.sum()) - 1) < 1e-5 and k.min() >= 0
    out = op.A(_delta(shape))
    cr, cc = _centroid(out)
    assert abs(cr - shape[0] // 2) < 1e-3 and abs(cc - shape[1] // 2) < 1e-3
    torch.testing.assert_close(op.A(torch.ones(1, 1, *shape)), torch.ones(1, 1, *shape))
    # the spectral norm of a non-negative kernel is K(0) = 1, computed here independently
    h, w = k.shape
    big = np.zeros(shape)
    big[:h, :w] = k
    kf = np.fft.fft2(np.roll(big, (-(h // 2), -(w // 2)), axis=(0, 1)))
    assert op.norm() == pytest.approx(np.abs(kf).max(), rel=1e-5)
    assert op.norm() == pytest.approx(1.0, rel=1e-5)


def test_blur_kernel_size_and_transfer_function_layout():
    op = make_operator("blur", (32, 48), sigma=3.0, kernel_size=7)
    assert op.kernel_image().shape == (7, 7)
    tf = op.transfer_function
    assert tf.shape == (32, 48 // 2 + 1) and tf.dtype == torch.complex64
    assert abs(complex(tf[0, 0]) - 1) < 1e-5  # DC at [0, 0], kernel sums to 1


def test_blur_motion_direction():
    shape = (33, 31)
    c = (shape[0] // 2, shape[1] // 2)
    horiz = make_operator("blur", shape, kernel="motion", length=8.0, angle=0.0).A(_delta(shape))
    vert = make_operator("blur", shape, kernel="motion", length=8.0, angle=90.0).A(_delta(shape))
    h, v = horiz[0, 0].abs() > 1e-6, vert[0, 0].abs() > 1e-6
    assert h[c[0]].sum() >= 8 and h.sum() == h[c[0]].sum()  # only along the centre row
    assert v[:, c[1]].sum() >= 8 and v.sum() == v[:, c[1]].sum()  # only along the centre column


def test_blur_is_convolution_not_correlation():
    k = np.zeros((3, 3))
    k[0, 0] = 1.0  # offset (-1, -1) from the centre: (k * x)[n] = x[n + (1, 1)] shifted up-left
    shape = (32, 48)
    out = make_operator("blur", shape, kernel="custom", kernel_array=k).A(_delta(shape))[0, 0]
    r, c = np.unravel_index(int(out.argmax()), shape)
    assert (r, c) == (shape[0] // 2 - 1, shape[1] // 2 - 1) and float(out.max()) > 0.999


def test_blur_truncated_pinv_defines_null_space():
    op = make_operator("blur", (32, 48), sigma=2.0)
    x = rand_image(op)
    n = op.null_project(x)
    assert float(nrm(n).min()) > 0.1 * float(nrm(x).min())  # Gaussian blur: big null space
    nk = torch.fft.rfft2(n).abs()
    kept = op.transfer_function.abs() > op.pinv_rcond * op.norm()
    assert float(nk[..., kept].max()) < 1e-4 * float(nk.max())
    xk = torch.fft.rfft2(x).abs()  # ... and all of x's content at the truncated frequencies
    torch.testing.assert_close(nk[..., ~kept], xk[..., ~kept], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kw, match", [
    ({"kernel": "custom"}, "kernel_array"),
    ({"kernel": "custom", "kernel_array": np.array([[1.0, np.nan], [1.0, 1.0]])}, "NaN"),
    ({"kernel": "custom", "kernel_array": np.ones((33, 3))}, "larger than the image"),
    ({"kernel": "custom", "kernel_array": np.ones(5)}, "2-D"),
    ({"kernel": "custom", "kernel_array": np.zeros((3, 3))}, "sums to"),
    ({"kernel": "custom", "kernel_array": -np.ones((3, 3))}, "sums to"),
    ({"kernel": "custom", "kernel_array": np.array([[1.0, -1.0]])}, "sums to"),
    ({"sigma": 0.0}, "sigma"),
    ({"sigma": -1.0}, "sigma"),
    ({"kernel": "disk", "radius": 0.0}, "radius"),
    ({"kernel": "motion", "length": 0.0}, "length"),
    ({"kernel_size": 4}, "kernel_size"),
    ({"kernel": "box"}, "kernel"),
])
def test_blur_bad_inputs(kw, match):
    with pytest.raises(InputError, match=match):
        make_operator("blur", (32, 48), **kw)


def test_blur_constructor_validates_without_make_params():
    with pytest.raises(InputError, match="sigma"):
        Blur((32, 48), BlurParams(sigma=0.0))
    with pytest.raises(InputError, match="radius"):
        Blur((32, 48), BlurParams(kernel="disk", radius=float("nan")))


# ---------------------------------------------------------------------------- inpaint
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 1.0])
def test_inpaint_random_keep_fraction_and_seed(keep):
    shape = (33, 31)
    m = make_operator("inpaint", shape, keep=keep, seed=11).mask
    assert abs(m.mean() - keep) <= 0.05 and set(np.unique(m)) <= {0.0, 1.0}
    assert np.array_equal(m, make_operator("inpaint", shape, keep=keep, seed=11).mask)
    other = make_operator("inpaint", shape, keep=keep, seed=12).mask
    assert np.array_equal(m, other) == (keep == 1.0)


def test_inpaint_box_is_centred():
    shape = (32, 48)
    m = make_operator("inpaint", shape, mask="box", box_size=0.25).mask
    hole = np.argwhere(m == 0)
    assert len(hole) == 8 * 12
    assert np.allclose(hole.mean(0), [(shape[0] - 1) / 2, (shape[1] - 1) / 2], atol=0.5)


def test_inpaint_custom_mask_and_measurement_zeros():
    shape = (32, 48)
    arr = _custom_mask(shape)
    op = make_operator("inpaint", shape, mask="custom", mask_array=arr)
    assert np.array_equal(op.mask, (arr != 0).astype(np.float32))
    y = op.A(torch.ones(1, 1, *shape))
    assert y.shape == (1, 1, *shape) and torch.equal(y[0, 0], torch.from_numpy(op.mask))


@pytest.mark.parametrize("kw, match", [
    ({"mask": "custom"}, "mask_array"),
    ({"mask": "custom", "mask_array": np.ones((32, 47))}, "shape"),
    ({"mask": "custom", "mask_array": np.zeros((32, 48))}, "keeps no pixel"),
    ({"keep": 0.0}, "keep"),
    ({"box_size": 1.0}, "box_size"),
])
def test_inpaint_bad_inputs(kw, match):
    with pytest.raises(InputError, match=match):
        make_operator("inpaint", (32, 48), **kw)


def test_inpaint_constructor_validates_keep():
    with pytest.raises(InputError, match="keep"):
        Inpaint((32, 48), InpaintParams(keep=0.0))


# ---------------------------------------------------------------------------- MRI
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("pattern", ["random", "equispaced"])
@pytest.mark.parametrize("r", [2.0, 4.0, 8.0])
def test_mri_mask_lines(shape, pattern, r):
    h, w = shape
    op = make_operator("mri", shape, acceleration=r, pattern=pattern, center_fraction=0.08)
    m = op.mask
    assert np.array_equal(m, np.broadcast_to(m[:1], m.shape))  # whole columns are sampled
    cols = m[0].astype(bool)
    n_centre = max(1, round(0.08 * w))
    centre = slice(w // 2 - n_centre // 2, w // 2 - n_centre // 2 + n_centre)
    assert cols[centre].all() and cols[w // 2]
    n = int(cols.sum())
    if pattern == "random":
        assert abs(n - max(w / r, n_centre)) <= 1
    else:
        assert w / r - 1 <= n <= w / r + 1 + n_centre
        assert cols[w // 2 + int(r)] and cols[w // 2 - int(r)]  # lattice through the DC line


def test_mri_seed_changes_random_mask_only():
    shape = (32, 48)
    a = make_operator("mri", shape, seed=1).mask
    assert np.array_equal(a, make_operator("mri", shape, seed=1).mask)
    assert not np.array_equal(a, make_operator("mri", shape, seed=2).mask)


@pytest.mark.parametrize("shape", SHAPES)
def test_mri_kspace_convention(shape):
    h, w = shape
    op = make_operator("mri", shape, acceleration=1.0)
    k = op.A(torch.ones(1, 1, *shape))  # real input is cast to complex64
    assert k.dtype == torch.complex64
    assert abs(complex(k[0, 0, h // 2, w // 2]) - (h * w) ** 0.5) < 1e-3  # DC at the centre
    k[0, 0, h // 2, w // 2] = 0
    assert float(k.abs().max()) < 1e-4
    x = rand_image(op)
    torch.testing.assert_close(op.A_adjoint(op.A(x)), x, rtol=1e-5, atol=1e-5)  # unitary
    # a shifted point source has a linear phase ramp along W in k-space
    d = torch.zeros(1, 1, *shape, dtype=torch.complex64)
    d[..., h // 2, w // 2 + 1] = 1
    kd = op.A(d)[0, 0]
    phase = torch.angle(kd[h // 2, w // 2 + 1] / kd[h // 2, w // 2])
    assert abs(float(phase) + 2 * np.pi / w) < 1e-4


@pytest.mark.parametrize("mask_array, match", [
    (np.ones(47), "shape"),
    (np.ones((33, 48)), "shape"),
    (np.ones((2, 32, 48)), "mask_array"),
    (np.zeros(48), "keeps no pixel"),
])
def test_mri_bad_masks(mask_array, match):
    with pytest.raises(InputError, match=match):
        make_operator("mri", (32, 48), mask_array=mask_array)


def test_mri_bad_acceleration():
    with pytest.raises(InputError, match="acceleration"):
        make_operator("mri", (32, 48), acceleration=0.5)
