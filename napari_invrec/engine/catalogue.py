"""Tables generated from the registries (README, ``napari-invrec list --table``)."""

from __future__ import annotations

import re

README_MARKERS = {
    "compat": ("<!-- compat-table:start -->", "<!-- compat-table:end -->"),
    "bench": ("<!-- bench-table:start -->", "<!-- bench-table:end -->"),
    "learned": ("<!-- learned-table:start -->", "<!-- learned-table:end -->"),
    "diffusion": ("<!-- diffusion-table:start -->", "<!-- diffusion-table:end -->"),
    "weights": ("<!-- weights-table:start -->", "<!-- weights-table:end -->"),
}


def _md(text: str) -> str:
    """A docstring's first line as markdown (reST ``:math:`x``` becomes ``x`` in code)."""
    return re.sub(r":math:`([^`]*)`", r"`\1`", text)


def operator_table() -> str:
    """Markdown table of the operator families: name, description, linearity, complex data."""
    from ..core.operators import OPERATORS

    rows = ["| operator | what it models | linear | complex image / data |",
            "| --- | --- | :-: | :-: |"]
    yes = {True: "yes", False: "no"}
    for name, spec in sorted(OPERATORS.items()):
        cplx = f"{yes[spec.complex_image]} / {yes[spec.complex_measurement]}"
        rows.append(f"| `{name}` | {_md(spec.description)} | {yes[spec.linear]} | "
                    f"{cplx} |")
    return "\n".join(rows)


def method_table() -> str:
    """Markdown table of the methods: name and description."""
    from ..core.methods import METHODS

    rows = ["| method | what it does |", "| --- | --- |"]
    for name, spec in sorted(METHODS.items()):
        rows.append(f"| `{name}` | {_md(spec.description)} |")
    return "\n".join(rows)


def catalogue_markdown() -> str:
    """Operators, methods and the compatibility matrix, as the README shows them."""
    return "\n\n".join([operator_table(), method_table(),
                         "Which method runs with which operator:", compatibility_table()])


def weights_table() -> str:
    """Markdown table of the shipped networks: what they are for, their validation figures,
    size, and the command that trained them (from the shipped manifest)."""
    from pathlib import Path

    from ..core.models.registry import WEIGHTS_DIR, read_manifest, trained_operator

    rows = ["| weights | network | task | trained for | data | validation | size | command |",
            "| --- | --- | --- | --- | --- | --- | --: | --- |"]
    for name, e in sorted(read_manifest(WEIGHTS_DIR / "manifest.json").items()):
        op = trained_operator(e)
        params = (e.operator or {}).get("params", {})
        cfg = ", ".join(f"{k}={v}" for k, v in params.items()
                        if v is not None and k in ("sigma", "keep", "acceleration"))
        target = f"`{op}` {cfg}".strip() if op else "any (denoiser)"
        m = e.metrics or {}
        base = m.get("val_noisy_psnr", m.get("noisy_psnr", m.get("init_psnr",
                                                                   m.get("adjoint_psnr"))))
        val = (f"{m['val_psnr']:.2f} dB" + (f" (input {base:.2f})" if base else "")
               if m.get("val_psnr") else "")
        size = f"{Path(e.file).stat().st_size / 1e6:.1f} MB" if Path(e.file).is_file() else "?"
        rows.append(f"| `{name}` | {e.architecture} | {e.task} | {target} | {e.data} | {val} | "
                    f"{size} | `{e.train_command}` |")
    return "\n".join(rows)


def compatibility_table() -> str:
    """Markdown table: one row per method, one column per operator family, ✓ where supported."""
    from ..core.methods import METHODS
    from ..core.operators import OPERATORS

    ops = sorted(OPERATORS)
    head = "| method | " + " | ".join(f"`{o}`" for o in ops) + " |"
    rule = "| --- |" + " :-: |" * len(ops)
    rows = []
    for name in sorted(METHODS):
        spec = METHODS[name]
        marks = " | ".join("✓" if spec.supports(o) else "" for o in ops)
        tag = " (stochastic)" if spec.stochastic else ""
        rows.append(f"| `{name}`{tag} | {marks} |")
    return "\n".join([head, rule, *rows])


def replace_block(text: str, key: str, block: str) -> str:
    """Replace the README block between the markers of ``key`` with ``block``."""
    start, end = README_MARKERS[key]
    i, j = text.index(start) + len(start), text.index(end)
    return text[:i] + "\n" + block.strip("\n") + "\n" + text[j:]


def read_block(text: str, key: str) -> str:
    """The current README block of ``key`` (stripped)."""
    start, end = README_MARKERS[key]
    return text[text.index(start) + len(start):text.index(end)].strip("\n")
