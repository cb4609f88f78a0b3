r"""Plan a tiled run before any work: resolve the operator from its spec, check it is local,
derive the halo, estimate memory and choose the tile.

The operator is never built on the whole image (a 16384² blur alone would allocate gigabytes
for its transfer function): :func:`resolve` reads its family and parameters, from an operator
object or a spec ``{"operator": name, "params": {...}}``, and :meth:`Problem.tile_operator`
builds the same family on a tile's window, with array parameters (an inpainting mask) cut to
the window.

Tile choice (``tile="auto"``): one tile (the untiled run) when its estimate
(:func:`~.memory.estimate_tile_bytes`) fits the budget, the device's free memory or
``max_memory`` if smaller; otherwise the fewest tiles, :math:`n = 2, 3, \dots` cores along the
longer axis of :math:`\lceil N/n \rceil` pixels (a multiple of the alignment), whose window
:math:`C + 2p` fits: the largest tile that fits. An explicit ``tile=N`` is the core size, at
least the halo and :data:`MIN_TILE`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..core.errors import InputError, ResourceError
from .memory import estimate_tile_bytes, fmt_bytes, free_bytes
from .tile_grid import Tile, TileGrid, split_axis
from .tile_halo import Reach, align_of, check_local, method_reach
from .tile_io import Source, open_source, read_window

__all__ = ["MIN_TILE", "Problem", "resolve", "make_grid", "choose_core", "min_core",
           "tile_bytes"]

#: smallest core a run halves down to (pixels of the measurement grid)
MIN_TILE = 64


@dataclass
class Problem:
    """A tiled run's operator, method and data, resolved and checked.

    Attributes
    ----------
    op_name, op_params
        Operator family and its params dataclass (array fields as given: may be lazy).
    device
        Torch device the tiles run on.
    image_shape
        Shape of the whole image; the measurement is ``source.shape``.
    factor
        Image pixels per measurement pixel (super-resolution), else 1.
    source
        The measurement, read window by window.
    mask
        The inpainting mask as a source (``None`` for other families).
    method, spec, params
        Method name, registry entry and params dataclass instance.
    reach
        Halo and alignment (:mod:`.tile_halo`).
    """

    op_name: str
    op_params: Any
    device: Any
    image_shape: tuple[int, int]
    factor: int
    source: Source
    mask: Source | None
    method: str
    spec: Any
    params: Any
    reach: Reach

    @property
    def boundary(self) -> str:
        """``wrap`` for the periodic operators (blur, superres), else ``clip``."""
        return "wrap" if self.op_name in ("blur", "superres") else "clip"

    def op_spec(self) -> dict:
        """The whole image's operator spec (as :meth:`ForwardOperator.spec` would give)."""
        from ..core.params import to_dict

        return {"operator": self.op_name, "shape": list(self.image_shape),
                "measurement_shape": list(self.source.shape),
                "params": to_dict(self.op_params)}

    def tile_operator(self, tile: Tile) -> Any:
        """The operator of ``tile``'s window (its mask cut to the window)."""
        from ..core.operators.registry import make_operator

        fields = {f.name: getattr(self.op_params, f.name)
                  for f in dataclasses.fields(self.op_params)}
        if self.mask is not None:
            m = read_window(self.mask, tile.origin, tile.shape, self.boundary) != 0
            if not m.any():
                raise InputError(f"tile {tile.index + 1} measures no pixel: a hole wider than "
                                 "the tile is filled from far away; use larger tiles or no "
                                 "tiles")
            fields.update(mask="custom", mask_array=m.astype(np.float32))
        shape = (tile.shape[0] * self.factor, tile.shape[1] * self.factor)
        return make_operator(self.op_name, shape, device=self.device, **fields)


def _operator_of(op: Any, arrays: dict | None, device: Any) -> tuple[str, Any, Any]:
    """``(family, params, device)`` of an operator object or a spec mapping."""
    from ..core.operators import OPERATORS
    from ..core.params import from_dict
    from .device import choose_device

    if hasattr(op, "params") and hasattr(op, "spec") and hasattr(op, "name"):
        dev = op.device if device is None else choose_device(device)
        return op.name, op.params, dev
    if not isinstance(op, Mapping):
        raise InputError("op must be an operator (napari_invrec.make_operator) or a spec "
                         f"{{'operator': name, 'params': {{...}}}}, got {type(op).__name__}")
    name = op.get("operator")
    if name not in OPERATORS:
        raise InputError(f"op spec names unknown operator {name!r}; available: "
                         f"{', '.join(sorted(OPERATORS))}")
    unknown = sorted(set(op) - {"operator", "shape", "measurement_shape", "params"})
    if unknown:
        raise InputError(f"op spec has unknown key(s) {', '.join(unknown)}")
    params = op.get("params") or {}
    if not isinstance(params, Mapping):
        raise InputError("op spec 'params' must be a mapping of the operator's parameters")
    p = from_dict(OPERATORS[name].params, dict(params), **dict(arrays or {}))
    return name, p, choose_device(device or "auto")


def resolve(y: Any, op: Any, method: str, params: Any, *, arrays: dict | None = None,
            device: Any = None, halo: int | None = None) -> Problem:
    """Resolve and check everything a tiled run needs, without reading the data.

    An operator object gives its family and parameters (not its shape: build it on a small
    image for a large one); a spec that records ``measurement_shape`` must match ``y``.

    Raises
    ------
    InputError
        A non-local operator or method, a measurement of the wrong shape or type, a bad
        spec, or a negative ``halo``.
    """
    from ..core.methods import get_method
    from ..core.operators import OPERATORS
    from .execute import method_params_for

    name, op_params, dev = _operator_of(op, arrays, device)
    spec = get_method(method, name)
    p = method_params_for(method, SimpleNamespace(name=name), params)
    check_local(name, method, spec, p)
    src = open_source(y, "measurement")
    declared = op.get("measurement_shape") if isinstance(op, Mapping) else None
    if declared is not None and tuple(declared) != src.shape:
        raise InputError(f"the measurement has shape {src.shape} but the operator is for "
                         f"measurements of shape {tuple(declared)}")
    cls = OPERATORS[name].cls
    image_shape = tuple(int(n) for n in cls.image_shape_for(src.shape, op_params))
    factor = int(op_params.factor) if name == "superres" else 1
    mask = None
    if name == "inpaint":
        mask = _mask_source(op_params, image_shape)
    if halo is None:
        reach = method_reach(name, op_params, method, p)
    else:
        if not isinstance(halo, (int, np.integer)) or isinstance(halo, bool) or halo < 0:
            raise InputError(f"halo must be a whole number of pixels >= 0, got {halo!r}")
        reach = Reach(int(halo), align_of(name, op_params, p), f"given: {int(halo)} px")
    return Problem(name, op_params, dev, image_shape, factor, src, mask, method, spec, p,
                   reach)


def _mask_source(p: Any, shape: tuple[int, int]) -> Source:
    """The inpainting mask as a source: the custom array (possibly lazy) as it is, a random
    or box mask drawn once for the whole image (1 byte a pixel)."""
    from ..core.operators.inpaint import inpaint_mask

    if p.mask == "custom" and p.mask_array is not None:
        src = open_source(p.mask_array, "mask_array", dtype_check=False)
        if src.shape != tuple(shape):
            raise InputError(f"mask_array has shape {src.shape} but the image is "
                             f"{tuple(shape)}; give a mask of the image's size")
        return src
    return Source(inpaint_mask(p, shape).numpy().astype(bool), "mask")


def _ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def _mpx(p: Problem, px: int) -> int:
    """Image pixels as measurement pixels (rounded up)."""
    return -(-int(px) // p.factor)


def min_core(p: Problem) -> int:
    """Smallest core of a run: :data:`MIN_TILE`, the halo, the alignment (measurement px)."""
    align = max(1, p.reach.align // p.factor)
    c = max(MIN_TILE, _mpx(p, p.reach.halo), align)
    return -(-c // align) * align


def make_grid(p: Problem, core: int) -> TileGrid:
    """The grid of cores of about ``core`` pixels (measurement grid)."""
    align = max(1, p.reach.align // p.factor)
    h = _mpx(p, p.reach.halo)
    rows = split_axis(p.source.shape[0], core, h, align)
    cols = split_axis(p.source.shape[1], core, h, align)
    return TileGrid(rows, cols, p.factor, p.boundary)


def tile_bytes(p: Problem, grid: TileGrid) -> int:
    """Estimated peak bytes of the largest tile of ``grid`` (see ``estimate_tile_bytes``)."""
    import torch

    return estimate_tile_bytes(p.op_name, grid.image_window, grid.window, p.method, p.params,
                               stochastic=p.spec.stochastic,
                               device_type=torch.device(p.device).type)


def choose_core(p: Problem, tile: Any, *, available: dict | None = None,
                max_memory: int | None = None, host_bytes: int = 0) -> tuple[int, dict]:
    """The core size for ``tile`` (``"auto"`` or a whole number) and a memory record.

    ``host_bytes`` is what the run keeps in host memory besides the tiles (an in-memory
    result and history).

    Raises
    ------
    InputError
        ``tile`` is neither ``"auto"`` nor a whole number at least the halo and
        :data:`MIN_TILE`.
    ResourceError
        Even the smallest tile, or the explicit one, does not fit.
    """
    import torch

    dev = torch.device(p.device)
    free = free_bytes(dev, available)
    budget = min(free, int(max_memory)) if max_memory is not None else free
    if dev.type == "cpu":
        budget -= host_bytes
    elif host_bytes > free_bytes("cpu", available):
        raise ResourceError(f"the in-memory result needs {fmt_bytes(host_bytes)} of host memory: "
                            "pass out= a zarr path to write it to disk")
    full = max(p.source.shape)
    low = min_core(p)
    align = max(1, p.reach.align // p.factor)
    if tile == "auto":
        core = 0
        for n in range(1, full // low + 2):  # n cores along the longer axis, fewest first
            c = max(low, _ceil_div(_ceil_div(full, n), align) * align)
            if tile_bytes(p, make_grid(p, c)) <= budget:
                core = c
                break
            if c == low:
                break
        if not core:
            raise ResourceError(
                f"{p.method} needs about {fmt_bytes(tile_bytes(p, make_grid(p, low)))} for the "
                f"smallest tile ({low} px + halo {p.reach.halo} px) but "
                f"{fmt_bytes(max(budget, 0))} is free: free memory, use a lighter method, or "
                "pass out= a zarr path")
    else:
        if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1:
            raise InputError(f"tile must be 'auto' or a whole number of pixels, got {tile!r}")
        halo = _mpx(p, p.reach.halo)
        if tile < max(MIN_TILE, halo) and tile < full:
            raise InputError(f"tile {tile} px is smaller than the halo {halo} px (or "
                             f"{MIN_TILE} px): each tile would be mostly margin; use tile >= "
                             f"{max(MIN_TILE, halo)} or 'auto'")
        core = -(-int(tile) // align) * align
        need = tile_bytes(p, make_grid(p, core))
        if need > budget:
            raise ResourceError(f"tiles of {core} px need about {fmt_bytes(need)} but "
                                f"{fmt_bytes(budget)} is free: use a smaller tile or "
                                "tile='auto'")
    need = tile_bytes(p, make_grid(p, core))
    return core, {"estimate_bytes": need, "budget_bytes": int(budget), "free_bytes": int(free),
                  "host_bytes": int(host_bytes)}

