"""Model backends behind one interface per task, with weights resolution and provenance."""
from mfhq.models.base import BackendError
from mfhq.models.registry import backend_names, create_backend

__all__ = ["BackendError", "create_backend", "backend_names"]
