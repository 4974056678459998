"""The pure layer: what the trail records and how a change is judged; no I/O at all.

Nothing here imports Kubernetes, Elasticsearch, aiohttp or kopf (an import-linter
contract in ``pyproject.toml`` holds it so), which is what lets the unit tests check
every decision in milliseconds.
"""
