"""Evaluation: metrics, baselines, results.json, the report and plots.

This package imports nothing on its own; import its modules.
"""
