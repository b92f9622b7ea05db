"""CDISC ADaM input: ADSL, ADRS and ADTTE mapped onto marrow's patients and recovery tables.

A mapping (`mapping.py`; defaults in `mapping.toml`) names the variables and PARAMCDs behind each
marrow column; `files.py` finds and reads the datasets (.xpt v5/v8, .sas7bdat, .csv, .parquet);
`tables.py` maps them; `load.py` validates the result through `load_frames`, the validation every
input route shares, and reports each problem against the ADaM dataset, the variable and the USUBJIDs
concerned. See docs/data.md, "ADaM input".
"""

from marrow.data.adam.files import DATASETS, MAPPING_ROLE, ROLES, AdamInput, Dataset, find_datasets, read_dataset
from marrow.data.adam.load import adam_for_fits, load_adam, load_adam_all, load_input, recorded_adam
from marrow.data.adam.mapping import DAYS_PER_UNIT, DEFAULT_MAPPING, AdamMapping, load_mapping, template_text
from marrow.data.adam.tables import map_tables

__all__ = [
    "DATASETS",
    "DAYS_PER_UNIT",
    "DEFAULT_MAPPING",
    "MAPPING_ROLE",
    "ROLES",
    "AdamInput",
    "AdamMapping",
    "Dataset",
    "adam_for_fits",
    "find_datasets",
    "load_adam",
    "load_adam_all",
    "load_input",
    "load_mapping",
    "map_tables",
    "read_dataset",
    "recorded_adam",
    "template_text",
]
