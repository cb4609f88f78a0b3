"""Opening a fastMRI-sized multi-coil file: time, bytes read, and one slice reconstructed.

Writes (h5py) a file shaped like fastMRI's multi-coil knee data into a temporary folder:
``kspace`` 16 slices x 15 coils x 640 x 368 complex64 (452 MB), ``mask`` (368,), the
``reconstruction_rss`` reference 16 x 320 x 320 and an ISMRMRD header. The k-space is that of
a Shepp-Logan phantom (320 x 320, centred on the 640 x 368 grid as fastMRI's 2x readout
oversampling does) through the package's ``mri-multicoil`` operator (simulated coils, 4x
random columns, 8 % centre) plus noise. Then:

* ``formats.read(path)`` wall time (target < 2 s; the file is in the page cache, since it was
  just written: this times the reader, not the disk);
* bytes the reader reads (counted through a Python file object; target < 5 % of the file) and
  bytes read to compute one slice of the k-space;
* one slice reconstructed from the file's spec with coil maps estimated from that slice:
  zero-filled (adjoint), ``sense-cg`` and ``tv-fista``, PSNR against the phantom slice.

Run: ``.venv/bin/python benchmarks/bench_formats.py`` (``--keep`` keeps the file).
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (16, 15, 640, 368)  # slices, coils, H (readout, 2x oversampled), W (phase encode)
RECON = 320


class CountingFile(io.FileIO):
    """A read-only file counting the bytes read through it (h5py's ``fileobj`` driver)."""

    nbytes = 0

    def readinto(self, b):  # noqa: D102
        n = super().readinto(b)
        self.nbytes += n or 0
        return n

    def read(self, size=-1):  # noqa: D102
        data = super().read(size)
        self.nbytes += len(data)
        return data


def _phantom(s: int) -> np.ndarray:
    from napari_invrec.core.data import shepp_logan

    _, _, h, w = SHAPE
    x = np.zeros((h, w), np.float32)
    img = shepp_logan(RECON) * (1.0 - 0.02 * abs(s - SHAPE[0] // 2))  # slices differ a little
    x[(h - RECON) // 2:(h + RECON) // 2, (w - RECON) // 2:(w + RECON) // 2] = img
    return x


def _header() -> str:
    _, c, h, w = SHAPE
    return (f'<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
            f"<acquisitionSystemInformation><receiverChannels>{c}</receiverChannels>"
            f"</acquisitionSystemInformation><encoding><encodedSpace><matrixSize><x>{h}</x>"
            f"<y>{w}</y><z>1</z></matrixSize><fieldOfView_mm><x>280</x><y>161</y><z>4.5</z>"
            f"</fieldOfView_mm></encodedSpace><reconSpace><matrixSize><x>{RECON}</x>"
            f"<y>{RECON}</y><z>1</z></matrixSize><fieldOfView_mm><x>140</x><y>140</y>"
            f"<z>3</z></fieldOfView_mm></reconSpace><trajectory>cartesian</trajectory>"
            f"</encoding></ismrmrdHeader>")


def write_file(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """Write the fastMRI-shaped file; returns its mask and the phantom of every slice."""
    import h5py

    from napari_invrec import api

    s_n, c, h, w = SHAPE
    op = api.make_operator("mri-multicoil", (h, w), n_coils=c, acceleration=4.0,
                           center_fraction=0.08, seed=0)
    xs = [_phantom(s) for s in range(s_n)]
    lo = (h - RECON) // 2, (w - RECON) // 2
    with h5py.File(path, "w") as f:
        ks = f.create_dataset("kspace", shape=SHAPE, dtype=np.complex64)
        for s, x in enumerate(xs):  # one slice in memory at a time
            ks[s] = api.simulate(x, op, sigma=0.002, seed=s)
        f["mask"] = op.mask[0]
        f["reconstruction_rss"] = np.stack([x[lo[0]:lo[0] + RECON, lo[1]:lo[1] + RECON]
                                            for x in xs])
        f["ismrmrd_header"] = _header()
    return op.mask[0], xs


def _psnr(a: np.ndarray, ref: np.ndarray) -> float:
    a = np.abs(a)
    a = a * float(np.vdot(a, ref) / np.vdot(a, a))  # best scale: raw data has arbitrary units
    return float(10 * np.log10(ref.max() ** 2 / np.mean((a - ref) ** 2)))


def bench_formats(folder: Path) -> dict:
    """Write the file into ``folder``, open it, reconstruct one slice; returns the figures."""
    from napari_invrec import api, formats
    from napari_invrec.core.operators.registry import operator_from_spec
    from napari_invrec.formats import fastmri

    path = folder / "fastmri_multicoil.h5"
    t = time.perf_counter()
    mask, xs = write_file(path)
    out = {"write_s": time.perf_counter() - t, "file_bytes": path.stat().st_size}
    t = time.perf_counter()
    layers = formats.read(path)
    out["open_s"] = time.perf_counter() - t
    meta = layers[0][1]["metadata"]["invrec"]
    assert np.array_equal(meta["arrays"]["mask_array"], mask)
    del layers, meta
    s = SHAPE[0] // 2
    with CountingFile(path, "rb") as fobj:
        layers = fastmri.read(path, fileobj=fobj)
        out["open_bytes"] = fobj.nbytes
        meta = layers[0][1]["metadata"]["invrec"]
        before = fobj.nbytes
        t = time.perf_counter()
        y = meta["complex_data"][s].compute()
        out["slice_s"] = time.perf_counter() - t
        out["slice_bytes"] = fobj.nbytes - before
    t = time.perf_counter()
    op = operator_from_spec(meta["operator"], meta["arrays"], measurement=y)
    out["coil_maps_s"] = time.perf_counter() - t
    for method, kw in (("adjoint", {}), ("sense-cg", {"iters": 30}),
                       ("tv-fista", {"iters": 30})):
        t = time.perf_counter()
        res = api.reconstruct(y, op, method, **kw)
        out[f"{method}_s"] = time.perf_counter() - t
        out[f"{method}_psnr"] = _psnr(res.x, xs[s])
    return out


def main(flags: list[str] | None = None) -> None:
    flags = list(flags or [])
    keep = "--keep" in flags
    folder = Path(tempfile.mkdtemp(prefix="bench_formats_"))
    try:
        r = bench_formats(folder)
    finally:
        if not keep:
            for p in folder.iterdir():
                p.unlink()
            folder.rmdir()
    mb = 2 ** 20
    print(f"== formats: fastMRI-shaped multi-coil file {' x '.join(map(str, SHAPE))} complex64 "
          f"({r['file_bytes'] / mb:.0f} MiB; written in {r['write_s']:.1f} s)")
    print(f"open (formats.read)      {r['open_s']:7.2f} s    target < 2 s")
    print(f"bytes read at open       {r['open_bytes'] / 1024:7.0f} KiB "
          f"({100 * r['open_bytes'] / r['file_bytes']:.2f} % of the file)    target < 5 %")
    print(f"one slice computed       {r['slice_s']:7.2f} s, {r['slice_bytes'] / mb:.1f} MiB "
          f"(a slice is {np.prod(SHAPE[1:]) * 8 / mb:.1f} MiB)")
    print(f"coil maps estimated      {r['coil_maps_s']:7.2f} s")
    for m in ("adjoint", "sense-cg", "tv-fista"):
        print(f"{m:10s} slice {SHAPE[0] // 2}       {r[f'{m}_s']:7.2f} s    "
              f"PSNR {r[f'{m}_psnr']:.2f} dB")
    if keep:
        print(f"kept {folder}")


if __name__ == "__main__":
    main(sys.argv[1:])
