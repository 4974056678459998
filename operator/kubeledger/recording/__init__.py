"""Writing the trail: turning events into records, in chain order, exactly once.

``recorder`` (decide, attribute, append), ``ledger`` (the chain's one writer),
``catchup`` (deletions made while nobody watched) and ``retention`` (old records out of
the cluster once delivered). They reach Kubernetes only through ``kube.api.Kubernetes``.
"""
