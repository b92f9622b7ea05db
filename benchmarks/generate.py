"""Generate a SYNTHETIC multicenter trial of any size in marrow's data contract (for benchmarks).

Writes two CSV files to a folder:

* ``patients.csv``: patient_id, center, response (CR/PR/NR), followup_days, died, adverse_event,
  the binary covariates (prior_atg, active_infection, then x3, x4, ...) and age;
* ``recovery.csv`` (long): patient_id, lineage, day, recovered -- one row per patient and lineage.

The generating process resembles the bundled trial: response from a hierarchical logistic model
(center sd 0.5 on the log-odds scale), CR a quarter of responders; only responders recover a
lineage (CR always, PR with probability 0.85), after a Weibull time with lineage-specific median
and shape scaled by the covariates; everything else is right-censored at follow-up (death or last
contact). Seeded: the same arguments give the same files byte for byte.

    python benchmarks/generate.py --patients 20000 --centers 200 --out /tmp/trial-20k
    python benchmarks/generate.py --size large --out /tmp/trial-20k     # the same, by preset name
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

# name -> (patients, centers); "bundled" is marrow's own synthetic trial (74 patients, 7 centers).
SIZES = {"small": (74, 7), "medium": (2_000, 40), "large": (20_000, 200)}

COVARIATE_NAMES = ("prior_atg", "active_infection")
COVARIATE_PREVALENCE = (0.5, 0.25)
RESPONSE_EFFECTS = (0.8, -1.0)  # log-odds ratios of the first covariates; later ones 0.3, -0.3, ...
TIME_EFFECTS = (-0.15, 0.2)  # log time ratios of the first covariates; later ones 0.1, -0.1, ...
LINEAGE_NAMES = ("leukocytic", "erythrocytic", "megakaryocytic")
LINEAGE_MEDIANS = (19.0, 17.0, 31.0)  # days, as in the bundled trial
LINEAGE_SHAPES = (3.0, 3.5, 2.5)
INTERCEPT = -0.9  # about 29% responders, as in the bundled trial
CENTER_SD = 0.5
CR_SHARE = 0.25
PR_RECOVERS = 0.85


def covariate_names(n: int) -> list[str]:
    return [COVARIATE_NAMES[j] if j < len(COVARIATE_NAMES) else f"x{j + 1}" for j in range(n)]


def lineage_names(n: int) -> list[str]:
    return [LINEAGE_NAMES[j] if j < len(LINEAGE_NAMES) else f"lineage{j + 1}" for j in range(n)]


def _per_covariate(defaults: tuple[float, ...], later: float, n: int) -> np.ndarray:
    return np.array([defaults[j] if j < len(defaults) else later * (-1) ** j for j in range(n)])


def center_sizes(n_patients: int, n_centers: int, rng: np.random.Generator) -> np.ndarray:
    """Unequal center sizes summing to n_patients, every center with at least one patient."""
    if n_centers < 1 or n_patients < n_centers:
        raise ValueError(f"need at least one patient per center (patients={n_patients}, centers={n_centers})")
    weights = rng.gamma(4.0, size=n_centers)
    extra = rng.multinomial(n_patients - n_centers, weights / weights.sum())
    return extra + 1


def generate(
    n_patients: int = 2_000,
    n_centers: int = 40,
    n_lineages: int = 3,
    n_covariates: int = 2,
    seed: int = 7,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(patients, recovery) tables in marrow's data contract."""
    if n_lineages < 1 or n_covariates < 0:
        raise ValueError("need at least one lineage and a non-negative number of covariates")
    rng = np.random.default_rng(seed)
    sizes = center_sizes(n_patients, n_centers, rng)
    width = max(3, len(str(n_centers)))
    centers = np.repeat([f"Center {c + 1:0{width}d}" for c in range(n_centers)], sizes)
    center_index = np.repeat(np.arange(n_centers), sizes)
    order = rng.permutation(n_patients)  # random enrolment order across centers
    centers, center_index = centers[order], center_index[order]

    names = covariate_names(n_covariates)
    prevalence = _per_covariate(COVARIATE_PREVALENCE, 0.4, n_covariates)
    prevalence = np.abs(prevalence)
    x = (rng.random((n_patients, n_covariates)) < prevalence).astype(np.int64)

    center_effect = rng.normal(0.0, CENTER_SD, n_centers)
    eta = INTERCEPT + center_effect[center_index] + x @ _per_covariate(RESPONSE_EFFECTS, 0.3, n_covariates)
    responder = rng.random(n_patients) < 1.0 / (1.0 + np.exp(-eta))
    complete = responder & (rng.random(n_patients) < CR_SHARE)
    response = np.where(complete, "CR", np.where(responder, "PR", "NR"))

    died = (rng.random(n_patients) < np.where(responder, 0.03, 0.15)).astype(np.int64)
    followup = np.where(
        died == 1,
        rng.integers(np.where(responder, 120, 30), 365),  # responders die after their recovery window
        rng.integers(366, 1096, size=n_patients),
    )
    adverse = (rng.random(n_patients) < 0.1).astype(np.int64)
    age = np.floor(rng.triangular(14, 25, 65, size=n_patients)).astype(np.int64)

    width_p = max(3, len(str(n_patients)))
    ids = np.array([f"P{i + 1:0{width_p}d}" for i in range(n_patients)])
    patients = pd.DataFrame(
        {
            "patient_id": ids,
            "center": centers,
            "response": response,
            "followup_days": followup,
            "died": died,
            "adverse_event": adverse,
        }
    )
    for j, name in enumerate(names):
        patients[name] = x[:, j]
    patients["age"] = age

    lineages = lineage_names(n_lineages)
    medians = _per_covariate(LINEAGE_MEDIANS, 25.0, n_lineages)
    medians = np.abs(medians)
    shapes = np.abs(_per_covariate(LINEAGE_SHAPES, 3.0, n_lineages))
    time_ratio = np.exp(x @ _per_covariate(TIME_EFFECTS, 0.1, n_covariates))
    frames = []
    for name, median, shape in zip(lineages, medians, shapes, strict=True):
        recovers = complete | (responder & (rng.random(n_patients) < PR_RECOVERS))
        # Weibull with the given median: scale = median / log(2)^(1/shape).
        scale = median * time_ratio / np.log(2.0) ** (1.0 / shape)
        t = np.ceil(scale * rng.weibull(shape, n_patients)).astype(np.int64)
        t = np.clip(t, 1, None)
        recovered = recovers & (t <= followup)
        frames.append(
            pd.DataFrame(
                {
                    "patient_id": ids,
                    "lineage": name,
                    "day": np.where(recovered, t, followup),
                    "recovered": recovered.astype(np.int64),
                }
            )
        )
    recovery = pd.concat(frames, ignore_index=True)
    # one block per patient, lineages in order, like the bundled file
    recovery["_lineage"] = recovery["lineage"].map({n: i for i, n in enumerate(lineages)})
    recovery = recovery.sort_values(["patient_id", "_lineage"], ignore_index=True).drop(columns="_lineage")
    return patients, recovery


def write(out: Path | str, **kwargs) -> tuple[Path, Path]:
    """Generate and write patients.csv and recovery.csv to `out` (created if needed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    patients, recovery = generate(**kwargs)
    patients_path, recovery_path = out / "patients.csv", out / "recovery.csv"
    patients.to_csv(patients_path, index=False)
    recovery.to_csv(recovery_path, index=False)
    return patients_path, recovery_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), help="preset: small 74/7, medium 2000/40, large 20000/200")
    parser.add_argument("--patients", type=int, default=None, help="number of patients (default 2000)")
    parser.add_argument("--centers", type=int, default=None, help="number of centers (default 40)")
    parser.add_argument("--lineages", type=int, default=3, help="number of lineages in recovery.csv (default 3)")
    parser.add_argument("--covariates", type=int, default=2, help="number of binary covariates (default 2)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True, help="folder for patients.csv and recovery.csv")
    args = parser.parse_args(argv)
    patients, centers = SIZES[args.size] if args.size else (2_000, 40)
    patients = args.patients if args.patients is not None else patients
    centers = args.centers if args.centers is not None else centers
    p, r = write(
        args.out,
        n_patients=patients,
        n_centers=centers,
        n_lineages=args.lineages,
        n_covariates=args.covariates,
        seed=args.seed,
    )
    print(f"wrote {p} ({patients} patients, {centers} centers) and {r} ({patients * args.lineages} rows)")


if __name__ == "__main__":
    main()
