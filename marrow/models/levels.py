"""Which hierarchy levels of a model the data can estimate, and the record of those left out.

A between-group sd (center sd, lineage sd) is informed only by differences between groups: with a
single center (or lineage) the data say nothing about it and its posterior is its prior. Every
model asks `dropped_levels` which of its levels to leave out, builds without them, and puts the
answer in `ModelInputs.dropped`; `marrow.fits.run.fit_model` writes it to the fit's provenance
(attr `dropped_levels`, JSON) and `notes(provenance)` turns it into the sentences the CLI prints on
stderr and the report shows.

Usage in a model module (the recovery model does the same for `dims.LINEAGE` and `dims.CENTER`):

    from marrow.models.levels import dropped_levels
    dropped = dropped_levels({dims.CENTER: list(data.centers)}, {dims.CENTER: ("center_sd", "new_center_rate")})
    if levels.kept(dims.CENTER, dropped): ...      # build the center effects
    return ModelInputs(arrays, coords, extra, dropped=dropped)

A model may instead (or also) state its left-out levels as sentences with a module function
`dropped_levels(n_centers, n_lineages, spec) -> list[str]`; `fit_model` records those in the same attr.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

MIN_GROUPS = 2  # a between-group sd needs at least two groups
ATTR = "dropped_levels"  # provenance key (flat string attr, JSON list of DroppedLevel dicts)


@dataclass(frozen=True)
class DroppedLevel:
    """A hierarchy level left out of a model: its dim, its single label and the variables it removes."""

    level: str  # a dims name, e.g. "center" or "lineage"
    label: str  # the one group the data have, e.g. "C1"
    variables: tuple[str, ...]  # what the fit therefore does not contain, e.g. ("center_sd",)

    def note(self) -> str:
        """One sentence for stderr and the report."""
        left_out = ", ".join(self.variables) if self.variables else "its effects"
        return (
            f"the data have a single {self.level} ({self.label}): the {self.level} level is left out of the "
            f"model ({left_out} not estimated; a between-{self.level} sd would be only its prior)"
        )


def estimable(labels: Sequence[str]) -> bool:
    """A level with these group labels has an estimable between-group sd (at least MIN_GROUPS groups)."""
    return len(labels) >= MIN_GROUPS


def dropped_levels(
    labels: Mapping[str, Sequence[str]], variables: Mapping[str, tuple[str, ...]]
) -> tuple[DroppedLevel, ...]:
    """The levels among `labels` (dim -> group labels in the data) that cannot be estimated.

    `variables` names, per dim, the fit's variables that the level would have produced (for the
    record and the note). Levels with no groups at all (e.g. no recovery table) are not reported.
    """
    out = []
    for level, groups in labels.items():
        groups = list(groups)
        if groups and not estimable(groups):
            out.append(DroppedLevel(level, str(groups[0]), tuple(variables.get(level, ()))))
    return tuple(out)


def kept(level: str, dropped: Sequence[DroppedLevel]) -> bool:
    """True when `level` is not among `dropped` (the model keeps its effects)."""
    return all(d.level != level for d in dropped)


def to_json(dropped: Sequence[DroppedLevel | str]) -> str:
    """The provenance attr: a JSON list of DroppedLevel dicts (a model may also state a level as a sentence)."""
    return json.dumps([d if isinstance(d, str) else asdict(d) for d in dropped])


def from_provenance(provenance: Mapping[str, str]) -> tuple[DroppedLevel, ...]:
    """The dropped levels recorded in a fit's provenance (none for fits made before the record)."""
    text = provenance.get(ATTR)
    if not text:
        return ()
    try:
        items = json.loads(text)
        return tuple(
            DroppedLevel(str(d["level"]), str(d["label"]), tuple(d.get("variables", ())))
            for d in items
            if not isinstance(d, str)
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        from marrow.errors import UsageError

        raise UsageError(f"the fit's provenance attr '{ATTR}' is damaged ({type(exc).__name__}: {exc})") from None


def notes(provenance: Mapping[str, str]) -> list[str]:
    """Sentences describing what the fit left out, from its provenance (sentences recorded as such kept)."""
    stated = []
    if provenance.get(ATTR):
        try:
            stated = [d for d in json.loads(provenance[ATTR]) if isinstance(d, str)]
        except (ValueError, TypeError):
            pass  # from_provenance below names the damage
    return [d.note() for d in from_provenance(provenance)] + stated
