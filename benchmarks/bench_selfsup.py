"""Learning from measurements only: networks trained by SSDU or equivariant imaging against
the same networks trained with ground truth.

For each row the two networks share architecture, data, seed and training budget; one was
trained on (measurement, truth) pairs, the other on the measurements alone
(``--supervision ssdu``: splitting their samples; ``--supervision ei``: consistency and
equivariance to rotations and shifts). Held-out images never trained or tuned on (moon, cell,
brick, the Shepp-Logan phantom) at 128 px, noise 0.01, each measured :data:`DRAWS` times (a new
sampling pattern or mask and new noise per draw), one torch thread, with ``tv-fista`` at its
defaults as a classical reference, all in the same run. The table prints each network's mean
PSNR and the self-supervised - supervised difference with its standard error over the
image x draw pairs (target: within 1 dB).

``benchmarks/run.py selfsup`` (about 30 s here); ``--quick``: 64 px, two images, one
draw.
"""

from __future__ import annotations

import statistics
import sys

import napari_invrec as ir
from napari_invrec.core.data.heldout import heldout_image

IMAGES = ("moon", "cell", "brick", "shepp-logan")
SIGMA = 0.01
#: measurements per image (pattern / mask seed and noise seed): one draw left a standard error
#: of 0.5 dB on the difference, three 0.26
DRAWS = 3
#: label -> (operator, operator params, method, self-supervised weights, supervised weights)
TASKS = {"4x MRI, SSDU": ("mri", {"acceleration": 4}, "varnet", "varnet-ssdu-mri4x",
                          "varnet-mri4x"),
         "inpaint 50 %, EI": ("inpaint", {"keep": 0.5}, "unrolled-pgd",
                              "unrolled-pgd-ei-inpaint50", "unrolled-pgd-inpaint50-natural")}


def _psnr(y, op, x, method: str, params: dict) -> float:
    res = ir.reconstruct(y, op, method, reference=x, threads=1, **params)
    return float(res.metrics["psnr"])


def main(flags: list[str] | None = None) -> None:
    flags = flags or []
    n, names, draws = (64, IMAGES[:2], 1) if "--quick" in flags else (128, IMAGES, DRAWS)
    images = [heldout_image(name, n) for name in names]
    print(f"\n## learning from measurements only vs supervised ({n} px, held-out "
          f"{', '.join(names)}, {draws} draw(s) each, noise {SIGMA}, one thread)")
    print(f"  {'task':20s}{'self-sup.':>10s}{'supervised':>12s}{'tv-fista':>10s}"
          f"{'self-sup. - supervised dB':>28s}")
    for label, (opname, opkw, method, ssdu, sup) in TASKS.items():
        rows = []
        for (i, x), d in ((ix, d) for ix in enumerate(images) for d in range(draws)):
            op = ir.make_operator(opname, x.shape, seed=d, **opkw)
            y = ir.simulate(x, op, sigma=SIGMA, seed=200 + i + 10 * d)
            rows.append((_psnr(y, op, x, method, {"weights": ssdu}),
                         _psnr(y, op, x, method, {"weights": sup}),
                         _psnr(y, op, x, "tv-fista", {})))
        diff = [a - b for a, b, _ in rows]
        se = statistics.stdev(diff) / len(diff) ** 0.5 if len(diff) > 1 else float("nan")
        means = [statistics.fmean(r[k] for r in rows) for k in range(3)]
        print(f"  {label:20s}{means[0]:10.2f}{means[1]:12.2f}{means[2]:10.2f}"
              f"{statistics.fmean(diff):+20.2f} +- {se:4.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
