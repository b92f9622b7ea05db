"""Prior arguments are bounded when declared, and prior-file errors name the file and the key (exit 2)."""

from __future__ import annotations

import pytest

from marrow.errors import UsageError
from marrow.priors import load_prior_set
from marrow.priors.prior import LOCATION_BOUND, SCALE_BOUNDS, SHAPE_BOUNDS, Prior


def write_set(tmp_path, body: str, name: str = "mine.toml"):
    path = tmp_path / name
    path.write_text('base = "weakly-informative"\n' + body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"dist": "Normal", "mu": 1e300, "sigma": 1}, "argument 'mu' of Normal must be between -1000 and 1000"),
        ({"dist": "Normal", "mu": -1e4, "sigma": 1}, "argument 'mu' of Normal must be between -1000 and 1000"),
        ({"dist": "Normal", "mu": 0, "sigma": 1e300}, "argument 'sigma' of Normal must be between 1e-06 and 1000"),
        ({"dist": "Normal", "mu": 0, "sigma": 1e-9}, "argument 'sigma' of Normal must be between 1e-06 and 1000"),
        ({"dist": "Normal", "mu": 0, "sigma": -1}, "argument 'sigma' of Normal must be > 0, got -1"),
        (
            {"dist": "StudentT", "nu": 1e9, "mu": 0, "sigma": 1},
            "argument 'nu' of StudentT must be between 1e-06 and 1e+06",
        ),
        ({"dist": "Gamma", "alpha": 0, "beta": 1}, "argument 'alpha' of Gamma must be > 0"),
        ({"dist": "Normal", "mu": 10**400, "sigma": 1}, "argument 'mu' must be finite"),
        ({"dist": "Normal", "mu": float("nan"), "sigma": 1}, "argument 'mu' must be finite"),
        (
            {"dist": "NormalMixture", "w": [0.5, 0.5], "mu": [0, 2e3], "sigma": [1, 1]},
            "element 2 of argument 'mu' of NormalMixture must be between -1000 and 1000",
        ),
    ],
)
def test_absurd_or_non_finite_arguments_are_refused_when_declared(table, expected):
    with pytest.raises(UsageError) as caught:
        Prior.from_dict("response.intercept", table)
    assert expected in str(caught.value) and "prior 'response.intercept'" in str(caught.value)


def test_the_bounds_themselves_are_allowed():
    low, high = SCALE_BOUNDS
    assert Prior.from_dict("k", {"dist": "Normal", "mu": -LOCATION_BOUND, "sigma": high}).args["mu"] == -1e3
    assert Prior.from_dict("k", {"dist": "Normal", "mu": LOCATION_BOUND, "sigma": low}).args["sigma"] == 1e-6
    assert (
        Prior.from_dict("k", {"dist": "Gamma", "alpha": SHAPE_BOUNDS[1], "beta": SHAPE_BOUNDS[0]}).args["beta"] == 1e-6
    )


@pytest.mark.parametrize(
    ("body", "key", "expected"),
    [
        (
            "[response.intercept]\ndist = 'Normal'\nmu = 1e300\nsigma = 1\n",
            "response.intercept",
            "between -1000 and 1000",
        ),
        ("[response.center_sd]\ndist = 'HalfNormal'\nsigma = 1e300\n", "response.center_sd", "between 1e-06 and 1000"),
        ("[response.beta]\ndist = 'Cauchy'\n", "response.beta", "unknown distribution 'Cauchy'"),
        ("[response.beta]\ndist = 'Normal'\nmu = 0\n", "response.beta", "Normal needs argument(s) sigma"),
        ("[response.center_sd]\ndist = 'Normal'\nmu = 0\nsigma = 1\n", "response.center_sd", "must be positive"),
    ],
)
def test_prior_file_errors_name_the_file_and_the_key(tmp_path, marrow_cli, body, key, expected):
    path = write_set(tmp_path, body)
    with pytest.raises(UsageError) as caught:
        load_prior_set(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: prior '{key}'") and expected in message
    code, _, err = marrow_cli("priors", "show", path)
    assert code == 2 and str(path) in err and key in err and "internal error" not in err


def test_a_bad_base_file_is_named_with_its_key(tmp_path):
    base = write_set(tmp_path, "[survival.beta]\ndist = 'Normal'\nmu = 0\nsigma = 1e9\n", name="base.toml")
    child = tmp_path / "child.toml"
    child.write_text(f'base = "{base.name}"\n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"child\.toml: base 'base\.toml': .*base\.toml: prior 'survival\.beta'"):
        load_prior_set(child)


def test_a_prior_file_that_is_not_utf8_is_exit_2_naming_the_file(tmp_path, marrow_cli):
    path = tmp_path / "latin1.toml"
    path.write_bytes('base = "weakly-informative"\ndescription = "a priori, Müller"\n'.encode("latin-1"))
    code, _, err = marrow_cli("priors", "show", path)
    assert code == 2, err
    assert f"prior file {path} is not UTF-8" in err and "save it again as UTF-8" in err


@pytest.mark.parametrize("text", ["[response.intercept\ndist = 'Normal'\n", "mu = = 1\n"])
def test_invalid_toml_is_exit_2_naming_the_file(tmp_path, marrow_cli, text):
    path = tmp_path / "broken.toml"
    path.write_text(text, encoding="utf-8")
    code, _, err = marrow_cli("fit", "response", "--prior", path, "--out", tmp_path / "o.nc")
    assert code == 2 and f"prior file {path} is not valid TOML" in err, err
    assert not (tmp_path / "o.nc").exists()


def test_a_prior_file_that_is_a_folder_is_exit_2(tmp_path, marrow_cli):
    folder = tmp_path / "sets.toml"
    folder.mkdir()
    code, _, err = marrow_cli("priors", "show", folder)
    assert code == 2 and f"cannot read prior file {folder}" in err, err
