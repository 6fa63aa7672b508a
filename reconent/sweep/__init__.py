"""Orchestration and storage: specs, points and their rows, one trial per point on Ray Tune, Parquet.

columns (the one declaration of a point and its row), spec (YAML in, points out), trial (one
point, no Ray), store and results (Parquet); on Ray: run (the driver), ray_session (Ray and one Tune
experiment), trainables (what workers run), progress (the bar), submit (a Ray job), status (no Ray).
"""
