"""kubeledger: a tamper-evident audit trail of Kubernetes workload and RBAC changes.

The folders are the layers; each module's docstring says what it decides.

- ``core``: pure, no I/O. What is audited (``kinds``), the record (``model``), an object's
  meaningful state (``projection``), secrets out (``redaction``), what changed (``diff``)
  and what kind of change (``classify``), which event becomes which record
  (``decision``), the hash chain (``chain``), the last recorded states (``baselines``,
  ``revisions``).
- ``identity``: who made a change and which commit it came from (``attribution`` over
  admission, audit, GitOps, annotations and managedFields).
- ``recording``: writing the trail: ``recorder`` (decide, attribute, append), ``ledger``
  (the chain's one writer), ``catchup`` (deletions while down), ``retention``.
- ``sinks``: the ``Sink`` protocol, ``delivery`` from the cluster outbox, and the
  ``elasticsearch`` backend (``ecs`` documents, index ``template``, ``sink``).
- ``kube``: the Kubernetes edge: the ``api`` protocol, its ``client``, ``errors``, ``crd``.
- the operator: ``config``, ``runtime`` (start-up wiring), ``supervision`` (background
  tasks), ``backoff`` (the one retry loop), ``receivers`` (the endpoints the apiserver
  calls), ``watching`` (kopf handlers, the only module importing kopf), ``cli``.
"""
