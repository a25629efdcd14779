"""Model backends behind one interface per task, with weights resolution and provenance."""
from mfhq.models.registry import BackendError, create_backend, backend_names

__all__ = ["BackendError", "create_backend", "backend_names"]
