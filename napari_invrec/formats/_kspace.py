"""What the MRI raw-data readers share: sampling masks, the ISMRMRD XML header, the layers.

Layout conventions (those of :mod:`napari_invrec.core.operators.mri`): k-space is centred (DC
at ``(H // 2, W // 2)``), the readout runs along H (fully sampled) and the phase encoding along
W (the last axis), whose columns are sampled or not; a mask is ``(W,)`` (sampled columns) or
``(H, W)``. Stacks put the slice axis first, then the coil axis: ``(slices, coils, H, W)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError

__all__ = ["check_mask", "detect_mask", "centre_fraction", "parse_ismrmrd_header",
           "mri_units", "kspace_layers"]


def check_mask(mask: Any, shape: tuple[int, int], source: str) -> np.ndarray:
    """A file's mask as float32 ``(W,)`` or ``(H, W)`` 0/1, or :class:`InputError`."""
    m = np.asarray(mask)
    if m.dtype.kind not in "biuf":
        raise InputError(f"{source}: the mask is {m.dtype}, not numbers; store 1 for sampled "
                         "columns and 0 elsewhere")
    if m.ndim == 2 and m.shape[0] == 1:
        m = m[0]
    if m.shape not in ((shape[1],), tuple(shape)):
        raise InputError(f"{source}: the mask has shape {m.shape} but the k-space is "
                         f"{shape[0]} x {shape[1]}; give a ({shape[1]},) mask of sampled "
                         f"columns or a {shape[0]} x {shape[1]} one")
    if not np.all(np.isfinite(m)) or not np.any(m != 0):
        raise InputError(f"{source}: the mask samples nothing or holds NaN/inf; 1 marks a "
                         "sampled column")
    return (m != 0).astype(np.float32)


def detect_mask(plane: Any, source: str) -> np.ndarray:
    """Sampled columns ``(W,)`` float32 of k-space ``plane`` (``(..., H, W)``): a column is
    unsampled when it is exactly zero everywhere in ``plane``."""
    p = np.asarray(plane)
    cols = np.any(p != 0, axis=tuple(range(p.ndim - 1)))
    if not cols.any():
        raise InputError(f"{source}: the k-space plane read to find the sampled columns is all "
                         "zero; supply a mask")
    return cols.astype(np.float32)


def _full_columns(mask: np.ndarray) -> np.ndarray:
    """Columns sampled in every row that is sampled at all (a partial echo leaves rows out)."""
    if mask.ndim == 1:
        return mask != 0
    rows = np.any(mask != 0, axis=1)
    return np.all(mask[rows] != 0, axis=0)


def centre_fraction(mask: np.ndarray) -> float:
    """``center_fraction`` of a mask: the widest block of fully sampled columns that
    :func:`~napari_invrec.core.operators.mri.centre_columns` places around ``W // 2``
    (``n / W``; 0 when the DC column is not sampled)."""
    full = _full_columns(mask)
    w = full.size
    n = 0
    while n < w:  # grow while [W//2 - m//2, W//2 - m//2 + m) stays sampled
        m = n + 1
        start = w // 2 - m // 2
        if start < 0 or start + m > w or not full[start:start + m].all():
            break
        n = m
    return n / w


def _text(node: Any, path: str) -> str | None:
    """Text of the first descendant along ``path`` ("a/b/c"), namespace-agnostic."""
    for part in path.split("/"):
        if node is None:
            return None
        node = next((c for c in node if c.tag.rsplit("}", 1)[-1] == part), None)
    return None if node is None or node.text is None else node.text.strip()


def parse_ismrmrd_header(xml: Any, source: str) -> dict:
    """Facts of an ISMRMRD XML header (first encoding): ``encoded_matrix``,
    ``encoded_fov_mm``, ``recon_matrix``, ``recon_fov_mm`` (``[x, y, z]`` or ``None``),
    ``coils``, ``slices``, ``e1_center`` and ``trajectory`` (``None`` when absent)."""
    import xml.etree.ElementTree as ET

    text = xml.decode("utf-8", "replace") if isinstance(xml, (bytes, np.bytes_)) else str(xml)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise InputError(f"{source}: the ISMRMRD XML header is malformed ({e})") from e
    enc = next((c for c in root if c.tag.rsplit("}", 1)[-1] == "encoding"), None)

    def vec(path: str, conv: type) -> list | None:
        try:
            vals = [conv(_text(enc, f"{path}/{a}")) for a in "xyz"]
        except (TypeError, ValueError):
            return None
        return vals

    def num(node: Any, path: str) -> int | None:
        v = _text(node, path)
        return int(float(v)) if v not in (None, "") else None

    limits = "encodingLimits"
    smax = num(enc, f"{limits}/slice/maximum")
    return {"encoded_matrix": vec("encodedSpace/matrixSize", int),
            "encoded_fov_mm": vec("encodedSpace/fieldOfView_mm", float),
            "recon_matrix": vec("reconSpace/matrixSize", int),
            "recon_fov_mm": vec("reconSpace/fieldOfView_mm", float),
            "coils": num(root, "acquisitionSystemInformation/receiverChannels"),
            "slices": None if smax is None else smax + 1,
            "e1_center": num(enc, f"{limits}/kspace_encoding_step_1/center"),
            "trajectory": _text(enc, "trajectory")}


def mri_units(header: dict | None, *, source: Path, fmt: str, **extra: Any) -> dict:
    """The measurement's ``units``: ``spacing`` is the pixel size (mm) of the reconstructed
    image ``(H, W)`` = (readout x, phase encode y) of the encoded space; the recon matrix and
    field of view of the header are kept beside it."""
    from ..engine.layers import units_record

    h = header or {}
    spacing, unit = None, "pixel"
    em, ef = h.get("encoded_matrix"), h.get("encoded_fov_mm")
    if em and ef and min(em[:2]) > 0 and min(ef[:2]) > 0:
        spacing, unit = [ef[0] / em[0], ef[1] / em[1]], "mm"
    return units_record(spacing=spacing, unit=unit, source=source, fmt=fmt,
                        spacing_axes="image (H, W) = (readout, phase encode)",
                        recon_matrix=h.get("recon_matrix"), recon_fov_mm=h.get("recon_fov_mm"),
                        encoded_matrix=em, encoded_fov_mm=ef, **extra)


def _display_limits(plane: Any) -> list[float] | None:
    if plane is None:
        return None
    top = float(np.log1p(np.abs(np.asarray(plane))).max())
    return [0.0, top if top > 0 else 1.0]


def kspace_layers(kspace: Any, mask: np.ndarray, *, coils: bool, name: str, units: dict,
                  notes: str | None = None, sample: Any = None, reference: Any = None,
                  reference_name: str | None = None,
                  reference_limits: Any = None) -> list[tuple]:
    """The layers of a k-space file: the measurement and, if given, the file's reference image.

    Parameters
    ----------
    kspace
        Complex k-space ``([slices,] [coils,] H, W)`` (numpy, memory map or dask).
    mask
        Its sampling mask (``(W,)`` or ``(H, W)``, float32 0/1), exactly as read or detected.
    coils
        Whether the axis before ``(H, W)`` is the coil axis (operator ``mri-multicoil`` with
        coil maps estimated from each measurement; else ``mri``).
    name, units, notes
        Layer name, :func:`mri_units`, what the reader inferred.
    sample
        One k-space plane already read (display range of the measurement).
    reference
        Reference image ``([slices,] h, w)`` (e.g. fastMRI's ``reconstruction_rss``), centred
        on the image grid with ``translate``; it is the measurement's ``ground_truth`` when
        ``(h, w) == (H, W)``. For multi-coil stacks it is broadcast (lazily) along the coil
        axis, so that napari aligns its slice axis with the measurement's.
    reference_name, reference_limits
        Name and display range of the reference layer.
    """
    import dask.array as da

    from ..core.operators.registry import measurement_spec
    from ..engine.layers import file_image_layer, file_measurement_layer

    shape = tuple(int(n) for n in np.shape(kspace))
    h, w = shape[-2:]
    cf = centre_fraction(mask)
    op_name = "mri-multicoil" if coils else "mri"
    n_sampled = int(np.any(mask != 0, axis=0).sum() if mask.ndim == 2 else (mask != 0).sum())
    params: dict[str, Any] = {"mask_array": mask, "center_fraction": cf,  # R: informative
                              "acceleration": min(64.0, max(1.0, w / max(1, n_sampled)))}
    m_shape = shape[-3:] if coils else shape[-2:]
    if coils:
        if cf <= 0:
            raise InputError(f"{units.get('source')}: the k-space centre column W // 2 is not "
                             "sampled, so coil maps cannot be estimated; is the k-space "
                             "centred (fftshift along W)?")
        params.update(coil_maps="estimated", n_coils=m_shape[0])
    spec = measurement_spec(op_name, m_shape, **params)
    out = []
    gt = None
    if reference is not None:
        rh, rw = np.shape(reference)[-2:]
        gt = reference_name if (rh, rw) == (h, w) else None
        ref = reference
        lead = len(shape) - 2
        if coils and lead == 2 and np.ndim(ref) == 3:
            ref = da.broadcast_to(da.asarray(ref)[:, None], (shape[0], shape[1], rh, rw),
                                  chunks=(1, 1, rh, rw))
        ndim = np.ndim(ref)
        translate = [0.0] * (ndim - 2) + [float((h - rh) // 2), float((w - rw) // 2)]
        kw = {"scale": [1.0] * ndim, "translate": translate}
        if reference_limits is not None:
            kw["contrast_limits"] = [float(c) for c in reference_limits]
        out.append(file_image_layer(ref, name=reference_name, units=units, **kw))
    out.insert(0, file_measurement_layer(
        kspace, spec, {"mask_array": mask}, name=name, units=units, ground_truth=gt,
        notes=notes, contrast_limits=_display_limits(sample)))
    return out
