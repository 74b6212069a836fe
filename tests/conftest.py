"""pytest configuration shared by the whole suite."""
import os

from hypothesis import HealthCheck, settings

# head-end fixtures: `db_url` / `db` on SQLite and on a throwaway PostgreSQL cluster
pytest_plugins = ["tests.headend_db"]

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
