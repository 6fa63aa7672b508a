"""Orchestration and storage: specs, points and their rows, one trial per point on Ray Tune, Parquet.

columns (the one declaration of a point and its row), spec (YAML in, points out), trial (one
point, no Ray), store and results (Parquet), tune/run/submit/status (Ray).
"""
