"""The command line against hostile files and options: outputs over inputs, missing folders,
malformed sidecars, odd arrays. Every user error exits 2 with one line; nothing is written
over a file the run reads; nothing is computed before the outputs are known to be writable."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_invrec import api, cli
from napari_invrec.core.data import shepp_logan

pytestmark = pytest.mark.usefixtures("one_thread")

CLI_FILES = sorted(Path(cli.__file__).parent.glob("cli*.py"))


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("napari-invrec: error: "), err
    return err


def _strict_json(text: str):
    def refuse(token):
        raise ValueError(f"non-JSON token {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture()
def work(tmp_path, monkeypatch):
    """A folder (the current directory) with x.tif and its simulated blur measurement
    y.npy + y.npy.json."""
    monkeypatch.chdir(tmp_path)
    tifffile.imwrite(tmp_path / "x.tif", shepp_logan(32))
    assert cli.main(["simulate", "--operator", "blur", "--input", "x.tif", "--output", "y.npy",
                     "--quiet"]) == 0
    return tmp_path


@pytest.fixture()
def no_compute(monkeypatch):
    """Fail the test if a reconstruction or simulation is started."""

    def boom(*a, **k):
        raise AssertionError("the run started before the outputs were checked")

    monkeypatch.setattr(api, "reconstruct", boom)
    monkeypatch.setattr(api, "simulate", boom)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


REC = ["reconstruct", "--method", "tv-fista", "--iters", "3", "--quiet"]


# ---------------------------------------------------------------- 1. never write over inputs
@pytest.mark.parametrize("output", ["y.npy", "./y.npy", "sub/../y.npy", "link.npy", "ABS"])
def test_output_naming_the_input_is_refused_before_any_work(work, capsys, output, no_compute):
    (work / "sub").mkdir()
    (work / "link.npy").symlink_to(work / "y.npy")
    output = str(work / "y.npy") if output == "ABS" else output
    before = _snapshot(work)
    assert cli.main([*REC, "--input", "y.npy", "--output", output]) == 2
    assert "would overwrite the input" in _one_line_error(capsys)
    assert _snapshot(work) == before


@pytest.mark.parametrize("extra, match", [
    (["--output", "o.tif", "--iterates", "y.npy"], "--iterates 'y.npy' would overwrite the input"),
    (["--output", "o.tif", "--iterates", "./x.tif", "--reference", "x.tif"],
     "would overwrite the reference"),
    (["--output", "x.tif", "--reference", "x.tif"], "would overwrite the reference"),
    (["--output", "o.npy", "--iterates", "o.npy"], "are the same file"),
    (["--output", "x.tif", "--reference", "x.std.tif"], "std file"),
    (["--output", "o.tif", "--iterates", "y.npy.json"], "use a .npy or .tif"),
])
def test_no_written_file_may_be_a_read_file(work, capsys, extra, match, no_compute):
    (work / "x.std.tif").write_bytes((work / "x.tif").read_bytes())
    before = _snapshot(work)
    assert cli.main([*REC, "--input", "y.npy", *extra]) == 2
    assert match in _one_line_error(capsys)
    assert _snapshot(work) == before


def test_output_sidecar_over_the_input_sidecar_is_refused(work, capsys, no_compute):
    # o.npy.json links to the input's sidecar: writing OUTPUT.json would replace it
    (work / "o.npy.json").symlink_to(work / "y.npy.json")
    before = _snapshot(work)
    assert cli.main([*REC, "--input", "y.npy", "--output", "o.npy"]) == 2
    assert "output sidecar 'o.npy.json' would overwrite the input's sidecar" in (
        _one_line_error(capsys))
    assert _snapshot(work) == before


def test_array_option_file_is_protected(work, capsys, no_compute):
    np.save(work / "mask.npy", np.ones((32, 32), np.float32))
    assert cli.main(["simulate", "--operator", "inpaint", "--mask", "custom", "--mask-array",
                     "mask.npy", "--input", "x.tif", "--output", "mask.npy"]) == 2
    assert "--mask-array file" in _one_line_error(capsys)


# ---------------------------------------------------------------- 2. outputs checked first
@pytest.mark.parametrize("extra, match", [
    (["--output", "nope/o.tif"], "output folder 'nope' does not exist"),
    (["--output", "o.tif", "--iterates", "nope/i.npy"], "--iterates folder 'nope' does not"),
    (["--output", "o.png"], "use a .npy or .tif"),
    (["--output", "o.tif", "--iterates", "i.txt"], "use a .npy or .tif"),
    (["--output", "adir"], "is a directory"),
    (["--output", "afile/o.tif"], "is not a folder"),
])
def test_outputs_are_checked_before_reading_or_computing(work, capsys, extra, match,
                                                         no_compute):
    (work / "adir").mkdir()
    (work / "afile").write_text("")
    assert cli.main([*REC, "--input", "y.npy", *extra]) == 2
    assert match in _one_line_error(capsys)
    assert not (work / "o.tif").exists()


def test_complex_simulation_needs_npy_before_work(work, capsys, no_compute):
    assert cli.main(["simulate", "--operator", "mri", "--input", "x.tif", "--output",
                     "k.tif"]) == 2
    assert ".npy" in _one_line_error(capsys)


def test_complex_image_with_tif_outputs_runs_end_to_end(work):
    assert cli.main(["simulate", "--operator", "mri", "--input", "x.tif", "--output", "k.npy",
                     "--quiet"]) == 0
    assert cli.main(["reconstruct", "--method", "tikhonov", "--input", "k.npy", "--output",
                     "m.tif", "--iterates", "it.tif", "--quiet"]) == 0
    stack = tifffile.imread(work / "it.tif")
    assert stack.ndim == 3 and stack.dtype == np.float32 and stack.min() >= 0


# ---------------------------------------------------------------- 3. a directory as input
@pytest.mark.parametrize("flag", ["--input", "--reference"])
def test_directory_input_says_directory(work, capsys, flag):
    (work / "d").mkdir()
    files = {"--input": "y.npy", "--reference": "x.tif", flag: "d"}
    assert cli.main([*REC, "--operator", "blur", "--output", "o.tif",
                     *(a for kv in files.items() for a in kv)]) == 2
    err = _one_line_error(capsys)
    assert "'d' is a directory" in err and "does not exist" not in err


# ---------------------------------------------------------------- 4. malformed sidecars
GOOD_OP = {"operator": "blur", "shape": [32, 32], "params": {}}


@pytest.mark.parametrize("record, match", [
    ([1, 2], "must hold a JSON object"),
    ("blur", "must hold a JSON object"),
    ({"operator": "blur"}, "'operator' must be an object"),
    ({"operator": ["blur"]}, "'operator' must be an object"),
    ({"operator": {"shape": [32, 32]}}, "operator's name"),
    ({"operator": {"operator": 3, "shape": [32, 32]}}, "operator's name"),
    ({"operator": {"operator": "blur"}}, "'shape' must be a list of positive integers"),
    ({"operator": {"operator": "blur", "shape": 32}}, "'shape' must be a list"),
    ({"operator": {"operator": "blur", "shape": [32, "32"]}}, "'shape' must be a list"),
    ({"operator": {"operator": "blur", "shape": [0, 32]}}, "'shape' must be a list"),
    ({"operator": {"operator": "blur", "shape": [32, 32], "measurement_shape": "x"}},
     "'measurement_shape' must be a list"),
    ({"operator": {"operator": "blur", "shape": [32, 32], "params": [1]}},
     "'params' must be an object"),
    ({"operator": {**GOOD_OP, "params": {"sigma": "wide"}}}, "sigma='wide'"),
    ({"operator": {**GOOD_OP, "params": {"sigma": [2.0]}}}, "sigma="),
    ({"operator": {**GOOD_OP, "params": {"no_such": 1}}}, "no_such"),
    ({"operator": {**GOOD_OP, "params": {"kernel_array": {"sha256": "0"}}}}, "kernel_array"),
    ({"operator": {**GOOD_OP, "extra": 1}}, "extra"),
    ({"operator": {**GOOD_OP, "operator": "warp"}}, "unknown operator 'warp'"),
    ({"operator": {**GOOD_OP, "shape": [16, 16]}}, "shape"),
])
def test_malformed_sidecar_is_one_line_naming_the_file(work, capsys, record, match):
    (work / "y.npy.json").write_text(json.dumps(record))
    assert cli.main([*REC, "--input", "y.npy", "--output", "o.tif"]) == 2
    err = _one_line_error(capsys)
    assert match in err and "y.npy.json" in err, err


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00garbage", b"[" * 100000])
def test_unreadable_sidecar_text(work, capsys, content):
    (work / "y.npy.json").write_bytes(content)
    assert cli.main([*REC, "--input", "y.npy", "--output", "o.tif"]) == 2
    err = _one_line_error(capsys)
    assert "y.npy.json" in err and "fix or delete" in err


def _npz_garbage(p):
    p.write_bytes(b"garbage, not a zip")


def _npz_pickled(p):
    np.savez(p, kernel_array=np.array([{"a": 1}], dtype=object))


def _npz_is_npy(p):
    with open(p, "wb") as f:
        np.save(f, np.ones((3, 3)))


def _npz_strings(p):
    np.savez(p, kernel_array=np.array(["a", "b"]))


def _npz_truncated(p):
    np.savez(p, kernel_array=np.ones((5, 5)))
    p.write_bytes(p.read_bytes()[:60])


@pytest.mark.parametrize("make", [_npz_garbage, _npz_pickled, _npz_is_npy, _npz_strings,
                                  _npz_truncated])
def test_bad_sidecar_arrays_are_one_line(work, capsys, make):
    make(work / "y.npy.arrays.npz")
    assert cli.main([*REC, "--input", "y.npy", "--output", "o.tif"]) == 2
    assert "y.npy.arrays.npz" in _one_line_error(capsys)


def test_simulate_over_a_previous_output_removes_its_stale_arrays(work):
    np.save(work / "mask.npy", (np.arange(32 * 32).reshape(32, 32) % 3 > 0).astype(np.float32))
    assert cli.main(["simulate", "--operator", "inpaint", "--mask", "custom", "--mask-array",
                     "mask.npy", "--input", "x.tif", "--output", "m.npy", "--quiet"]) == 0
    assert (work / "m.npy.arrays.npz").is_file()
    assert cli.main(["simulate", "--operator", "inpaint", "--input", "x.tif", "--output",
                     "m.npy", "--quiet"]) == 0
    # the new sidecar records no array: an archive left beside it would be read as its mask
    assert not (work / "m.npy.arrays.npz").exists()


def test_np_load_never_allows_pickle_in_the_cli():
    for path in CLI_FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "np.load":
                kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert kw.get("allow_pickle") == "False", f"{path.name}: {ast.unparse(node)}"


# ---------------------------------------------------------------- 5. strict JSON sidecars
def test_sidecar_is_strict_json_with_null_for_non_finite(work):
    a = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    np.save(work / "d.npy", a)
    np.save(work / "r.npy", a)
    # the adjoint of the identity gives the reference exactly: PSNR is infinite
    assert cli.main(["reconstruct", "--operator", "denoise", "--method", "adjoint", "--input",
                     "d.npy", "--reference", "r.npy", "--output", "o.npy", "--quiet"]) == 0
    rec = _strict_json((work / "o.npy.json").read_text())
    assert rec["provenance"]["metrics"]["psnr"] is None


def test_write_sidecar_refuses_nan_tokens(tmp_path):
    side = cli.write_sidecar(tmp_path / "o.npy", {"m": float("nan"), "v": [np.float32("inf"), 1],
                                                  "n": np.float64(-np.inf), "ok": 0.5})
    assert _strict_json(side.read_text()) == {"m": None, "v": [None, 1], "n": None, "ok": 0.5}


# ---------------------------------------------------------------- 6. --budget
def test_budget_reaches_the_engine(work, monkeypatch):
    from napari_invrec.engine.history import DEFAULT_BUDGET

    seen = []
    real = api.reconstruct

    def spy(*a, **k):
        seen.append(k.get("history_budget"))
        return real(*a, **k)

    monkeypatch.setattr(api, "reconstruct", spy)
    assert cli.main([*REC, "--input", "y.npy", "--output", "a.tif"]) == 0
    assert cli.main([*REC, "--input", "y.npy", "--output", "b.tif", "--budget", "3"]) == 0
    assert seen == [DEFAULT_BUDGET, 3 * 2 ** 20]


def test_small_budget_thins_the_iterates(work):
    argv = ["reconstruct", "--method", "tv-fista", "--iters", "400", "--input", "y.npy",
            "--output", "o.npy", "--quiet", "--iterates", "it.npy"]
    assert cli.main(argv) == 0
    full = np.load(work / "it.npy")
    assert cli.main([*argv, "--budget", "1"]) == 0  # 1 MB: fewer than 400 iterates of 32x32
    thinned = np.load(work / "it.npy")
    assert len(full) >= 400 and len(thinned) < len(full) and thinned.nbytes <= 2 ** 20


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "lots", str(2 ** 40)])
def test_budget_must_be_a_positive_whole_number(work, capsys, value):
    with pytest.raises(SystemExit) as e:
        cli.main([*REC, "--input", "y.npy", "--output", "o.tif", "--budget", value])
    assert e.value.code == 2
    assert "argument --budget" in capsys.readouterr().err


# ---------------------------------------------------------------- 7. odd arrays, odd numbers
def test_odd_input_arrays_are_one_line(work, capsys):
    np.save(work / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(work / "line.npy", np.ones(32, np.float32))
    np.save(work / "scalar.npy", np.float32(1.0))
    np.save(work / "rec.npy", np.zeros((4, 4), dtype=[("a", "f4"), ("b", "i4")]))
    tifffile.imwrite(work / "four.tif", np.zeros((2, 2, 16, 16), np.float32))
    with open(work / "zip.npy", "wb") as f:  # an .npz archive under a .npy name
        np.savez(f, a=np.ones((4, 4)))
    (work / "text.tif").write_text("not a tiff")
    for name, match in [("obj.npy", "cannot read"), ("line.npy", "at least 2 dimensions"),
                        ("scalar.npy", "at least 2 dimensions"), ("rec.npy", "not numbers"),
                        ("four.tif", "2-D"), ("zip.npy", "not an array"),
                        ("text.tif", "cannot read")]:
        assert cli.main([*REC, "--operator", "blur", "--input", name, "--output",
                         "o.tif"]) == 2, name
        assert match in _one_line_error(capsys), name


@pytest.mark.parametrize("extra", [["--iters", str(2 ** 70)], ["--seed", str(2 ** 70)],
                                   ["--iters", "3.5"]])
def test_integer_options_beyond_any_engine_integer(work, capsys, extra):
    with pytest.raises(SystemExit) as e:
        cli.main([*REC, "--input", "y.npy", "--output", "o.tif", *extra])
    assert e.value.code == 2
    assert f"argument {extra[0]}" in capsys.readouterr().err


def test_conversion_errors_are_one_line_but_bugs_keep_their_traceback(work, capsys,
                                                                      monkeypatch):
    from napari_invrec.core.operators import registry

    def bad_value(*a, **k):
        raise ValueError("radius cannot be used with this kernel")

    with monkeypatch.context() as m:
        m.setattr(registry, "make_operator", bad_value)
        assert cli.main([*REC, "--operator", "blur", "--sigma", "2", "--input", "y.npy",
                         "--output", "o.tif"]) == 2
    err = _one_line_error(capsys)
    assert "the blur options" in err and "radius cannot be used" in err

    def bug(*a, **k):
        raise TypeError("a bug in the engine")

    monkeypatch.setattr(api, "reconstruct", bug)
    with pytest.raises(TypeError, match="a bug in the engine"):
        cli.main([*REC, "--input", "y.npy", "--output", "o.tif"])


# ---------------------------------------------------------------- 8. layering
def test_cli_train_does_not_import_cli():
    code = ("import sys, napari_invrec.cli_train, napari_invrec.cli_files; "
            "assert 'napari_invrec.cli' not in sys.modules, 'cli_train imports cli'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for path in CLI_FILES:
        if path.name != "cli.py":
            tree = ast.parse(path.read_text())
            froms = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
            assert "cli" not in froms, f"{path.name} imports napari_invrec.cli"
