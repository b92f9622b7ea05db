"""The model registry: every registered model conforms (builds on the bundled trial with the data's labels as
dims, finite log density and gradient at the initial point, its options in `fit MODEL --help` and accepted
by the plan), and a model added through the registry alone (tests/toy_model.py) appears in `marrow fit`,
the plan validator and the report."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from marrow.commands.fit import fit as fit_group
from marrow.descriptor import REGISTRY, ModelDescriptor, Option
from marrow.errors import UsageError
from marrow.report.plan import BUNDLED_COVARIATES, load_plan
from marrow.spec import ModelSpec, SpecError

STEPS = [(d.name, step) for d in REGISTRY for step in d.step_names]


def _spec(descriptor: ModelDescriptor, step: str) -> ModelSpec:
    covariates = BUNDLED_COVARIATES if descriptor.plan_covariates else ()
    return ModelSpec(model=descriptor.name, covariates=covariates, **descriptor.step_options(step))


def _other_value(option: Option):
    """An allowed value of `option` that is not its default."""
    if isinstance(option.default, bool):
        return not option.default
    if option.choices:
        return next(c for c in option.choices if c != option.default)
    if isinstance(option.default, int):
        return option.default + 1
    return round(option.default + 0.05, 2)


def _toml(value) -> str:
    return (
        str(value).lower() if isinstance(value, bool) else repr(value) if not isinstance(value, str) else f'"{value}"'
    )


def _plan(tmp_path, text: str):
    path = tmp_path / "plan.toml"
    path.write_text(text, encoding="utf-8")
    return load_plan(path)


def _help(*args: str) -> str:
    result = CliRunner().invoke(fit_group, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # click wraps lines


# --- conformance of every registered model ------------------------------------------------------------


@pytest.mark.parametrize(("model", "step"), STEPS)
def test_every_model_builds_with_the_data_labels_and_finite_logp_and_gradient(model, step):
    from marrow.data import load_trial
    from marrow.models import build_model
    from marrow.priors import load_prior_set

    spec = _spec(REGISTRY.get(model), step)
    data = load_trial(None, None, spec.needs())
    built = build_model(data, spec, load_prior_set("weakly-informative"))
    labels = data.coords()
    shared = [dim for dim in built.coords if dim in labels]
    assert shared  # every model has a dim the data label (center, lineage, covariate or patient)
    for dim in shared:
        assert list(built.coords[dim]) == labels[dim], dim
    for name, var_dims in built.named_vars_to_dims.items():
        assert set(var_dims) <= set(built.coords), f"{name} has dims {var_dims} without coords"
    point = built.initial_point()
    logp = built.compile_logp(mode="FAST_COMPILE")(point)
    gradient = built.compile_dlogp(mode="FAST_COMPILE")(point)
    assert np.isfinite(logp)
    assert gradient.size > 0 and np.all(np.isfinite(gradient))


@pytest.mark.parametrize("model", REGISTRY.names())
def test_every_option_is_in_fit_help_and_accepted_by_the_plan(model, tmp_path):
    descriptor = REGISTRY.get(model)
    text = _help(model)
    assert descriptor.summary in text
    for option in descriptor.options:
        assert option.flag.split("/")[0] in text, option.name
        for choice in option.choices:
            assert choice in text
    if descriptor.times:
        assert "--time-unit" in text and f"--{descriptor.times.key} " in text
    step = descriptor.step_names[0]
    for option in descriptor.options:
        if not option.plan:
            continue
        value = _other_value(option)
        if option.name == "threshold" and descriptor.threshold_key:
            body = f'[thresholds]\n{descriptor.threshold_key} = {_toml(value)}\n[models]\nrun = ["{step}"]\n'
        else:
            body = f'[models]\nrun = ["{step}"]\n[models.{step}]\n{option.name} = {_toml(value)}\n'
        (planned,) = _plan(tmp_path, body).steps
        assert getattr(planned.spec, option.name) == value, option.name
    if descriptor.times:
        body = f'[models]\nrun = ["{step}"]\n[models.{step}]\n{descriptor.times.key} = [2.5, 7]\n'
        assert _plan(tmp_path, body).steps[0].spec.horizons == (2.5, 7.0)


def test_an_option_of_another_model_is_refused_by_spec_and_plan(tmp_path):
    with pytest.raises(SpecError, match="recovery model only") as caught:
        ModelSpec("survival", frailty=True)
    assert caught.value.field == "frailty"
    with pytest.raises(UsageError, match=r"\[models.survival\].*unknown key\(s\) cure"):
        _plan(tmp_path, '[models]\nrun = ["survival"]\n[models.survival]\ncure = false\n')


# --- a model added through the registry alone ----------------------------------------------------------


@pytest.fixture
def toy():
    import toy_model  # tests/toy_model.py

    REGISTRY.register(toy_model.DESCRIPTOR)
    try:
        yield toy_model.DESCRIPTOR
    finally:
        REGISTRY.unregister("toy")


def test_a_toy_model_is_offered_by_fit_and_validated_by_spec_and_plan(toy, tmp_path):
    listing = _help()
    assert "toy" in listing and "Toy model" in listing
    text = _help("toy")
    assert "--family [uniform|jeffreys]" in text and "marrow fit toy --out toy.nc" in text
    assert ModelSpec("toy").resolved_family == "uniform" and ModelSpec("toy").label == "toy (uniform)"
    with pytest.raises(SpecError, match="unknown family 'weibull' for the toy model"):
        ModelSpec("toy", family="weibull")
    with pytest.raises(SpecError, match="cure is an option of the recovery model only, not of toy"):
        ModelSpec("toy", cure=False)

    plan = _plan(tmp_path, '[models]\nrun = ["toy"]\n[models.toy]\nfamily = "jeffreys"\n[thresholds]\ntoy_rate = 0.4\n')
    (step,) = plan.steps
    assert (step.name, step.spec.model, step.spec.family, step.spec.threshold) == ("toy", "toy", "jeffreys", 0.4)
    assert step.spec.covariates == BUNDLED_COVARIATES  # plan_covariates: the plan's [data] covariates
    with pytest.raises(UsageError, match=r"\[models.toy\] family: unknown family 'beta'"):
        _plan(tmp_path, '[models]\nrun = ["toy"]\n[models.toy]\nfamily = "beta"\n')
    default = load_plan(None)
    assert "toy" in [s.name for s in default.steps]  # every registered model runs by default


def test_a_toy_model_leaves_the_registry_when_unregistered():
    assert "toy" not in REGISTRY
    with pytest.raises(SpecError, match="unknown model 'toy'"):
        ModelSpec("toy")


@pytest.mark.sampling
def test_a_toy_model_has_its_section_and_headline_in_the_report(toy, tmp_path):
    from marrow.report.content import sections
    from marrow.report.run import run_report

    assert list(sections())[-1] == "toy" and sections()["toy"] == "Toy endpoint"
    plan = _plan(
        tmp_path,
        '[models]\nrun = ["toy"]\n[sampler]\nchains = 2\ndraws = 200\ntune = 200\nsampler = "pymc"\n'
        "[report]\nfigures = false\n",
    )
    outcome = run_report(plan, tmp_path / "report")
    (step,) = outcome.steps
    assert step.status == "ok", step.note
    headline = outcome.headline
    assert list(headline["endpoint"]) == ["Toy response rate"]
    responders = plan_data_rate()
    median = float(headline["posterior median"].iloc[0].rstrip("%")) / 100
    assert abs(median - responders) < 0.1  # a pooled rate with a flat prior sits at the observed rate
    assert "P(toy rate > 0.3)" in headline["posterior probability"].iloc[0]
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "## Toy endpoint" in markdown and "### toy (uniform)" in markdown
    assert "Toy response rate" in (tmp_path / "report" / "report.html").read_text(encoding="utf-8")


def plan_data_rate() -> float:
    from marrow.data import load_trial

    patients = load_trial(None, None, ModelSpec("response").needs()).patients
    return float(patients["responder"].mean())


@pytest.mark.parametrize("args", [(), ("fit",), ("fit", "recovery")])
def test_help_built_from_the_registry_imports_no_numeric_stack(args):
    import subprocess
    import sys

    code = (
        "import sys; from marrow.cli import main\n"
        f"try:\n    main([*{list(args)!r}, '--help'])\nexcept SystemExit: pass\n"
        "print(sorted(m for m in ('numpy', 'pandas', 'pymc', 'arviz', 'scipy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stderr
