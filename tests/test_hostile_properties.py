"""Property-based hostile input (hypothesis) against every operator and method in the registries.

Each property draws what a careless or hostile caller could pass: arrays of any dtype (ints,
bools, float16, big-endian, complex, objects), shape, memory layout (strided views,
transposes), with NaN/inf, as numpy or dask; and parameter values as numpy scalars, NaN, inf,
out of range, or of the wrong type. Whatever is drawn, a call must

* either work, or raise the package's own error (:class:`InvRecError`) with a one-line
  message;
* leave every input array unchanged (bytes, dtype and strides);
* stop within its step budget: no step of a run takes longer than :data:`STEP_BUDGET_S`, and
  a run asked to stop after two steps stops there.

The examples are derandomized (the same on every machine and run) and no database is written.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_invrec import api
from napari_invrec.core.errors import InvRecError
from napari_invrec.core.methods import METHODS
from napari_invrec.core.models.registry import read_manifest, trained_operator
from napari_invrec.core.operators import OPERATORS
from napari_invrec.core.params import make_params

N = 16
#: seconds one step of a 16 px run may take on a slow CPU (a step takes milliseconds to ~0.3 s
#: here for the heaviest network methods; a hostile parameter that made one step run for
#: seconds would show)
STEP_BUDGET_S = 5.0
SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=30,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

pytestmark = pytest.mark.usefixtures("one_thread")

DTYPES = [np.dtype(d) for d in ("float32", "float64", "float16", ">f4", ">f8", "int8", "uint8",
                                "int32", "uint16", "bool", "complex64", "complex128", ">c8")]


def _installed(method: str, op_name: str) -> bool:
    spec, installed = METHODS[method], read_manifest()
    return all(w in installed and trained_operator(installed[w]) in (None, op_name)
               for w in spec.weights)


def _cheap_method(op_name: str) -> str:
    for m in ("adjoint", "min-norm", "gerchberg-saxton", "blind-deconv"):
        if METHODS[m].supports(op_name):
            return m
    raise AssertionError(f"no cheap method for {op_name}")


def _home(method: str) -> str | None:
    """One operator the method runs on (blur when it can): parameters are the method's."""
    ops = sorted(o for o in OPERATORS if METHODS[method].supports(o) and _installed(method, o))
    return "blur" if "blur" in ops else (ops[0] if ops else None)


HOMES = sorted((m, _home(m)) for m in METHODS if _home(m))
#: few steps of each method, for runs that must be short
SHORT = {"iters": 2, "steps": 2}


def _short_params(method: str) -> dict:
    names = {f for f in METHODS[method].params.__dataclass_fields__}
    out = {k: v for k, v in SHORT.items() if k in names}
    if "n_samples" in names:
        out["n_samples"] = 2
    if "burn_in" in names:
        out["burn_in"] = 0
    return out


def _snapshot(a):
    arr = np.asarray(a.compute() if hasattr(a, "compute") else a)
    return arr.dtype, arr.strides, arr.tobytes()


def _check_error(e: BaseException) -> None:
    assert isinstance(e, InvRecError), f"{type(e).__name__}: {e}"
    msg = str(e)
    assert msg and "\n" not in msg, repr(msg)


@st.composite
def hostile_arrays(draw, shape: tuple[int, ...]):
    """An array of ``shape`` (usually) with any dtype, layout, NaN/inf, numpy or dask."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.one_of(st.just(shape), st.just(shape), st.just(shape),
                           hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=20)))
    layout = draw(st.sampled_from(["c", "strided", "transposed"]))
    base_shape = tuple(2 * s for s in shape) if layout == "strided" else shape
    if layout == "transposed":
        base_shape = shape[::-1]
    kw = {}
    if dtype.kind in "fc":
        kw["elements"] = st.floats(-2.0, 2.0, allow_nan=False, width=16 if dtype.itemsize <= 2
                                   else 32)
    a = draw(hnp.arrays(dtype, base_shape, **kw))
    if layout == "strided":
        a = a[tuple(slice(None, None, 2) for _ in shape)]
    elif layout == "transposed":
        a = a.T
    if dtype.kind in "fc" and a.size and draw(st.booleans()):
        a = a.copy()
        a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf,
                                                                         -np.inf]))
    if draw(st.integers(0, 4)) == 0 and a.ndim:
        import dask.array as da

        return da.from_array(a, chunks=tuple(max(1, s // 2) for s in a.shape))
    return a


@pytest.mark.parametrize("op_name", sorted(OPERATORS))
@SETTINGS
@given(data=st.data())
def test_any_measurement_array_works_or_is_refused_clearly(op_name, data):
    op = api.make_operator(op_name, (N, N), device="cpu")
    y = data.draw(hostile_arrays(tuple(op.measurement_shape)), label="y")
    ref = data.draw(st.none() | hostile_arrays((N, N)), label="reference")
    before = [_snapshot(a) for a in (y, ref) if a is not None]
    method = _cheap_method(op_name)
    try:
        res = api.reconstruct(y, op, method, reference=ref, **_short_params(method))
        assert np.all(np.isfinite(res.x))
        if ref is not None:  # metrics need a float reference (an integer one has no scale)
            assert np.asarray(ref).dtype.kind in "fc" and not np.isnan(res.metrics["psnr"])
    except Exception as e:  # noqa: BLE001 - the property is about which exceptions
        _check_error(e)
    assert [_snapshot(a) for a in (y, ref) if a is not None] == before


def _assert_accepted_value_is_sane(f, v) -> None:
    """An accepted value has the field's plain type, is finite and lies within its bounds."""
    kind = str(f.type)
    if kind in ("int", "float", "bool", "str"):
        assert type(v).__name__ == kind, (f.name, v, type(v))
    if kind in ("int", "float"):
        assert np.isfinite(v), (f.name, v)
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        assert (lo is None or v >= lo) and (hi is None or v <= hi), (f.name, v, lo, hi)


def _hostile_values(default, meta):
    """Values a careless caller could pass for a field with this default and metadata."""
    lo, hi = meta.get("min"), meta.get("max")
    out = [None, "3", [1], {"a": 1}, complex(1, 1), np.nan, np.inf, -np.inf]
    if isinstance(default, bool):
        return out + [np.bool_(default), 1, 0.5]
    if isinstance(default, (int, float)):
        out += [np.float32(default), np.float64(default), np.int64(int(default)),
                np.float32(np.nan), True, 10 ** 12, -(10 ** 12), 2.5]
        if lo is not None:
            out += [lo - 1, np.float32(lo) - 1]
        if hi is not None:
            out += [hi + 1, np.int64(hi) * 10]
        return out
    if isinstance(default, str):
        return out + [np.str_(default), default.upper() + "?", "", 3]
    return out


@pytest.mark.parametrize("method,op_name", HOMES)
@settings(derandomize=True, database=None, deadline=None, max_examples=15,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_parameter_value_works_or_is_refused_clearly(method, op_name, data):
    spec = METHODS[method]
    fields = [f for f in spec.params.__dataclass_fields__.values()
              if f.metadata.get("gui", True) and not callable(f.metadata.get("choices"))]
    if not fields:
        return
    f = data.draw(st.sampled_from(fields), label="field")
    value = data.draw(st.sampled_from(_hostile_values(f.default, f.metadata)), label="value")
    try:
        p = make_params(spec.params, **{f.name: value})
    except Exception as e:  # noqa: BLE001
        _check_error(e)
        return
    _assert_accepted_value_is_sane(f, getattr(p, f.name))
    # accepted: it must run, two steps at most within the step budget, or be refused clearly
    from napari_invrec.core.data import shepp_logan

    op = api.make_operator(op_name, (N, N), device="cpu")
    x = op.as_image(torch.from_numpy(shepp_logan(N))[None, None])
    y = api.simulate(op.as_image(x)[0, 0].numpy(), op, sigma=0.01, seed=0)
    kw = _short_params(method) | {f.name: value}
    import threading

    stop, times = threading.Event(), [time.perf_counter()]

    def progress(prog):
        times.append(time.perf_counter())
        if prog.step >= 2:
            stop.set()

    try:
        api.reconstruct(y, op, method, cancel=stop, progress=progress, **kw)
    except Exception as e:  # noqa: BLE001
        if not stop.is_set():
            _check_error(e)
    steps = np.diff(times)
    assert len(steps) <= 2 and (steps < STEP_BUDGET_S).all(), (f.name, value, steps)


@pytest.mark.parametrize("op_name", sorted(OPERATORS))
@SETTINGS
@given(data=st.data())
def test_any_operator_parameter_works_or_is_refused_clearly(op_name, data):
    cls = OPERATORS[op_name].params
    fields = [f for f in cls.__dataclass_fields__.values() if f.metadata.get("gui", True)]
    if not fields:
        return
    f = data.draw(st.sampled_from(fields), label="field")
    value = data.draw(st.sampled_from(_hostile_values(f.default, f.metadata)), label="value")
    x = np.random.default_rng(0).random((N, N)).astype(np.float32)
    before = _snapshot(x)
    try:
        op = api.make_operator(op_name, (N, N), device="cpu", **{f.name: value})
        _assert_accepted_value_is_sane(f, getattr(op.params, f.name))
        y = api.simulate(np.abs(x) if op.complex_image else x, op, sigma=0.01, seed=0)
        assert np.all(np.isfinite(y))
    except Exception as e:  # noqa: BLE001
        _check_error(e)
    assert _snapshot(x) == before


@SETTINGS
@given(data=st.data())
def test_run_settings_and_noise_work_or_are_refused_clearly(data):
    op = api.make_operator("denoise", (N, N), device="cpu")
    x = np.random.default_rng(0).random((N, N)).astype(np.float32)
    anything = st.sampled_from([None, "0", 1.5, np.nan, np.inf, -1, np.int64(3), np.float32(2),
                                True, 2 ** 70, [1]])
    kw = {"seed": data.draw(anything), "history_budget": data.draw(anything),
          "threads": data.draw(anything)}
    kw = {k: v for k, v in kw.items() if data.draw(st.booleans())}
    try:
        api.reconstruct(x, op, "adjoint", **kw)
    except Exception as e:  # noqa: BLE001
        _check_error(e)
    noise = data.draw(st.sampled_from(["gaussian", "poisson", "none", "bogus", None, 3]))
    sigma = data.draw(anything)
    try:
        y = api.simulate(x, op, noise=noise, sigma=sigma, seed=0)
        assert np.all(np.isfinite(y))
    except Exception as e:  # noqa: BLE001
        _check_error(e)


@pytest.mark.parametrize("owner", sorted(METHODS) + [f"op:{o}" for o in sorted(OPERATORS)])
def test_every_field_refuses_every_hostile_value_or_keeps_it_sane(owner):
    """Exhaustive over fields and values (no run: validation alone takes microseconds), so no
    field is left to the sampling of the properties above."""
    cls = OPERATORS[owner[3:]].params if owner.startswith("op:") else METHODS[owner].params
    for f in cls.__dataclass_fields__.values():
        if callable(f.metadata.get("choices")) or str(f.type) == "Any":
            continue
        for value in _hostile_values(f.default, f.metadata):
            try:
                p = make_params(cls, **{f.name: value})
            except Exception as e:  # noqa: BLE001
                _check_error(e)
                continue
            _assert_accepted_value_is_sane(f, getattr(p, f.name))
