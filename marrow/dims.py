"""The dimension names marrow owns. Every model variable uses these, never names from formula text."""

CENTER = "center"
LINEAGE = "lineage"
COVARIATE = "covariate"
PATIENT = "patient"
CELL = "cell"
OUTCOME_GROUP = "outcome_group"  # patients sharing a (cell, outcome): one log-likelihood column
ROW = "row"
CATEGORY = "category"
CUTPOINT = "cutpoint"
DAY = "day"
THRESHOLD = "threshold"
GRID_DAY = "grid_day"
REPLICATE = "replicate"  # the stacked replicates of a batched simulation refit (marrow.simulate.batched)
