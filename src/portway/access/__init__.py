"""Access control, pure: role-based permissions (``rbac``) and the bearer
token format (``tokens``). No I/O here; storage is ``portway.service.access``."""
