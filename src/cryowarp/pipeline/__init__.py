"""Orchestration layer: jobs that chain algorithms over items."""
