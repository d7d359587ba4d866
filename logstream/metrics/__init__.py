"""Prometheus metrics of the server and the consumers, and the lag they report.

Names and labels are public (README "Operations"); `tests/integration/test_metrics.py`
holds them to what was sent and applied, and `tests/unit/test_deploy_files.py` keeps the
Grafana dashboard and the alert rules in step with them.
"""
