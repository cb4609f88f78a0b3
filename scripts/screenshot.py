"""Screenshot of the plugin at work: ``xvfb-run -a .venv/bin/python scripts/screenshot.py``.

Opens napari with the Simulate, Reconstruct and Compare widgets docked, loads the "atoms-blur"
sample, runs langevin-tv and tv-fista through the Reconstruct widget (setting its values and
clicking Run, as a user would), shows a 2x2 grid (ground truth, tv-fista iterate history at a
middle step, langevin-tv posterior mean and std) and saves
``screenshots/napari_invrec_overview.png`` (window with docks, not only canvas).
``--scene train`` docks the Train widget instead of Compare and shoots it mid-training
(``screenshots/napari_invrec_train_1280x1024.png``). ``--scene trust`` docks the Uncertainty &
hallucinations widget instead of Compare: langevin-tv on a 50 % inpainting of the phantom, its
trust maps, the std layer with a hotspot Labels overlay and calibrated bands
(``screenshots/napari_invrec_trust.png``). ``--scene diffusion``: a diffpir run on 4x MRI of the
camera image, its ``x_t`` and ``x0_hat`` stacks at the same step mid-way, std and a hotspot
overlay (``screenshots/napari_invrec_diffusion.png``). ``--scene lensless``: the camera image
through the simulated diffuser camera, its caustic PSF, tv-admm and learned-admm
(``screenshots/napari_invrec_lensless.png``). ``--scene acquisition``: the learned MRI
pattern next to a random one and their reconstructions
(``screenshots/napari_invrec_acquisition.png``). ``--scene dirac``: incremental reconstruction
of a blurred held-out photograph, the iterate slider mid-way with its degradation level
(``screenshots/napari_invrec_dirac.png``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKS = (("Simulate measurement", "left"), ("Reconstruct", "right"), ("Compare runs", "right"))


def _wait(app, widget, timeout: float = 300.0) -> None:
    t0 = time.perf_counter()
    while widget.controller.running:
        app.processEvents()
        time.sleep(0.02)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("the run did not finish in time")
    app.processEvents()


def _dock(viewer, name: str, area: str):
    """Dock a plugin widget in ``area``; ``(None, None)`` (with a note) if it cannot be made."""
    try:
        dock, widget = viewer.window.add_plugin_dock_widget("napari-invrec", name)
    except Exception as exc:  # noqa: BLE001 - e.g. the Compare widget not written yet
        print(f"note: could not dock {name!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None, None
    from qtpy.QtCore import Qt

    where = {"left": Qt.LeftDockWidgetArea, "right": Qt.RightDockWidgetArea}[area]
    viewer.window._qt_window.addDockWidget(where, dock)
    return dock, widget


def _run(app, rec, method: str, values: dict) -> None:
    rec.method.value = method
    rec.method_form.set_values(values)
    rec.run_button.clicked.emit(True)
    _wait(app, rec)
    print(rec.status.value)


def main() -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "screenshots" / "napari_invrec_overview.png"))
    ap.add_argument("--size", default="1920x1080", help="window size WxH")
    ap.add_argument("--dock-width", type=int, default=560, help="width of the right docks")
    ap.add_argument("--scene", choices=("overview", "catalogue", "train", "trust", "diffusion",
                                        "lensless", "acquisition", "dirac"),
                    default="overview",
                    help="overview: atoms, langevin-tv and tv-fista; catalogue: CT sinogram "
                         "with fbp/tv-fista and multi-coil MRI coil images with sense-cg; "
                         "train: the Train widget mid-training; trust: std + hotspots of a "
                         "langevin-tv inpainting run; diffusion: a diffpir MRI run, its x_t "
                         "and x0_hat stacks mid-way, std and a hotspot overlay; lensless: a "
                         "diffuser camera, its PSF, tv-admm and learned-admm; acquisition: the "
                         "learned MRI pattern next to a random one and their varnet "
                         "reconstructions; dirac: incremental reconstruction of a blurred "
                         "photograph, the slider mid-way at its degradation level")
    args = ap.parse_args()
    if args.scene != "overview" and args.out.endswith("overview.png"):
        args.out = args.out.replace("overview.png", f"{args.scene}.png")

    viewer = napari.Viewer(title="napari-invrec", show=True)
    w, h = (int(v) for v in args.size.split("x"))
    viewer.window._qt_window.resize(w, h)
    viewer.open_sample("napari-invrec", "atoms-blur")
    docks = {"train": (*DOCKS[:2], ("Train network", "right")),
             "trust": (*DOCKS[:2], ("Uncertainty & hallucinations", "right")),
             "diffusion": (*DOCKS[:2], ("Uncertainty & hallucinations", "right")),
             "dirac": DOCKS[:2],
             }.get(args.scene, DOCKS)
    docked = {name: _dock(viewer, name, area) for name, area in docks}
    widgets = {name: wd for name, (_, wd) in docked.items()}
    app = QApplication.instance()
    app.processEvents()
    from qtpy.QtCore import Qt

    right = [d for name, (d, _) in docked.items() if d is not None and name != docks[0][0]]
    if right:  # a narrower right column leaves the canvas room
        viewer.window._qt_window.resizeDocks(right, [args.dock_width] * len(right),
                                             Qt.Horizontal)
    app.processEvents()

    rec = widgets["Reconstruct"]
    if rec is None:
        raise SystemExit("the Reconstruct widget could not be created")
    if args.scene == "catalogue":
        _catalogue_scene(app, viewer, widgets["Simulate measurement"], rec)
        _save(app, viewer, args.out, "catalogue scene")
        return
    if args.scene == "lensless":
        _lensless_scene(app, viewer, widgets["Simulate measurement"], rec)
        _save(app, viewer, args.out, "lensless scene")
        return
    if args.scene == "dirac":
        _dirac_scene(app, viewer, widgets["Simulate measurement"], rec)
        _save(app, viewer, args.out, "dirac scene")
        return
    if args.scene == "acquisition":
        _acquisition_scene(app, viewer, widgets["Simulate measurement"], rec)
        _save(app, viewer, args.out, "acquisition scene")
        return
    if args.scene == "train":
        _train_scene(app, viewer, widgets["Train network"], docked["Reconstruct"][0], args.out)
        return
    if args.scene == "trust":
        _trust_scene(app, viewer, widgets["Simulate measurement"], rec,
                     docked["Uncertainty & hallucinations"], docked["Reconstruct"][0],
                     args.dock_width)
        _save(app, viewer, args.out, "trust scene")
        return
    if args.scene == "diffusion":
        _diffusion_scene(app, viewer, widgets["Simulate measurement"], rec,
                         widgets["Uncertainty & hallucinations"])
        _save(app, viewer, args.out, "diffusion scene")
        return
    measurement = next(lay for lay in viewer.layers
                       if lay.metadata.get("invrec", {}).get("kind") == "measurement")
    rec.measurement.value = measurement
    _run(app, rec, "langevin-tv", {"lam": 0.005, "iters": 150, "burn_in": 50, "n_samples": 8})
    _run(app, rec, "tv-fista", {"lam": 0.005, "iters": 60})

    compare = widgets.get("Compare runs")
    if compare is not None and hasattr(compare, "refresh"):
        compare.refresh()

    # a 2x2 grid: ground truth, tv-fista iterate history at a middle step, langevin-tv
    # posterior mean and its per-pixel std

    hist = viewer.layers["tv-fista · blur [iterates]"]
    shown = [viewer.layers[n] for n in ("atoms (ground truth)", "tv-fista · blur [iterates]",
                                        "langevin-tv · blur", "langevin-tv · blur [std]")]
    steps = hist.metadata["invrec"]["steps"]
    mid = len(steps) // 2
    _show_grid(app, viewer, shown, hist, (2, 2), mid,
               translucent=viewer.layers["langevin-tv · blur [std]"])

    _save(app, viewer, args.out, f"iterate slider at index {mid}, step {steps[mid]}")


def _show_grid(app, viewer, shown, active, shape: tuple[int, int], step: int,
               translucent=None) -> None:
    """Only ``shown`` visible, in a grid of ``shape``, the sliders at ``step``, ``active``
    selected (and ``translucent`` blended so), the view reset and drawn."""
    from napari_invrec._widgets.compare import _grid

    for layer in viewer.layers:
        layer.visible = layer in shown
    if translucent is not None:
        translucent.blending = "translucent"
    grid = _grid(viewer)
    grid.enabled = True
    grid.shape = shape
    viewer.dims.set_current_step(0, step)
    viewer.layers.selection.active = active
    viewer.reset_view()
    app.processEvents()
    time.sleep(0.3)
    app.processEvents()


def _save(app, viewer, path: str, what: str) -> None:
    for _ in range(10):  # nested layouts (a dock's form in its scroll area) settle over turns
        app.processEvents()
        time.sleep(0.02)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    print(f"saved {out} ({what})")
    viewer.close()


def _catalogue_scene(app, viewer, sim, rec) -> None:
    """CT (sinogram, fbp, tv-fista) and multi-coil MRI (coil images, sense-cg) in a grid."""

    viewer.layers.clear()
    viewer.open_sample("napari-invrec", "phantom")
    truth = viewer.layers[-1]
    sim.image.value = truth
    sim.op_panel.operator.value = "ct"
    sim.op_panel.form.set_values({"n_angles": 60})
    sim.noise_form.set_values({"sigma": 0.002})  # ~1 % of the largest line integral
    sino = sim.simulate()[0]
    rec.measurement.value = sino
    _run(app, rec, "fbp", {})
    _run(app, rec, "tv-fista", {"lam": 0.002, "iters": 100})
    sim.op_panel.operator.value = "mri-multicoil"
    sim.op_panel.form.set_values({"n_coils": 8, "acceleration": 4})
    sim.noise_form.set_values({"sigma": 0.01})
    kspace = sim.simulate()[0]
    rec.measurement.value = kspace
    _run(app, rec, "sense-cg", {"iters": 30})
    coils = next(lay for lay in viewer.layers if lay.name.endswith("[coil images]"))
    rss = next(lay for lay in viewer.layers if lay.name.endswith("[rss]"))
    shown = [sino, viewer.layers["fbp · ct"], viewer.layers["tv-fista · ct"], coils, rss,
             viewer.layers["sense-cg · mri-multicoil"]]
    _show_grid(app, viewer, shown, coils, (2, 3), 2)


def _lensless_scene(app, viewer, sim, rec) -> None:
    """The camera image through a simulated diffuser camera: measurement, its caustic PSF,
    tv-admm and learned-admm."""
    viewer.layers.clear()
    viewer.open_sample("napari-invrec", "camera")
    truth = viewer.layers[-1]
    sim.image.value = truth
    sim.op_panel.operator.value = "lensless"
    sim.noise_form.set_values({"sigma": 0.01})
    meas = sim.simulate()[0]
    psf = next(lay for lay in viewer.layers if lay.name.endswith("[psf]"))
    psf.visible = True
    psf.contrast_limits = (0.0, float(psf.data.max()) * 0.5)
    rec.measurement.value = meas
    _run(app, rec, "tv-admm", {})
    _run(app, rec, "learned-admm", {})
    result = viewer.layers["learned-admm · lensless"]
    shown = [meas, psf, viewer.layers["tv-admm · lensless"], result]
    _show_grid(app, viewer, shown, result, (2, 2), 2)


def _acquisition_scene(app, viewer, sim, rec) -> None:
    """4x MRI of the phantom through the learned pattern and through a random one of the same
    budget: each row a sampling mask and its varnet reconstruction (last cascade), the
    learned pattern with its own network on top, the random one with varnet-mri4x below."""
    viewer.layers.clear()
    viewer.open_sample("napari-invrec", "phantom")
    truth = viewer.layers[-1]
    sim.image.value = truth
    sim.op_panel.operator.value = "mri"
    sim.noise_form.set_values({"sigma": 0.01})
    masks, results = [], []
    for pattern, weights in (("learned", "varnet-loupe-mri4x"), ("random", "varnet-mri4x")):
        sim.op_panel.form.set_values({"acceleration": 4, "pattern": pattern})
        meas = sim.simulate()[0]
        mask = [lay for lay in viewer.layers if lay.name.endswith("[sampling mask]")][-1]
        mask.visible = True
        masks.append(mask)
        rec.measurement.value = meas
        _run(app, rec, "varnet", {"weights": weights})
        results.append(viewer.layers[-1])
    last = int(viewer.dims.range[0].stop) - 1  # the last cascade of the iterate stacks
    _show_grid(app, viewer, masks + results, results[0], (2, 2), last)
    for layer in results:  # contrast of the shown (last) cascade, not of the first
        layer.reset_contrast_limits()
    app.processEvents()


def _dirac_scene(app, viewer, sim, rec) -> None:
    """A held-out photograph (moon, 256 px) blurred (Gaussian sigma 2, noise 0.01) and
    reconstructed by dirac (20 levels, default stop): truth, measurement, the iterate z_t
    and the network's estimate mid-way, the slider's level in the canvas text."""
    from napari_invrec.core.data import heldout_image

    viewer.layers.clear()
    truth = viewer.add_image(heldout_image("moon", 256), name="moon (held out)")
    sim.image.value = truth
    sim.op_panel.operator.value = "blur"
    sim.op_panel.form.set_values({"sigma": 2.0})
    sim.noise_form.set_values({"sigma": 0.01})
    meas = sim.simulate()[0]
    rec.measurement.value = meas
    _run(app, rec, "dirac", {"steps": 20})
    hist = viewer.layers["dirac · blur [iterates]"]
    x0 = viewer.layers["dirac · blur [x0_hat]"]
    _show_grid(app, viewer, [truth, meas, hist, x0], hist, (2, 2), 7)
    for layer in (hist, x0):
        layer.contrast_limits = truth.contrast_limits
    app.processEvents()
    from napari_invrec._widgets._levels import _text_overlay

    text = _text_overlay(viewer)
    print(f"canvas text ({'shown' if text.visible else 'hidden'}): {text.text}")


def _trust_scene(app, viewer, sim, rec, trust_docked, rec_dock, width: int) -> None:
    """Phantom, 50 % inpainting, langevin-tv and tv-fista; trust maps, hotspots of the std
    (Labels overlay on the std layer) and calibrated 90 % bands."""
    from qtpy.QtCore import Qt

    trust_dock, trust = trust_docked
    if trust is None:
        raise SystemExit("the Uncertainty & hallucinations widget could not be created")
    viewer.layers.clear()
    viewer.open_sample("napari-invrec", "phantom")
    truth = viewer.layers[-1]
    sim.image.value = truth
    sim.op_panel.operator.value = "inpaint"
    sim.op_panel.form.set_values({"keep": 0.5})
    sim.noise_form.set_values({"sigma": 0.03})
    rec.measurement.value = sim.simulate()[0]
    _run(app, rec, "langevin-tv", {"lam": 0.01, "sigma": 0.03, "iters": 200, "burn_in": 80,
                                   "n_samples": 8})
    _run(app, rec, "tv-fista", {"lam": 0.01, "iters": 100})
    if rec_dock is not None:  # the trust widget gets the right column to itself
        rec_dock.hide()
        viewer.window._qt_window.resizeDocks([trust_dock], [width], Qt.Horizontal)
    run = "langevin-tv · inpaint"
    trust.refresh()
    trust.run.value = run
    trust.dc_reference.value = "tv-fista · inpaint"
    trust.compute_maps()
    while not trust.maps:
        app.processEvents()
        time.sleep(0.02)
    trust.hot_map.value = f"{run} [std]"
    trust.hot_form.set_values({"sigma": 2.0, "threshold": "quantile", "quantile": 0.97,
                               "min_area": 20})
    hot = trust.hotspots()
    trust.cal_form.set_values({"n_pairs": 16, "batch": 8})
    trust.calibrate()
    _wait(app, trust)
    print(trust.status.value)
    std = viewer.layers[f"{run} [std]"]
    shown = (std, hot)
    for layer in viewer.layers:
        layer.visible = layer in shown
    std.blending = "translucent"
    viewer.layers.selection.active = hot
    viewer.reset_view()
    app.processEvents()
    time.sleep(0.3)
    app.processEvents()


def _diffusion_scene(app, viewer, sim, rec, trust) -> None:
    """Camera image, 4x MRI, a diffpir run (8 samples): the x_t and x0_hat stacks at the same
    step mid-way, the std over samples, and a hotspot overlay of the std, in a 2x2 grid."""

    viewer.layers.clear()
    viewer.open_sample("napari-invrec", "camera")
    truth = viewer.layers[-1]
    sim.image.value = truth
    sim.op_panel.operator.value = "mri"
    sim.op_panel.form.set_values({"acceleration": 4})
    sim.noise_form.set_values({"sigma": 0.01})
    rec.measurement.value = sim.simulate()[0]
    _run(app, rec, "diffpir", {"steps": 30, "n_samples": 8})
    run = "diffpir · mri"
    trust.refresh()
    trust.run.value = run
    trust.hot_map.value = f"{run} [std]"
    trust.hot_form.set_values({"sigma": 2.0, "threshold": "quantile", "quantile": 0.97,
                               "min_area": 20})
    hot = trust.hotspots()
    xt, x0 = viewer.layers[f"{run} [x_t]"], viewer.layers[f"{run} [x0_hat]"]
    std = viewer.layers[f"{run} [std]"]
    steps = xt.metadata["invrec"]["steps"]
    mid = len(steps) // 2
    _show_grid(app, viewer, (truth, xt, x0, std, hot), x0, (2, 2), mid, translucent=std)
    print(f"x_t / x0_hat at index {mid} (step {steps[mid]} of {steps[-1]})")


def _train_scene(app, viewer, train, rec_dock, out: str, at_step: int = 600) -> None:
    """A supervised DRUNet on general data with varied scale and contrast (``+aug``), shot at
    ``at_step`` with the activity dock open; then cancelled (nothing is registered)."""
    if train is None:
        raise SystemExit("the Train widget could not be created")
    if rec_dock is not None:  # the Train widget gets the right column to itself
        rec_dock.hide()
    for k, v in {"source": "general", "augment": True, "arch": "drunet", "net_width": 16,
                 "steps": 2000,
                 "batch": 16, "patch": 48, "lr": "0.002", "sigma_min": 0.01,
                 "sigma_max": 0.2, "weights_name": "screenshot-denoiser"}.items():
        getattr(train, k).value = v
    viewer.window._status_bar._toggle_activity_dock(True)
    train.train_button.clicked.emit(True)
    t0 = time.perf_counter()
    while train.controller.running and (not train.history.get("step")
                                        or train.history["step"][-1] < at_step):
        app.processEvents()
        time.sleep(0.02)
        if time.perf_counter() - t0 > 500:
            break
    train._draw()
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    step = train.history["step"][-1] if train.history.get("step") else 0
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False)
    print(f"saved {path} (training at step {step}: {train.status.value})")
    train.cancel()
    _wait(app, train)
    viewer.close()


if __name__ == "__main__":
    main()
