"""Hyper-parameter search without Django: search spaces, objectives, samplers, pruners, storage."""
