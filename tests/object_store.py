"""The moto S3 server process of the tests: it lives in ``include/demo/object_store.py``.

``make demo-production`` starts the same server, so the harness is code, not test code.
"""

from __future__ import annotations

from demo.object_store import ObjectStore, s3_server_process

__all__ = ["ObjectStore", "s3_server_process"]
