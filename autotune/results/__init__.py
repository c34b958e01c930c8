"""The results directory: atomic files, tables, plots, the recommendation and the report."""
