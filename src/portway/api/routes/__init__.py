"""One router per resource; ``portway.api.app`` includes them all."""
