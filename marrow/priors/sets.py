"""Named prior sets read from TOML, with `base = "..."` inheritance and validation naming the key."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marrow.errors import UsageError
from marrow.priors.catalog import parameters
from marrow.priors.prior import Prior

SETS_DIR = Path(__file__).parent / "sets"
DEFAULT_SET = "weakly-informative"
_META_KEYS = {"name", "description", "base"}


@dataclass(frozen=True)
class PriorSet:
    """A complete mapping from parameter key (e.g. 'response.intercept') to `Prior`."""

    name: str
    description: str
    priors: dict[str, Prior]
    source: str

    def __getitem__(self, key: str) -> Prior:
        return self.priors[key]

    def for_model(self, model: str) -> dict[str, Prior]:
        """The priors of one model, keyed by parameter name without the model prefix."""
        prefix = model + "."
        return {k[len(prefix) :]: v for k, v in self.priors.items() if k.startswith(prefix)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "priors": {k: v.to_dict() for k, v in self.priors.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> PriorSet:
        """Inverse of `to_dict` (used when reading a fit's attrs)."""
        priors = {k: Prior.from_dict(k, v) for k, v in payload["priors"].items()}
        return cls(payload["name"], payload.get("description", ""), priors, payload.get("source", ""))


def available_sets() -> list[str]:
    """Names of the prior sets shipped with marrow."""
    return sorted(p.stem for p in SETS_DIR.glob("*.toml"))


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Nested TOML tables -> {'model.param': {dist=..., ...}}; a leaf is a table with 'dist'."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in table.items():
        if not prefix and key in _META_KEYS:
            continue
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and "dist" not in value:
            out.update(_flatten(value, full))
        else:
            out[full] = value
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"prior file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"prior file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"prior file {path} is not UTF-8 text (byte {exc.start + 1} cannot be read); "
            "TOML must be UTF-8: save it again as UTF-8 in your editor"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read prior file {path}: {exc.strerror or exc}") from None


def _check_support(key: str, prior: Prior) -> None:
    support = parameters()[key][0]
    if prior.support == support:
        return
    if support == "real":
        return  # a positive or unit prior on a real parameter is odd but valid
    raise UsageError(
        f"prior '{key}': {prior.dist} has {prior.support} support but '{key}' must be {support}"
        + (
            " (use HalfNormal, HalfStudentT, Exponential, LogNormal or Gamma)"
            if support == "positive"
            else " (use Beta)"
        )
    )


def _unknown_message(source: str, unknown: list[str]) -> str:
    """Name each unknown key; a key inside a known parameter means its table lacks 'dist'."""
    lines = []
    for key in unknown:
        owner = next((p for p in parameters() if key.startswith(p + ".")), None)
        if owner is not None:
            lines.append(
                f"prior '{owner}': needs a table with 'dist' and its arguments (found only {key[len(owner) + 1 :]!r})"
            )
        else:
            lines.append(f"unknown prior parameter '{key}'")
    known = ", ".join(parameters())
    return f"{source}: " + "; ".join(lines) + f". Known parameters: {known}"


def _resolve_base(base_name: Any, source: str) -> str:
    """A shipped name as is; a relative .toml path relative to the folder of the file that names it."""
    if not isinstance(base_name, str) or not base_name.strip():
        raise UsageError(f"{source}: 'base' must be the name of a prior set or a .toml file, got {base_name!r}")
    if (SETS_DIR / f"{base_name}.toml").exists():
        return base_name
    path = Path(base_name)
    if not path.is_absolute() and Path(source).suffix == ".toml":
        candidate = Path(source).parent / path
        if candidate.exists():
            return str(candidate)
    return base_name


def parse_prior_set(table: dict[str, Any], source: str, seen: tuple[str, ...] = ()) -> PriorSet:
    """Validate a parsed TOML table into a complete `PriorSet`, resolving `base` inheritance.

    `seen` holds the sources already being resolved, to catch inheritance cycles.
    """
    name = table.get("name", Path(source).stem)
    if not isinstance(name, str) or not isinstance(table.get("description", ""), str):
        raise UsageError(f"{source}: 'name' and 'description' must be text")
    base_name = table.get("base")
    entries = _flatten(table)
    unknown = sorted(k for k in entries if k not in parameters())
    if unknown:
        raise UsageError(_unknown_message(source, unknown))
    try:
        priors = {key: Prior.from_dict(key, value) for key, value in entries.items()}
    except UsageError as exc:  # each message names the key; say which file it is in
        raise UsageError(f"{source}: {exc}") from None
    if base_name is not None:
        resolved = _resolve_base(base_name, source)
        identity = _identity(resolved)
        if identity in seen or identity == _identity(source):
            chain = " -> ".join(seen + (_identity(source), identity))
            raise UsageError(f"{source}: prior sets inherit in a cycle ({chain})")
        try:
            base = load_prior_set(resolved, seen + (_identity(source),))
        except UsageError as exc:
            raise UsageError(f"{source}: base '{base_name}': {exc}") from None
        priors = {**base.priors, **priors}
    missing = [k for k in parameters() if k not in priors]
    if missing:
        raise UsageError(f'{source}: no prior given for {", ".join(missing)}; add them or set base = "{DEFAULT_SET}"')
    for key, prior in priors.items():
        try:
            _check_support(key, prior)
        except UsageError as exc:
            raise UsageError(f"{source}: {exc}") from None
    ordered = {k: priors[k] for k in parameters()}
    return PriorSet(str(name), str(table.get("description", "")), ordered, source)


def _identity(source: str) -> str:
    """What makes two references to a prior set the same set: the shipped name or the resolved file."""
    if (SETS_DIR / f"{source}.toml").exists():
        return source
    try:
        return str(Path(source).resolve())
    except OSError:
        return source


def load_prior_set(name_or_file: str | Path | None = None, seen: tuple[str, ...] = ()) -> PriorSet:
    """A shipped set by name, or a user TOML file (which may inherit with `base`)."""
    name_or_file = str(name_or_file or DEFAULT_SET)
    shipped = SETS_DIR / f"{name_or_file}.toml"
    if shipped.exists():
        return parse_prior_set(_read_toml(shipped), name_or_file, seen)
    path = Path(name_or_file)
    if path.suffix == ".toml" or path.exists():
        return parse_prior_set(_read_toml(path), str(path), seen)
    raise UsageError(
        f"unknown prior set '{name_or_file}'; shipped sets: {', '.join(available_sets())}, or give a .toml file"
    )


def base_of(name: str) -> str:
    """The set a shipped set inherits from (`base`), or '' when it inherits from none."""
    return str(_read_toml(SETS_DIR / f"{name}.toml").get("base", ""))


def prior_origins(name_or_file: str | Path | None = None) -> dict[str, str]:
    """Which set in the inheritance chain gives each parameter its prior (call after loading succeeded)."""
    name_or_file = str(name_or_file or DEFAULT_SET)
    shipped = SETS_DIR / f"{name_or_file}.toml"
    source = name_or_file
    table = _read_toml(shipped if shipped.exists() else Path(name_or_file))
    out: dict[str, str] = {}
    if table.get("base") is not None:
        out = prior_origins(_resolve_base(table["base"], source))
    name = str(table.get("name", Path(source).stem))
    out.update({key: name for key in _flatten(table)})
    return out


def describe_set(name_or_file: str | Path | None = None) -> list[dict[str, str]]:
    """brms default_prior()-like rows: parameter, distribution, meaning (catalog), reason, set it comes from."""
    priors = load_prior_set(name_or_file)
    origins = prior_origins(name_or_file)
    return [
        {
            "parameter": key,
            "prior": prior.describe(),
            "meaning": parameters()[key][1],
            "reason": prior.reason,
            "from": origins.get(key, priors.name),
        }
        for key, prior in priors.priors.items()
    ]
