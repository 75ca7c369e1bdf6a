"""Reviewing a change: the paired bootstrap and the PR-ready report (``python -m review.report``)."""
