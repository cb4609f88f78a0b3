"""GUI tests of the MRI raw-data readers: files opened with ``viewer.open(..., plugin=
"napari-invrec")`` and reconstructed in the Reconstruct dock (multi-coil slices: the plane in
view, with coil maps estimated from that slice)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_formats_mri import SAMPLE, header, psnr, simulate, write_fastmri

from napari_invrec import api

pytestmark = pytest.mark.gui


def _open(make_napari_viewer, path: Path):
    from napari_invrec._widgets.reconstruct import ReconstructWidget

    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-invrec")
    return viewer, ReconstructWidget(viewer)


def test_fastmri_slices_reconstruct_plane_in_view(make_napari_viewer, tmp_path, wait_idle,
                                                   notes):
    ks, _, xs = simulate(4)
    path = write_fastmri(tmp_path / "knee.h5", ks, rss=np.abs(xs), xml=header(4))
    viewer, w = _open(make_napari_viewer, path)
    meas, ref = viewer.layers["knee"], viewer.layers["knee [reconstruction_rss]"]
    assert meas.data.shape == ks.shape and ref.data.shape == ks.shape  # ref: along the coils
    assert w.measurement.value is meas and w.reference.value is ref
    assert not w.stack_mode.native.isHidden()
    viewer.dims.set_current_step(0, 2)
    viewer.dims.set_current_step(1, 3)  # the coil in view does not matter: the slice does
    w.method.value = "tv-fista"
    w.method_form.set_values({"iters": 50, "lam": 0.002})
    w.run()
    wait_idle(w)
    res = viewer.layers["tv-fista · mri-multicoil [plane 2]"]
    meta = res.metadata["invrec"]
    x = meta["complex_data"]
    assert x.shape == xs[2].shape
    prov = meta["provenance"]
    assert prov["operator"]["params"]["coil_maps"] == "estimated"
    assert "psnr" in prov["metrics"]  # the file's reference, as ground truth, slice 2
    np.testing.assert_array_equal(meta["measurement"], ks[2])
    # better than zero filling with the same (estimated) coil maps
    from napari_invrec.core.operators.registry import operator_from_spec

    op = operator_from_spec(prov["operator"], meta["arrays"])
    zf = api.reconstruct(ks[2], op, "adjoint").x
    assert psnr(x, xs[2]) > psnr(zf, xs[2]) + 5
    # the whole-stack modes cannot rebuild the operator per slice: refused, saying why
    w.stack_mode.value = "all planes (lazy)"
    assert w.run() is None
    assert any("only stack mode 'plane in view'" in m for m in notes())


def test_sample_phantom_kspace_opens_and_reconstructs(make_napari_viewer, wait_idle):
    viewer, w = _open(make_napari_viewer, SAMPLE / "phantom_kspace.npy")
    [layer] = list(viewer.layers)
    assert layer.metadata["invrec"]["operator"]["operator"] == "mri"
    assert w.measurement.value is layer and w.stack_mode.native.isHidden()
    w.method.value = "tv-fista"
    w.method_form.set_values({"iters": 60, "lam": 0.005})
    w.run()
    wait_idle(w)
    x = viewer.layers["tv-fista · mri"].metadata["invrec"]["complex_data"]
    truth = np.load(SAMPLE / "phantom_clean.npy")
    zf = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(np.load(SAMPLE / "phantom_kspace.npy")),
                                      norm="ortho"))
    assert psnr(x, truth) > psnr(zf, truth) + 1
