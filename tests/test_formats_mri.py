"""MRI raw-data readers (fastMRI HDF5, ISMRMRD, complex .npy/.npz) and operator specs for real
measurements: files written with each format's own library from k-space simulated by the
package's operators, read back and reconstructed (no Qt)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest

from napari_invrec import api
from napari_invrec.core.errors import InputError
from napari_invrec.core.operators.coil_maps import estimate_coil_maps
from napari_invrec.core.operators.registry import measurement_spec, operator_from_spec
from napari_invrec.formats import fastmri, ismrmrd_file, kspace_npy

H, W, C = 64, 48, 4
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
HEADER = """<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
 <acquisitionSystemInformation><receiverChannels>{c}</receiverChannels>
 </acquisitionSystemInformation>
 <experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz>
 </experimentalConditions>
 <encoding>
  <encodedSpace><matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize>
   <fieldOfView_mm><x>{fx}</x><y>{fy}</y><z>3</z></fieldOfView_mm></encodedSpace>
  <reconSpace><matrixSize><x>{rh}</x><y>{rw}</y><z>1</z></matrixSize>
   <fieldOfView_mm><x>{rfx}</x><y>{rfy}</y><z>3</z></fieldOfView_mm></reconSpace>
  <encodingLimits>
   <kspace_encoding_step_1><minimum>0</minimum><maximum>{wm}</maximum><center>{wc}</center>
   </kspace_encoding_step_1>
   <slice><minimum>0</minimum><maximum>{sm}</maximum><center>0</center></slice>
  </encodingLimits>
  <trajectory>cartesian</trajectory>
 </encoding>
</ismrmrdHeader>"""


def header(s: int, c: int = C, h: int = H, w: int = W) -> str:
    return HEADER.format(c=c, h=h, w=w, fx=2.0 * h, fy=1.5 * w, rh=h // 2, rw=h // 2,
                         rfx=1.0 * h, rfy=1.0 * h, wm=w - 1, wc=w // 2, sm=s - 1)


def phantom(shift: int = 0) -> np.ndarray:
    from napari_invrec.core.data import shepp_logan

    x = shepp_logan(H)[:, (H - W) // 2:(H - W) // 2 + W]
    return np.roll(x, shift, axis=0).astype(np.float32)


def simulate(n_slices: int, coils: bool = True, seed: int = 1):
    """``(kspace (slices[, coils], H, W) complex64, op, images (slices, H, W))``."""
    if coils:
        op = api.make_operator("mri-multicoil", (H, W), n_coils=C, acceleration=3.0,
                               center_fraction=0.16, seed=seed)
    else:
        op = api.make_operator("mri", (H, W), acceleration=3.0, center_fraction=0.16, seed=seed)
    xs = np.stack([phantom(2 * s) for s in range(n_slices)])
    ks = np.stack([api.simulate(x, op, sigma=0.005, seed=s) for s, x in enumerate(xs)])
    return ks.astype(np.complex64), op, xs


def write_fastmri(path: Path, ks: np.ndarray, *, mask=None, rss=None, xml=None) -> Path:
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=ks)
        if mask is not None:
            f.create_dataset("mask", data=mask)
        if rss is not None:
            f.create_dataset("reconstruction_rss", data=rss)
        if xml is not None:
            f.create_dataset("ismrmrd_header", data=xml)
        f.attrs["acquisition"] = "CORPD_FBK"
    return path


def psnr(a: np.ndarray, ref: np.ndarray) -> float:
    a = np.abs(a)
    a = a * float(np.vdot(a, ref) / np.vdot(a, a))  # best scale: the data's units are arbitrary
    return float(10 * np.log10(ref.max() ** 2 / np.mean((a - ref) ** 2)))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class CountingFile(io.FileIO):
    """A read-only file that counts the bytes read through it (h5py reads via ``readinto``)."""

    nbytes = 0

    def readinto(self, b):  # noqa: D102
        n = super().readinto(b)
        self.nbytes += n or 0
        return n

    def read(self, size=-1):  # noqa: D102
        data = super().read(size)
        self.nbytes += len(data)
        return data


# ------------------------------------------------------------------ registry: real measurements
def test_operator_from_spec_derives_coil_maps_from_the_measurement():
    ks, op, _ = simulate(1)
    y = ks[0]
    mask = op.mask[0]
    spec = measurement_spec("mri-multicoil", y.shape, coil_maps="estimated", mask_array=mask,
                            center_fraction=0.16, n_coils=C)
    assert spec["params"]["coil_maps_array"] is None and spec["params"]["n_coils"] == C
    arrays = {"mask_array": mask}
    with pytest.raises(InputError, match="coil_maps_array"):
        operator_from_spec(spec, arrays)  # nothing to derive the maps from
    rebuilt = operator_from_spec(spec, arrays, measurement=y)
    np.testing.assert_array_equal(rebuilt.coil_maps, estimate_coil_maps(y, 0.16))
    np.testing.assert_array_equal(rebuilt.mask[0], mask)
    # supplied arrays win over derived ones
    maps = op.coil_maps
    given = operator_from_spec(spec, {**arrays, "coil_maps_array": maps}, measurement=y)
    np.testing.assert_array_equal(given.coil_maps, maps)
    # a simulated operator's spec derives nothing: the same operator comes back
    same = operator_from_spec(op.spec(), None, measurement=y)
    np.testing.assert_array_equal(same.coil_maps, op.coil_maps)
    # a measurement with another coil count does not fit the spec
    with pytest.raises(InputError, match=r"measurement has shape \(2, 64, 48\)"):
        operator_from_spec(spec, arrays, measurement=y[:2])


def test_measurement_spec_refuses_wrong_dimensions():
    with pytest.raises(InputError, match="3-D"):
        measurement_spec("mri-multicoil", (H, W), coil_maps="estimated")
    with pytest.raises(InputError, match="unknown operator"):
        measurement_spec("nope", (H, W))


# ------------------------------------------------------------------ fastMRI
def test_fastmri_multicoil_reads_exactly_and_reconstructs(tmp_path):
    ks, op, xs = simulate(3)
    rss = xs[:, H // 2 - 16:H // 2 + 16, W // 2 - 16:W // 2 + 16]  # a centre crop, as fastMRI
    path = write_fastmri(tmp_path / "knee.h5", ks, mask=op.mask[0], rss=rss, xml=header(3))
    before = digest(path)
    assert fastmri.accepts(path)
    assert not ismrmrd_file.accepts(path) and not kspace_npy.accepts(path)
    (shown, kw, kind), (ref, rkw, _) = fastmri.read(path)
    meta = kw["metadata"]["invrec"]
    assert kind == "image" and meta["kind"] == "measurement" and meta["noise"] is None
    assert shown.shape == ks.shape and ref.shape == ks.shape[:2] + rss.shape[1:]
    k = meta["complex_data"]
    assert k.chunks == ((1, 1, 1), (C,), (H,), (W,))  # one chunk per slice
    np.testing.assert_array_equal(k.compute(), ks)
    np.testing.assert_allclose(shown[1, 2].compute(), np.log1p(np.abs(ks[1, 2])), rtol=1e-6)
    np.testing.assert_array_equal(meta["arrays"]["mask_array"], op.mask[0])
    spec = meta["operator"]
    assert spec["operator"] == "mri-multicoil" and spec["measurement_shape"] == [C, H, W]
    assert spec["params"]["coil_maps"] == "estimated"
    n_acs = round(spec["params"]["center_fraction"] * W)
    acs = slice(W // 2 - n_acs // 2, W // 2 - n_acs // 2 + n_acs)
    assert n_acs >= round(0.16 * W) and op.mask[0, acs].all()
    # the reference: centred on the image grid, not a ground truth (another size), same slices
    assert rkw["translate"][-2:] == [16.0, 8.0] and meta["ground_truth"] is None
    np.testing.assert_array_equal(np.asarray(ref[2, 3]), rss[2])
    units = meta["units"]
    assert units["unit"] == "mm" and units["spacing"] == [2.0, 1.5]
    assert units["recon_matrix"] == [H // 2, H // 2, 1] and units["acquisition"] == "CORPD_FBK"
    # one slice reconstructs with maps estimated from it, better than zero filling
    y = k[1].compute()
    rec_op = operator_from_spec(spec, meta["arrays"], measurement=y)
    zf = api.reconstruct(y, rec_op, "adjoint").x
    tv = api.reconstruct(y, rec_op, "tv-fista", iters=50, lam=0.002).x
    assert psnr(tv, xs[1]) > psnr(zf, xs[1]) + 5
    assert digest(path) == before  # opened read-only


def test_fastmri_single_coil_detects_mask_and_matches_reference(tmp_path):
    ks, op, xs = simulate(2, coils=False)
    path = write_fastmri(tmp_path / "sc.h5", ks, rss=np.abs(xs))
    (shown, kw, _), (ref, rkw, _) = fastmri.read(path)
    meta = kw["metadata"]["invrec"]
    assert meta["operator"]["operator"] == "mri" and shown.shape == ks.shape
    np.testing.assert_array_equal(meta["arrays"]["mask_array"], op.mask[0])  # detected
    assert "detected" in meta["notes"] and "slice 1" in meta["notes"]
    assert meta["ground_truth"] == rkw["name"] and rkw["translate"] == [0.0, 0.0, 0.0]
    assert ref.shape == xs.shape and meta["units"]["spacing"] is None
    y = meta["complex_data"][0].compute()
    rec = operator_from_spec(meta["operator"], meta["arrays"], measurement=y)
    np.testing.assert_array_equal(rec.mask, op.mask)


def test_fastmri_reads_lazily(tmp_path):
    ks, op, xs = simulate(16)
    path = write_fastmri(tmp_path / "big.h5", ks, mask=op.mask[0], rss=np.abs(xs),
                         xml=header(16))
    size = path.stat().st_size
    with CountingFile(path, "rb") as fobj:
        layers = fastmri.read(path, fileobj=fobj)
        opened = fobj.nbytes
        assert opened < 0.05 * size, (opened, size)
        k = layers[0][1]["metadata"]["invrec"]["complex_data"]
        one = k[7].compute()
        slice_bytes = ks[7].nbytes
        assert slice_bytes <= fobj.nbytes - opened < 1.5 * slice_bytes
        np.testing.assert_array_equal(one, ks[7])
        del layers, k


@pytest.mark.parametrize("case", ["real", "ndim", "mask", "truncated", "notes"])
def test_fastmri_refuses_bad_files(tmp_path, case):
    import h5py

    ks, op, _ = simulate(2)
    path = tmp_path / "bad.h5"
    if case == "real":
        write_fastmri(path, np.abs(ks))
    elif case == "ndim":
        write_fastmri(path, ks[0, 0])
    elif case == "mask":
        write_fastmri(path, ks, mask=np.ones(W + 2, np.float32))
    elif case == "truncated":
        write_fastmri(path, ks, mask=op.mask[0])
        data = path.read_bytes()
        path.write_bytes(data[:len(data) - 4096])
        assert fastmri.accepts(path)  # damaged HDF5: ours to explain
    else:  # a non-HDF5 file with the suffix: not accepted, and read says what it is
        path.write_bytes(b"not hdf5 at all")
        assert not fastmri.accepts(path)
    if case in ("real", "ndim", "mask"):
        assert fastmri.accepts(path)
        with h5py.File(path, "r") as f:
            assert "kspace" in f
    with pytest.raises(InputError) as err:
        fastmri.read(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    want = {"real": "not complex", "ndim": "expected (slices", "mask": "mask has shape",
            "truncated": "truncated", "notes": "not a readable HDF5"}[case]
    assert want in msg


# ------------------------------------------------------------------ ISMRMRD
def write_ismrmrd(path: Path, ks: np.ndarray, mask: np.ndarray) -> None:
    """Acquisitions in interleaved order: a noise scan, calibration-only lines, and every
    sampled line of every slice (averaged twice for the DC line), all coils per readout."""
    import ismrmrd

    s_n = ks.shape[0]
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dset.write_xml_header(header(s_n))
    rng = np.random.default_rng(0)

    def acq(data, **idx):
        a = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data, dtype=np.complex64),
                                           center_sample=H // 2)
        for k, v in idx.items():
            setattr(a.idx, k, v)
        return a

    noise = acq(rng.normal(size=(C, H)) * (1 + 1j))
    noise.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    dset.append_acquisition(noise)
    calib = acq(rng.normal(size=(C, H)) * 1e3, kspace_encode_step_1=1, slice=0)
    calib.set_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)  # calibration only: skipped
    dset.append_acquisition(calib)
    other = acq(rng.normal(size=(C, H)) * 1e3, kspace_encode_step_1=3, slice=0, repetition=1)
    dset.append_acquisition(other)  # a second repetition: left out
    for e1 in np.flatnonzero(mask):
        for s in range(s_n):
            line = ks[s, :, :, e1]
            if e1 == W // 2:  # two averages whose mean is the line
                dset.append_acquisition(acq(line + 0.5, kspace_encode_step_1=e1, slice=s,
                                            average=0))
                dset.append_acquisition(acq(line - 0.5, kspace_encode_step_1=e1, slice=s,
                                            average=1))
            else:
                dset.append_acquisition(acq(line, kspace_encode_step_1=e1, slice=s))
    dset.close()


def test_ismrmrd_assembles_kspace_and_reconstructs(tmp_path):
    ks, op, xs = simulate(2)
    mask = op.mask[0]
    path = tmp_path / "raw.h5"
    write_ismrmrd(path, ks, mask)
    before = digest(path)
    assert ismrmrd_file.accepts(path) and not fastmri.accepts(path)
    assert not kspace_npy.accepts(path)
    [(shown, kw, _)] = ismrmrd_file.read(path)
    meta = kw["metadata"]["invrec"]
    k = meta["complex_data"]
    assert k.shape == ks.shape == shown.shape
    np.testing.assert_allclose(k, ks, rtol=0, atol=1e-6)  # averages: exact up to rounding
    np.testing.assert_array_equal(np.delete(k, W // 2, -1), np.delete(ks, W // 2, -1))
    np.testing.assert_array_equal(meta["arrays"]["mask_array"], mask)
    assert "1 readout(s)" in meta["notes"]
    assert meta["units"]["spacing"] == [2.0, 1.5] and meta["operator"]["operator"] == \
        "mri-multicoil"
    y = np.asarray(k[1])
    rec = operator_from_spec(meta["operator"], meta["arrays"], measurement=y)
    zf = api.reconstruct(y, rec, "adjoint").x
    tv = api.reconstruct(y, rec, "tv-fista", iters=50, lam=0.002).x
    assert psnr(tv, xs[1]) > psnr(zf, xs[1]) + 5
    assert digest(path) == before


def test_ismrmrd_refuses_non_cartesian_and_damaged(tmp_path):
    import ismrmrd

    path = tmp_path / "radial.h5"
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dset.write_xml_header(header(1).replace("<trajectory>cartesian", "<trajectory>radial"))
    dset.append_acquisition(ismrmrd.Acquisition.from_array(np.ones((C, H), np.complex64)))
    dset.close()
    with pytest.raises(InputError, match="not Cartesian") as err:
        ismrmrd_file.read(path)
    assert "truncated" not in str(err.value)
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(path.read_bytes()[:1000])
    assert not ismrmrd_file.accepts(damaged) and fastmri.accepts(damaged)  # explained there
    for reader in (ismrmrd_file.read, fastmri.read):
        with pytest.raises(InputError, match="truncated"):
            reader(damaged)


# ------------------------------------------------------------------ numpy k-space
def test_sample_phantom_kspace_opens_and_reconstructs():
    path = SAMPLE / "phantom_kspace.npy"
    assert kspace_npy.accepts(path)
    assert not kspace_npy.accepts(SAMPLE / "phantom_kspace_mask.npy")  # real: napari's reader
    assert not kspace_npy.accepts(SAMPLE / "phantom_clean.npy")
    [(shown, kw, _)] = kspace_npy.read(path)
    meta = kw["metadata"]["invrec"]
    k = meta["complex_data"]
    assert isinstance(k, np.memmap) and meta["operator"]["operator"] == "mri"
    np.testing.assert_array_equal(k, np.load(path))
    np.testing.assert_array_equal(meta["arrays"]["mask_array"],
                                  np.load(SAMPLE / "phantom_kspace_mask.npy"))
    assert "phantom_kspace_mask.npy" in meta["notes"]
    truth = np.load(SAMPLE / "phantom_clean.npy")
    op = operator_from_spec(meta["operator"], meta["arrays"], measurement=np.asarray(k))
    zf = api.reconstruct(np.asarray(k), op, "adjoint").x
    tv = api.reconstruct(np.asarray(k), op, "tv-fista", iters=60, lam=0.005).x
    assert psnr(tv, truth) > psnr(zf, truth) + 1


def test_npy_multicoil_without_mask_detects_it_and_says_so(tmp_path):
    ks, op, xs = simulate(1)
    path = tmp_path / "coils.npy"
    np.save(path, ks[0])
    before = digest(path)
    [(shown, kw, _)] = kspace_npy.read(path)
    meta = kw["metadata"]["invrec"]
    assert shown.shape == (C, H, W) and meta["operator"]["operator"] == "mri-multicoil"
    np.testing.assert_array_equal(meta["complex_data"], ks[0])
    np.testing.assert_array_equal(meta["arrays"]["mask_array"], op.mask[0])
    assert "no mask file" in meta["notes"] and "detected" in meta["notes"]
    y = np.asarray(meta["complex_data"])
    rec = operator_from_spec(meta["operator"], meta["arrays"], measurement=y)
    assert psnr(api.reconstruct(y, rec, "tv-fista", iters=50, lam=0.002).x, xs[0]) > \
        psnr(api.reconstruct(y, rec, "adjoint").x, xs[0]) + 5
    assert digest(path) == before


def test_npz_with_mask_entry(tmp_path):
    ks, op, _ = simulate(1, coils=False)
    path = tmp_path / "k.npz"
    np.savez(path, other=np.zeros(3), kspace=ks[0], mask=op.mask[0])
    assert kspace_npy.accepts(path)
    [(_, kw, _)] = kspace_npy.read(path)
    meta = kw["metadata"]["invrec"]
    np.testing.assert_array_equal(meta["complex_data"], ks[0])
    np.testing.assert_array_equal(meta["arrays"]["mask_array"], op.mask[0])
    real = tmp_path / "real.npz"
    np.savez(real, image=np.zeros((4, 4)))
    assert not kspace_npy.accepts(real)


@pytest.mark.parametrize("case", ["mask", "ndim", "truncated"])
def test_npy_refuses_bad_files(tmp_path, case):
    ks, _, _ = simulate(1, coils=False)
    path = tmp_path / "k.npy"
    if case == "mask":
        np.save(path, ks[0])
        np.save(tmp_path / "k_mask.npy", np.ones(W - 1, np.float32))
    elif case == "ndim":
        np.save(path, ks[0][None, None])
    else:
        np.save(path, ks[0])
        path.write_bytes(path.read_bytes()[:-100])
    assert kspace_npy.accepts(path)  # complex: ours, and refused with a reason
    with pytest.raises(InputError) as err:
        kspace_npy.read(path)
    want = {"mask": "mask has shape", "ndim": "expected (H, W)", "truncated": "truncated"}
    assert want[case] in str(err.value) and "\n" not in str(err.value)


def test_ismrmrd_partial_echo_and_reversed_readouts(tmp_path):
    """A readout missing its first 8 samples (centre sample 24 of 56) is zero-padded back
    onto the centred grid, and the mask marks the rows never sampled; a readout flagged
    ACQ_IS_REVERSE is flipped back."""
    import ismrmrd

    ks, op, _ = simulate(1)
    mask = op.mask[0]
    path = tmp_path / "echo.h5"
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dset.write_xml_header(header(1))
    for e1 in np.flatnonzero(mask):
        line = ks[0, :, 8:, e1]
        rev = e1 % 2 == 1
        a = ismrmrd.Acquisition.from_array(np.ascontiguousarray(line[:, ::-1] if rev else line),
                                           center_sample=H // 2 - 8)
        a.idx.kspace_encode_step_1 = int(e1)
        if rev:
            a.set_flag(ismrmrd.ACQ_IS_REVERSE)
        dset.append_acquisition(a)
    dset.close()
    [(_, kw, _)] = ismrmrd_file.read(path)
    meta = kw["metadata"]["invrec"]
    want = ks.copy()
    want[..., :8, :] = 0
    np.testing.assert_array_equal(meta["complex_data"], want)
    m = meta["arrays"]["mask_array"]
    assert m.shape == (H, W) and not m[:8].any()
    np.testing.assert_array_equal(m[8:], np.broadcast_to(mask, (H - 8, W)))
    assert "asymmetric echo" in meta["notes"]
    y = np.asarray(meta["complex_data"][0])
    rec = operator_from_spec(meta["operator"], meta["arrays"], measurement=y)
    np.testing.assert_array_equal(rec.mask, m)


def test_dispatch_picks_one_reader_per_file(tmp_path):
    from napari_invrec.formats import reader_for

    ks, op, _ = simulate(2)
    write_fastmri(tmp_path / "a.h5", ks, mask=op.mask[0])
    write_ismrmrd(tmp_path / "b.h5", ks, op.mask[0])
    np.save(tmp_path / "c.npy", ks[0])
    np.savez(tmp_path / "d.npz", kspace=ks[0])
    np.save(tmp_path / "e.npy", np.abs(ks[0]))  # real: left to napari's own reader
    got = {n: getattr(reader_for(tmp_path / n), "__module__", None)
           for n in ("a.h5", "b.h5", "c.npy", "d.npz", "e.npy")}
    assert got == {"a.h5": fastmri.__name__, "b.h5": ismrmrd_file.__name__,
                   "c.npy": kspace_npy.__name__, "d.npz": kspace_npy.__name__, "e.npy": None}
