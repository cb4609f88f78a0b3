"""Runs core work: device choice, iterate streaming, dask glue, batch execution. No widgets."""
