"""Shared test fixtures."""

import pytest


# --------------------------------------------------------------------- GUI fixtures (widgets)
@pytest.fixture
def notes():
    """Messages of the napari notifications shown since the test started (a callable)."""
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)
    return lambda: [str(n.message) for n in notification_manager.records[start:]]


@pytest.fixture
def wait_idle(qtbot):
    """``wait_idle(widget, timeout_ms)``: wait until the widget's run controller is idle."""

    def wait(widget, timeout: int = 30000) -> None:
        qtbot.waitUntil(lambda: not widget.controller.running, timeout=timeout)

    return wait


# --------------------------------------------------------------------- user weights
@pytest.fixture(autouse=True, scope="session")
def _user_weights_in_tmp(tmp_path_factory):
    """Weights trained by tests go to a temporary user folder, never ~/.napari-invrec."""
    import os

    old = os.environ.get("NAPARI_INVREC_WEIGHTS")
    os.environ["NAPARI_INVREC_WEIGHTS"] = str(tmp_path_factory.mktemp("user_weights"))
    yield
    if old is None:
        os.environ.pop("NAPARI_INVREC_WEIGHTS", None)
    else:
        os.environ["NAPARI_INVREC_WEIGHTS"] = old


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny networks train ~30x faster than with two threads
    fighting for two cores (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
