"""The Kubernetes edge: what the operator asks of the apiserver, and the one adapter.

``api`` is the protocol the services use, ``client`` implements it with the official
client (the only importer of ``kubernetes`` and ``urllib3``), ``errors`` says what can go
wrong, ``crd`` installs the AuditRecord CRD. kopf's watches are not here: see ``watching``.
"""
