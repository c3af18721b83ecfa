"""Live registration: frames registered as they are acquired (:class:`LiveRegistration`)."""

from daskreg.live.session import LiveRegistration

__all__ = ["LiveRegistration"]
