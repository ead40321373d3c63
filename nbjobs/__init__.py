"""nbjobs: Databricks Lakeflow Jobs for Jupyter."""
