"""The head-end's HTTP JSON API; see headend/api/app.py."""
from headend.api.app import create_app

__all__ = ["create_app"]
