"""Test helpers shared across the suite (real MLflow server, ...)."""
