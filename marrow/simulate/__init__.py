"""Design by simulation (`marrow simulate`) and simulation-based calibration (`marrow sbc`).

- `engine`: runs replicate tasks (in process or on Dask), seeds, blocks on disk, resume.
- the study modules build tasks from a design and summarise the records the engine returns.
"""
